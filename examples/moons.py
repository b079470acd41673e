"""Two moons: a 2->16->16->1 tanh MLP with a hinge loss, and a picture of its decision boundary.

    python examples/moons.py [--epochs N] [--seed S] [--lr LR] [--batch-size B] [--out PATH]

As in micrograd's demo: scikit-learn's ``make_moons(n_samples=200,
noise=0.1)``, labels mapped to -1/+1, a linear output unit scored with the
hinge loss ``max(0, 1 - y * score)``, so the class is the sign of the score.
Training is full-batch SGD by default. The picture (default ``moons.png``)
shows the sign of ``model.predict`` over a grid, the zero-score line and the
points. Needs scikit-learn and matplotlib: ``pip install ".[examples]"``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import tinyml as tm

EXTRAS_HINT = 'pip install ".[examples]" (or pip install scikit-learn matplotlib)'
GRID = 300  # grid points per axis for the picture


def plot_boundary(model: tm.MLP, X: np.ndarray, labels: np.ndarray, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # write a file, never open a window
    import matplotlib.pyplot as plt

    pad = 0.5
    xs = np.linspace(X[:, 0].min() - pad, X[:, 0].max() + pad, GRID)
    ys = np.linspace(X[:, 1].min() - pad, X[:, 1].max() + pad, GRID)
    xx, yy = np.meshgrid(xs, ys)
    scores = model.predict(np.column_stack([xx.ravel(), yy.ravel()]))[:, 0].reshape(xx.shape)

    fig, ax = plt.subplots(figsize=(6, 5))
    ax.contourf(xx, yy, scores > 0, levels=[-0.5, 0.5, 1.5], colors=["#f4a582", "#92c5de"], alpha=0.8)
    ax.contour(xx, yy, scores, levels=[0.0], colors="k", linewidths=1)
    for label, color, name in ((-1, "#b2182b", "class -1"), (1, "#2166ac", "class +1")):
        pts = X[labels == label]
        ax.scatter(pts[:, 0], pts[:, 1], s=25, c=color, edgecolors="k", linewidths=0.5, label=name)
    ax.set_xlim(xs[0], xs[-1])
    ax.set_ylim(ys[0], ys[-1])
    ax.set_xlabel("feature 1 (x)")
    ax.set_ylabel("feature 2 (y)")
    ax.set_title(title)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1, help="data, initial weights and batch order")
    parser.add_argument("--lr", type=float, default=0.1, help="SGD learning rate")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the full batch")
    parser.add_argument(
        "--out", type=Path, default=Path("moons.png"), metavar="PATH", help="the PNG to write"
    )
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    if args.batch_size is not None and args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    if not args.lr > 0:
        parser.error("--lr must be positive")
    if not args.out.resolve().parent.is_dir():
        parser.error(f"--out: directory {args.out.resolve().parent} does not exist")

    # check the optional extras before spending time on training
    missing = []
    try:
        from sklearn.datasets import make_moons
    except ImportError:
        missing.append("scikit-learn")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        missing.append("matplotlib")
    if missing:
        print(f"moons.py needs {' and '.join(missing)}: {EXTRAS_HINT}", file=sys.stderr)
        return 1

    X, y01 = make_moons(n_samples=200, noise=0.1, random_state=args.seed)
    labels = 2.0 * y01 - 1.0  # -1 / +1, as the hinge loss wants
    print(f"moons: {len(X)} points, noise 0.1, labels -1/+1 (data seed {args.seed})")
    model = tm.MLP(2, [16, 16, 1], args.lr, "tanh", seed=args.seed, output_activation="linear")
    print(f"model: {model}, {len(model.parameters())} parameters, hinge loss")

    history = model.fit(
        X,
        labels[:, None],
        epochs=args.epochs,
        loss="hinge",
        batch_size=args.batch_size,
        seed=args.seed,
        progress=False,
    )
    seconds = history.seconds  # training only: a first run's kernel compilation is not counted
    batches = "full batch" if args.batch_size is None else f"batches of {args.batch_size}"
    print(
        f"fit: {args.epochs} epochs, {batches}, SGD lr {args.lr}: {seconds:.2f} s "
        f"(loss {history.loss[0]:.4f} -> {history.loss[-1]:.4f})"
    )

    scores = model.predict(X)[:, 0]
    correct = int((np.where(scores > 0, 1.0, -1.0) == labels).sum())
    accuracy = correct / len(X)
    print(f"training accuracy: {accuracy:.4f} ({correct}/{len(X)})")

    start = time.perf_counter()
    title = f"2-16-16-1 tanh, hinge loss: training accuracy {accuracy:.3f}"
    plot_boundary(model, X, labels, args.out, title)
    print(
        f"decision boundary ({GRID}x{GRID} grid, {time.perf_counter() - start:.2f} s) "
        f"written to {args.out.resolve()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
