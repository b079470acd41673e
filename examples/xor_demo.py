"""XOR, as in the Rust tiny-ml example: 2->4->1 tanh, SGD lr 0.1, sum of squared errors.

    python examples/xor_demo.py [--epochs N] [--seed S] [--lr LR] [--plot loss.png]

Training runs in tinyml's compiled loop (``model.fit``): the step graph is
traced once and every epoch runs inside Numba kernels. The printed lines
come from the history it records every 500 epochs.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import tinyml as tm

INPUTS = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
TARGETS = np.array([[0.0], [1.0], [1.0], [0.0]])
REPORT_EVERY = 500
EXTRAS_HINT = 'pip install ".[examples]" (or pip install matplotlib)'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=42, help="seed of the initial weights")
    parser.add_argument("--lr", type=float, default=0.1, help="learning rate")
    parser.add_argument("--plot", metavar="PATH", help="draw the loss curve to this PNG (matplotlib)")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    if args.plot:  # fail now, not after a long training run
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(f"--plot needs matplotlib: {EXTRAS_HINT}, or run without --plot", file=sys.stderr)
            return 1

    model = tm.MLP(2, [4, 1], args.lr, tm.Activation.TANH, seed=args.seed, init="uniform01")
    print("Initial training start...")
    print("-" * 32)
    try:
        history = model.fit(
            INPUTS, TARGETS, epochs=args.epochs, loss="sse", report_every=REPORT_EVERY, progress=False
        )
    except tm.TrainingDiverged as e:
        for epoch, loss in zip(e.history.epoch, e.history.loss):
            print(f"Epoch {epoch:3} | Total Loss: {loss:.6f}")
        print(f"error: {e}", file=sys.stderr)
        return 1
    seconds = history.seconds  # training only: a first run's kernel compilation is not counted
    for epoch, loss in zip(history.epoch, history.loss):
        print(f"Epoch {epoch:3} | Total Loss: {loss:.6f}")
    print("-" * 32)
    print("Final Predictions:")
    for x, y, p in zip(INPUTS, TARGETS[:, 0], model.predict(INPUTS)[:, 0]):
        print(f"Input: {x.tolist()} | Target: {y} | Prediction: {p:.4f}")
    print(f"({args.epochs} epochs trained in {seconds:.3f} s)", file=sys.stderr)
    if args.plot:
        plot_loss(history, args.plot)
    return 0


def plot_loss(history: tm.History, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # write a file, never open a window
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogy(history.epoch, history.loss)
    ax.set_xlabel("epoch")
    ax.set_ylabel("total loss (sum of squared errors)")
    ax.set_title("XOR, 2-4-1 tanh")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"Loss curve written to {path}")


if __name__ == "__main__":
    sys.exit(main())
