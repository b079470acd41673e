"""Workload 12: a wider network, 784 -> 128 tanh -> 10 linear, batch 64: ms per epoch.

Synthetic data of MNIST's shape (no download): 1,024 samples of 784 features,
about a fifth of them uniform in [0, 1) and the rest 0 (sparse like MNIST's
pixels), labels the arg-max of a fixed random linear teacher, so the task is
learnable. The same peers as digits (``digits_peers``, each
subclassed with this network), the same checks (``digits.run_peers``): one
epoch over the first samples against the pure-Python reference, the timed
epochs against the hand-written Numba kernel. The goal printed under the
table: tinyml fit at most the time of the faster of JAX's two entries.
"""

from __future__ import annotations

import numpy as np

from . import digits_peers
from .core import OK, Settings, Workload
from .digits import run_peers
from .mlp import Net

KEY = "wide"
NET = Net(sizes=(784, 128, 10), activations=("tanh", "linear"), loss="cross_entropy", lr=0.1, batch_size=64)
SEED = 0
SAMPLES = 1024
QUICK_SAMPLES = 130  # two full batches and a partial one
CHECK_SAMPLES = 3  # the pure-Python reference is slow at this width
JAX = ("jax jit per batch", "jax jit epoch (lax.scan)")


def load_data(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(features float64 (n, 784) in [0, 1), 80% zeros; labels int64 (n,)) from a fixed seed."""
    rng = np.random.default_rng(12)
    d = NET.sizes[0]
    x = rng.random((n, d)) * (rng.random((n, d)) < 0.2)
    teacher = rng.standard_normal((d, NET.sizes[-1]))
    y = np.argmax((x - x.mean()) @ teacher, axis=1).astype(np.int64)
    return x, y


def peers() -> list[type]:
    """Every digits peer, with this workload's network."""
    return [type(cls.__name__ + "Wide", (cls,), {"net": NET, "seed": SEED}) for cls in digits_peers.PEERS]


def run(settings: Settings) -> Workload:
    epochs = settings.pick(5, 1)
    n = settings.pick(SAMPLES, QUICK_SAMPLES)
    w = Workload(
        KEY,
        f"12. Wide 784-128-10 (tanh, linear), synthetic {n:,} samples, cross-entropy, batch 64, "
        f"SGD lr {NET.lr:g}: time per epoch",
        "ms/epoch",
        "tinyml fit",
    )
    x, y = load_data(n)
    flat0 = digits_peers.initial_params(NET, SEED)
    run_peers(w, settings, peers(), NET, flat0, x, y, epochs, CHECK_SAMPLES)
    ours = w.entry("tinyml fit")
    if ours is None or ours.status != OK:
        w.reference = "numba (hand-written)"
        w.notes.append("tinyml fit is not available here: ratios are to the hand-written Numba kernel")
    jax = [e for e in (w.entry(name) for name in JAX) if e is not None and e.status == OK and e.value]
    if ours is not None and ours.status == OK and jax:
        best = min(jax, key=lambda e: e.value)
        ratio = ours.value / best.value
        w.extra["goal"] = {"entry": ours.name, "versus": best.name, "at_most": 1.0, "ratio": ratio}
        verdict = "met" if ratio <= 1.0 else "NOT met"
        if settings.quick:
            verdict += " (quick mode: too few epochs to judge)"
        w.notes.append(
            f"goal: tinyml fit vs the faster JAX entry ({best.name}) (at most 1x): {ratio:.2f}x, {verdict}"
        )
    return w
