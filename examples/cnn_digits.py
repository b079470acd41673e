"""Handwritten digits with a small CNN: Conv2d(1, 8, 3) - ReLU - MaxPool2d(2) - Flatten - Linear(72, 10).

    python examples/cnn_digits.py [--epochs N] [--seed S] [--lr LR] [--batch-size B] [--plot PATH]

scikit-learn's 1797 digits as 1x8x8 images (values 0..16 scaled to [0, 1]),
a fixed 80/20 stratified split (``random_state=0``), cross-entropy with Adam.
The network is written as a ``tm.Sequential`` of PyTorch-style layers; ``fit``
traces one image's step and trains in compiled kernels, 32 images a batch, one
per lane. ``--plot`` saves the 8 learned 3x3 filters and the misclassified test
digits as a PNG. Needs scikit-learn (and matplotlib for ``--plot``):
``pip install ".[examples]"``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import tinyml as tm

SPLIT_SEED = 0
EXTRAS_HINT = 'pip install ".[examples]" (or pip install scikit-learn matplotlib)'


def load_images():
    """(X_train, X_test, y_train, y_test): images (n, 1, 8, 8) / 16, 80/20 stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X = digits.images[:, None, :, :] / 16.0
    y = digits.target.astype(np.int64)
    return train_test_split(X, y, test_size=0.2, random_state=SPLIT_SEED, stratify=y)


def build(seed: int) -> tm.Sequential:
    return tm.Sequential(
        tm.Conv2d(1, 8, 3, seed=seed),  # (N, 1, 8, 8) -> (N, 8, 6, 6)
        tm.ReLU(),
        tm.MaxPool2d(2),  # -> (N, 8, 3, 3)
        tm.Flatten(),  # -> (N, 72)
        tm.Linear(72, 10, seed=seed + 1),
    )


def plot(model: tm.Sequential, X_test, y_test, predicted, path: Path, accuracy: float) -> None:
    import matplotlib

    matplotlib.use("Agg")  # write a file, never open a window
    import matplotlib.pyplot as plt

    filters = model[0].weight.numpy()[:, 0]  # (8, 3, 3)
    wrong = np.nonzero(predicted != y_test)[0][:16]
    cols = 8
    rows = 1 + max(1, -(-len(wrong) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.6 * rows))
    lim = np.abs(filters).max()
    for k, ax in enumerate(axes[0]):
        ax.imshow(filters[k], cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(f"filter {k}", fontsize=8)
    for ax in axes[1:].ravel():
        ax.axis("off")
    for ax, i in zip(axes[1:].ravel(), wrong):
        ax.imshow(X_test[i, 0], cmap="gray_r")
        ax.set_title(f"{y_test[i]} as {predicted[i]}", fontsize=8, color="crimson")
    for ax in axes[0]:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        f"learned 3x3 filters; misclassified test digits (true as predicted), accuracy {accuracy:.3f}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0, help="initial weights and batch order")
    parser.add_argument("--lr", type=float, default=0.01, help="Adam learning rate")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--plot", type=Path, metavar="PATH", help="save filters and mistakes as a PNG here")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    if not args.lr > 0:
        parser.error("--lr must be positive")
    if args.plot is not None and not args.plot.resolve().parent.is_dir():
        parser.error(f"--plot: directory {args.plot.resolve().parent} does not exist")
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(f"--plot needs matplotlib: {EXTRAS_HINT}, or run without --plot", file=sys.stderr)
            return 1
    try:
        import sklearn  # noqa: F401
    except ImportError:
        print(f"cnn_digits.py needs scikit-learn for the data set: {EXTRAS_HINT}", file=sys.stderr)
        return 1

    X_train, X_test, y_train, y_test = load_images()
    print(f"digits: {len(X_train)} training and {len(X_test)} test images of 1x8x8 (split seed {SPLIT_SEED})")
    model = build(args.seed)
    print(f"model: {len(model.parameters())} parameters\n{model}")

    start = time.perf_counter()
    history = model.fit(
        X_train,
        y_train,
        epochs=args.epochs,
        loss="cross_entropy",
        batch_size=args.batch_size,
        seed=args.seed,
        optimizer=tm.optim.Adam(model.parameters(), lr=args.lr),
        report_every=1,
        progress=False,
    )
    seconds = time.perf_counter() - start
    print(
        f"fit: {args.epochs} epochs, batches of {args.batch_size}, Adam lr {args.lr}, seed {args.seed}: "
        f"{seconds:.2f} s (loss {history.loss[0]:.4f} -> {history.loss[-1]:.4f})"
    )
    predicted = model.eval().predict(X_test).argmax(axis=1)
    correct = int((predicted == y_test).sum())
    accuracy = correct / len(y_test)
    print(f"test accuracy: {accuracy:.4f} ({correct}/{len(y_test)})")
    print("misclassified (true -> predicted): " + ", ".join(
        f"{t}->{p}" for t, p in zip(y_test[predicted != y_test], predicted[predicted != y_test])
    ))  # fmt: skip
    if args.plot is not None:
        plot(model, X_test, y_test, predicted, args.plot, accuracy)
        print(f"filters and mistakes written to {args.plot.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
