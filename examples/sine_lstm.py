"""Sequences: an LSTM forecasting a noisy sine, and the adding problem (RNN vs LSTM vs GRU).

    python examples/sine_lstm.py [--quick] [--seed S] [--plot PATH]

Part 1 slides a window of 20 steps over a noisy sine and trains
``LSTM(1, 16)`` + ``Linear(16, 1)`` on the last step to predict the next value
(the first 80% of the series for training, the rest to test); it prints the
test error against the noise's own variance and against repeating the last
value, and ``--plot PATH`` saves prediction against truth (needs matplotlib).

Part 2 is the adding problem (Hochreiter & Schmidhuber, 1997): each step holds
a random number and a marker, exactly two steps are marked, and the target is
the sum of the two marked numbers, read after the last of 50 steps. A plain
RNN cannot carry the first number that far and stays at the error of
predicting the mean; the gated LSTM and GRU learn it. The table prints the
test error of each against that baseline. ``--quick`` is a tiny run (seconds).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import tinyml as tm


class LastStep(tm.Module):
    """A recurrent layer, then a Linear head on the output of the last step."""

    def __init__(self, kind: str, inputs: int, hidden: int, seed: int) -> None:
        super().__init__()
        self.rnn = getattr(tm, kind)(inputs, hidden, seed=seed)
        self.head = tm.Linear(hidden, 1, seed=seed + 1)

    def forward(self, x):
        out, _ = self.rnn(x)  # (N, T, hidden)
        return self.head(out[:, -1, :])


def windows(series: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, steps, 1) windows of the series and the value after each, (n, 1)."""
    n = len(series) - steps
    x = np.stack([series[i : i + steps] for i in range(n)])[:, :, None]
    return x, series[steps:, None].copy()


def sine_forecast(args, rng) -> dict:
    steps, noise = 20, 0.1
    length = 200 if args.quick else 1000
    t = np.arange(length)
    clean = np.sin(2 * np.pi * t / 40)
    series = clean + noise * rng.normal(size=length)
    x, y = windows(series, steps)
    split = int(0.8 * len(x))
    net = LastStep("LSTM", 1, 4 if args.quick else 16, args.seed)
    epochs = 3 if args.quick else 40
    start = time.perf_counter()
    history = net.fit(
        x[:split], y[:split], epochs=epochs, batch_size=32,
        optimizer=tm.optim.Adam(net.parameters(), lr=0.01), seed=args.seed, progress=False,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    pred = net.predict(x[split:])
    truth = y[split:]
    mse = float(np.mean((pred - truth) ** 2))
    persistence = float(np.mean((x[split:, -1] - truth) ** 2))
    print(
        f"sine forecast: LSTM(1, {net.rnn.hidden_size}) + Linear, windows of {steps} steps, "
        f"{split} training / {len(x) - split} test windows, {epochs} epochs (Adam lr 0.01): {seconds:.1f} s, "
        f"loss {history.loss[0]:.4f} -> {history.loss[-1]:.4f}"
    )
    print(
        f"sine test MSE: {mse:.4f} (noise variance {noise**2:.4f}; "
        f"repeating the last value: {persistence:.4f})"
    )
    return {
        "t": t[steps + split :],
        "pred": pred[:, 0],
        "truth": truth[:, 0],
        "clean": clean[steps + split :],
    }


def adding_data(n: int, steps: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """n sequences (n, steps, 2) of (number, marker) and their targets (n, 1)."""
    values = rng.uniform(0.0, 1.0, (n, steps))
    marks = np.zeros((n, steps))
    rows = np.arange(n)
    marks[rows, rng.integers(0, steps // 2, n)] = 1.0
    marks[rows, rng.integers(steps // 2, steps, n)] = 1.0
    return np.stack([values, marks], axis=2), (values * marks).sum(axis=1, keepdims=True)


def adding_problem(args, rng) -> list[tuple[str, float, float, float]]:
    steps = 10 if args.quick else 50
    n_train, n_test = (128, 64) if args.quick else (2000, 500)
    hidden = 4 if args.quick else 16
    epochs = 3 if args.quick else 60
    x, y = adding_data(n_train, steps, rng)
    xt, yt = adding_data(n_test, steps, rng)
    baseline = float(np.mean((yt - y.mean()) ** 2))  # always predicting the training mean
    print(
        f"\nadding problem: T={steps}, {n_train} training / {n_test} test sequences, hidden {hidden}, "
        f"{epochs} epochs, batches of 32, Adam lr 0.01"
    )
    rows = []
    for kind in ("RNN", "LSTM", "GRU"):
        net = LastStep(kind, 2, hidden, args.seed)
        start = time.perf_counter()
        net.fit(
            x, y, epochs=epochs, batch_size=32,
            optimizer=tm.optim.Adam(net.parameters(), lr=0.01), seed=args.seed, progress=False,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        mse = float(np.mean((net.predict(xt) - yt) ** 2))
        rows.append((kind, mse, mse / baseline, seconds))
    print(f"{'model':<6}{'test MSE':>10}{'/ baseline':>12}{'fit (s)':>9}  verdict")
    for kind, mse, ratio, seconds in rows:
        verdict = (
            "learned it"
            if ratio < 0.1
            else "failed (no better than the baseline)"
            if ratio > 0.5
            else "partly"
        )
        print(f"{kind:<6}{mse:>10.4f}{ratio:>12.3f}{seconds:>9.1f}  {verdict}")
    print(f"baseline (predicting the mean): test MSE {baseline:.4f}")
    return rows


def plot(path: Path, result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(result["t"], result["truth"], ".", color="0.6", markersize=4, label="noisy truth")
    ax.plot(result["t"], result["clean"], color="0.3", linewidth=1, label="sine without noise")
    ax.plot(result["t"], result["pred"], color="#d6604d", linewidth=1.5, label="LSTM one-step forecast")
    ax.set_xlabel("step")
    ax.set_title("LSTM forecast on the test part of the series")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny data and few epochs (a few seconds)")
    parser.add_argument("--seed", type=int, default=0, help="data, initial weights and batch order")
    parser.add_argument("--plot", type=Path, metavar="PATH", help="save prediction vs truth as a PNG")
    args = parser.parse_args(argv)
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(
                '--plot needs matplotlib: pip install ".[examples]" (or pip install matplotlib)',
                file=sys.stderr,
            )
            return 1
    rng = np.random.default_rng(args.seed)
    result = sine_forecast(args, rng)
    if args.plot is not None:
        plot(args.plot, result)
        print(f"forecast plot written to {args.plot.resolve()}")
    adding_problem(args, rng)
    return 0


if __name__ == "__main__":
    sys.exit(main())
