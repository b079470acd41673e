"""How often does the Rust XOR network learn XOR? 10,000 seeds, and a learning rate by init scale grid.

    python examples/xor_seeds.py [--seeds 10000] [--epochs 300000] [--quick] [--out xor_seeds.png]

Part 1 trains ``MLP(2, [4, 1], 0.1, "tanh", seed=s, init="uniform01")`` for
every seed s as ``tm.Ensemble`` chunks (one per core, in threads: the kernels
release the GIL) and prints the fraction that converge (final SSE below
``--threshold``), the distribution of final losses and of the epochs it took
to get below the threshold. Part 2 is a ``tm.sweep`` over learning rate x
init scale (the uniform [0, 1) initial weights multiplied by the scale), a
few seeds per cell, and prints the fraction of each cell that converges.
With matplotlib, both go into pictures: ``--out`` (histograms) and the same
name with ``_grid`` (the heat map). ``--quick`` is a small run for tests.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

import tinyml as tm

X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
Y = np.array([[0.0], [1.0], [1.0], [0.0]])
LEARNING_RATES = [0.01, 0.03, 0.1, 0.3, 1.0]
INIT_SCALES = [0.25, 0.5, 1.0, 2.0, 4.0]
RECORDS = 300  # loss records per member: the resolution of epochs-to-converge


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=10_000, help="seeds of part 1 (10000)")
    p.add_argument(
        "--epochs", type=int, default=300_000, help="epochs per model (300000, as the Rust example)"
    )
    p.add_argument("--lr", type=float, default=0.1, help="learning rate of part 1 (0.1)")
    p.add_argument("--threshold", type=float, default=0.01, help="final SSE below which a model converged")
    p.add_argument("--grid-seeds", type=int, default=100, help="seeds per cell of the part 2 grid (100)")
    p.add_argument("--grid-epochs", type=int, default=30_000, help="epochs per model in part 2 (30000)")
    p.add_argument("--quick", action="store_true", help="a small run: 200 seeds, 3000 epochs, 8 per cell")
    p.add_argument("--out", type=Path, default=Path("xor_seeds.png"), help="histograms (needs matplotlib)")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.grid_seeds, args.grid_epochs = 200, 3_000, 8, 2_000
    for name in ("seeds", "epochs", "grid_seeds", "grid_epochs"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def model(lr: float, seed: int, scale: float = 1.0) -> tm.MLP:
    m = tm.MLP(2, [4, 1], lr, "tanh", seed=seed, init="uniform01")
    if scale != 1.0:
        for p in m.parameters():
            p.data *= scale
    return m


def train_seeds(args):
    """Part 1: (final SSE, first recorded epoch below the threshold or -1) per seed."""
    cores = os.cpu_count() or 1
    chunks = np.array_split(np.arange(args.seeds), min(cores, args.seeds))
    report_every = max(1, args.epochs // RECORDS)

    def train(seeds):
        with tm.Graph():
            ens = tm.Ensemble([model(args.lr, int(s)) for s in seeds])
        history = ens.fit(X, Y, epochs=args.epochs, loss="sse", report_every=report_every, progress=False)
        below = history.loss < args.threshold
        first = np.where(below.any(axis=1), history.epoch[np.argmax(below, axis=1)], -1)
        return ens.loss(X, Y, "sse"), first

    with ThreadPoolExecutor(len(chunks)) as pool:
        parts = list(pool.map(train, chunks))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def train_grid(args) -> np.ndarray:
    """Part 2: the fraction of seeds that converge, per (learning rate, init scale)."""
    grid = {"lr": LEARNING_RATES, "scale": INIT_SCALES, "seed": list(range(args.grid_seeds))}
    result = tm.sweep(model, grid, X, Y, epochs=args.grid_epochs, loss="sse", progress=sys.stderr.isatty())
    ok = np.array([r["final_loss"] < args.threshold for r in result.records])
    return ok.reshape(len(LEARNING_RATES), len(INIT_SCALES), args.grid_seeds).mean(axis=2)


def plot(args, final, first, fraction) -> list[Path]:
    try:
        import matplotlib
    except ImportError:
        print("(matplotlib is not installed: no pictures; pip install matplotlib)")
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.hist(np.log10(np.maximum(final, 1e-300)), bins=60, color="tab:blue")
    a.axvline(np.log10(args.threshold), color="k", linestyle="--", label=f"threshold {args.threshold:g}")
    a.set_xlabel("log10 final SSE")
    a.set_ylabel("seeds")
    a.set_title(f"{len(final):,} seeds, {args.epochs:,} epochs, lr {args.lr:g}")
    a.legend()
    done = first[first >= 0]
    b.hist(done, bins=60, color="tab:green")
    b.set_xlabel("epochs to reach the threshold")
    b.set_ylabel("seeds")
    b.set_title(f"{len(done):,} seeds that converged")
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    plt.close(fig)

    grid_path = args.out.with_name(args.out.stem + "_grid" + args.out.suffix)
    fig, ax = plt.subplots(figsize=(6, 5))
    im = ax.imshow(fraction, origin="lower", cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(INIT_SCALES)), [f"{s:g}" for s in INIT_SCALES])
    ax.set_yticks(range(len(LEARNING_RATES)), [f"{r:g}" for r in LEARNING_RATES])
    ax.set_xlabel("init scale (x uniform [0, 1))")
    ax.set_ylabel("learning rate")
    ax.set_title(f"fraction converged ({args.grid_seeds} seeds, {args.grid_epochs:,} epochs)")
    for i in range(fraction.shape[0]):
        for j in range(fraction.shape[1]):
            shade = "k" if fraction[i, j] > 0.5 else "w"
            ax.text(j, i, f"{fraction[i, j]:.2f}", ha="center", va="center", color=shade)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(grid_path, dpi=100)
    plt.close(fig)
    return [args.out, grid_path]


def main(argv=None) -> int:
    args = parse(argv)
    t0 = time.perf_counter()
    final, first = train_seeds(args)
    converged = final < args.threshold
    print(f"part 1: {args.seeds:,} seeds x {args.epochs:,} epochs in {time.perf_counter() - t0:.1f} s")
    print(
        f"converged: {converged.mean():.4f} ({converged.sum()}/{args.seeds}), final SSE < {args.threshold:g}"
    )
    q = np.quantile(final, [0.05, 0.25, 0.5, 0.75, 0.95])
    print("final SSE quantiles 5/25/50/75/95%: " + " ".join(f"{v:.3g}" for v in q))
    done = first[first >= 0]
    if len(done):
        median, q95 = np.median(done), np.quantile(done, 0.95)
        print(f"epochs to reach {args.threshold:g}: median {median:,.0f}, 95% {q95:,.0f}")
    t0 = time.perf_counter()
    fraction = train_grid(args)
    print(f"part 2: {fraction.size} cells x {args.grid_seeds} seeds in {time.perf_counter() - t0:.1f} s")
    print(
        "fraction converged, rows: learning rate, columns: init scale "
        + " ".join(f"{s:g}" for s in INIT_SCALES)
    )
    for lr, row in zip(LEARNING_RATES, fraction):
        print(f"  lr {lr:<5g} " + " ".join(f"{v:5.2f}" for v in row))
    for path in plot(args, final, first, fraction):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
