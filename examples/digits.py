"""Handwritten digits: a 64->32->10 tanh MLP trained with cross-entropy on scikit-learn's 8x8 digits.

    python examples/digits.py [--epochs N] [--seed S] [--lr LR] [--batch-size B] [--plot PATH]

The data set ships with scikit-learn (no download): 1797 images of 8x8
pixels with values 0..16, scaled here to [0, 1]. A fixed 80/20 stratified
split keeps the same test set whatever ``--seed`` is; the seed sets the
initial weights and the order of the mini-batches. Needs scikit-learn, and
matplotlib for ``--plot``: ``pip install ".[examples]"``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import tinyml as tm

SPLIT_SEED = 0  # the train/test split never changes, so accuracies are comparable
EXTRAS_HINT = 'pip install ".[examples]" (or pip install scikit-learn matplotlib)'


def load_data():
    """(X_train, X_test, y_train, y_test): features / 16, 80/20 stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X = digits.data / 16.0
    y = digits.target.astype(np.int64)
    return train_test_split(X, y, test_size=0.2, random_state=SPLIT_SEED, stratify=y)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """counts[t, p]: how many samples of class t were predicted as p."""
    counts = np.zeros((k, k), np.int64)
    np.add.at(counts, (y_true, y_pred), 1)
    return counts


def format_confusion(counts: np.ndarray) -> str:
    k = counts.shape[0]
    width = max(4, len(str(counts.max())) + 1)
    lines = ["true\\pred" + "".join(f"{j:>{width}}" for j in range(k))]
    for i in range(k):
        lines.append(f"{i:>9}" + "".join(f"{c:>{width}}" for c in counts[i]))
    return "\n".join(lines)


def plot_loss(history: tm.History, path: Path, accuracy: float) -> None:
    import matplotlib

    matplotlib.use("Agg")  # write a file, never open a window
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(history.epoch, history.loss, marker="o", markersize=3)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training cross-entropy (epoch mean)")
    ax.set_yscale("log")
    ax.set_title(f"digits 64-32-10 tanh: training loss (test accuracy {accuracy:.3f})")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0, help="initial weights and batch order")
    parser.add_argument("--lr", type=float, default=0.1, help="SGD learning rate")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--plot", type=Path, metavar="PATH", help="save the loss curve as a PNG here")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    if not args.lr > 0:
        parser.error("--lr must be positive")
    if args.plot is not None and not args.plot.resolve().parent.is_dir():
        parser.error(f"--plot: directory {args.plot.resolve().parent} does not exist")

    # check the optional extras before spending time on training
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(f"--plot needs matplotlib: {EXTRAS_HINT}, or run without --plot", file=sys.stderr)
            return 1
    try:
        import sklearn  # noqa: F401
    except ImportError:
        print(f"digits.py needs scikit-learn for the data set: {EXTRAS_HINT}", file=sys.stderr)
        return 1

    X_train, X_test, y_train, y_test = load_data()
    print(
        f"digits: {len(X_train)} training and {len(X_test)} test images of 8x8 pixels, "
        f"scaled to [0, 1] (split seed {SPLIT_SEED})"
    )
    model = tm.MLP(64, [32, 10], args.lr, "tanh", seed=args.seed, output_activation="linear")
    print(f"model: {model}, {len(model.parameters())} parameters")

    history = model.fit(
        X_train,
        y_train,
        epochs=args.epochs,
        loss="cross_entropy",
        batch_size=args.batch_size,
        seed=args.seed,
        report_every=1,
        progress=False,
    )
    seconds = history.seconds  # training only: a first run's kernel compilation is not counted
    print(
        f"fit: {args.epochs} epochs, batches of {args.batch_size}, SGD lr {args.lr}, seed {args.seed}: "
        f"{seconds:.2f} s (loss {history.loss[0]:.4f} -> {history.loss[-1]:.4f})"
    )

    predicted = model.predict(X_test).argmax(axis=1)
    correct = int((predicted == y_test).sum())
    accuracy = correct / len(y_test)
    print(f"test accuracy: {accuracy:.4f} ({correct}/{len(y_test)})")
    print("confusion matrix (rows: true digit, columns: predicted digit):")
    print(format_confusion(confusion_matrix(y_test, predicted, 10)))

    if args.plot is not None:
        plot_loss(history, args.plot, accuracy)
        print(f"loss curve written to {args.plot.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
