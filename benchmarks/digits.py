"""Workload 6: digits, seconds per epoch (1,797 samples, 57 mini-batches of 32).

Needs scikit-learn (for ``load_digits``); tinyml's entry needs ``tm.Tensor`` and
``MLP.fit(loss="cross_entropy")``, and is reported as not available until both exist.

Checks: one epoch over the first 69 samples (two full batches and a partial one)
must give the pure-Python reference's parameters; after the timed epochs over
the whole set, the parameters must match the hand-written Numba kernel's (the
run is smooth, so float64 implementations stay within ~1e-9 of each other) and
the loss must be below the initial one.
"""

from __future__ import annotations

from .core import (
    OK,
    Entry,
    Settings,
    Unavailable,
    Workload,
    close,
    combine,
    guarded,
    measure,
    median,
    time_goal,
)
from .digits_peers import NET, PEERS, NumbaDigits, Peer, initial_params, load_data
from .mlp import evaluate, reference_train

GOAL = 1.0  # tinyml fit at most this many times the hand-written Numba kernel's time (issue 12)
JAX_GOAL = 1.5  # and at most this many times JAX's, the whole epoch in lax.scan
KEY = "digits"
CHECK_SAMPLES = 69


def run(settings: Settings) -> Workload:
    epochs = settings.pick(10, 1)
    w = Workload(
        KEY,
        "6. Digits 64-32-10 (tanh, linear), cross-entropy, batch 32, SGD lr 0.1: time per epoch",
        "ms/epoch",
        "tinyml fit",
    )
    try:
        x, y = load_data()
    except Unavailable as exc:
        w.notes.append(f"skipped: {exc.reason}")
        return w
    flat0 = initial_params()
    run_peers(w, settings, PEERS, NET, flat0, x, y, epochs, CHECK_SAMPLES)
    ref = w.entry("tinyml fit")
    if ref is None or ref.status != OK:
        w.reference = "numba (hand-written)"
        w.notes.append("tinyml fit is not available here: ratios are to the hand-written Numba kernel")
    time_goal(
        w,
        settings,
        "tinyml fit",
        "jax jit epoch (lax.scan)",
        JAX_GOAL,
        "tinyml fit vs JAX, epoch in lax.scan",
    )
    w.extra["goal_jax"] = w.extra.pop("goal", None)
    time_goal(
        w, settings, "tinyml fit", "numba (hand-written)", GOAL, "tinyml fit vs the hand-written Numba kernel"
    )
    accuracies = [f"{e.name} {e.extra['accuracy']:.3f}" for e in w.entries if "accuracy" in e.extra]
    if accuracies:
        w.notes.append("training-set accuracy: " + ", ".join(accuracies))
    return w


def run_peers(
    w: Workload, settings: Settings, peers, net, flat0, x, y, epochs: int, check_samples: int
) -> None:
    """Check and time every peer class of ``peers`` on network ``net`` from ``flat0`` into ``w``.

    Checks: one epoch over the first ``check_samples`` samples equals the pure-Python
    reference; after the timed epochs over all of ``x``, the parameters equal the
    hand-written Numba kernel's, and the loss is below the initial one.
    """
    start = evaluate(net, flat0, x, y)
    w.notes.append(
        f"initial loss {start['loss']:.4f}; final loss: mean cross-entropy over all {len(x):,} samples"
    )
    xs, ys = x[:check_samples], y[:check_samples]
    want_small = reference_train(net, flat0, xs, ys, 1)
    numba = type("Numba", (NumbaDigits,), {"net": net})()
    state = numba.prepare(flat0, x, y)
    numba.train(state, epochs)
    want = numba.params(state)

    def body(e: Entry, peer: Peer) -> None:
        peer.load()
        state = peer.prepare(flat0, xs, ys)
        peer.train(state, 1)  # also compiles, before timing
        what = f"parameters after one epoch over {check_samples} samples vs the pure-Python reference"
        checks = [close(peer.params(state), want_small, 1e-9, 1e-12, what)]
        if not settings.quick:  # warm-up on the full shapes (JAX compiles per shape); quick times nothing
            peer.train(peer.prepare(flat0, x, y), 1)

        def train(state):
            peer.train(state, epochs)
            return state

        times, state = measure(lambda: peer.prepare(flat0, x, y), train, settings.repeats)
        final = peer.params(state)
        e.times = times
        e.epochs = epochs
        e.value = median(times) / epochs * 1e3
        result = evaluate(net, final, x, y)
        e.loss = result["loss"]
        e.extra["accuracy"] = result["accuracy"]
        checks.append(
            close(final, want, 1e-7, 1e-10, f"parameters after {epochs} epoch(s) vs the numba kernel")
        )
        if not e.loss < start["loss"]:
            checks.append(f"FAILED: loss {e.loss:.4g}, not below the initial {start['loss']:.4g}")
        e.check = combine(*checks)

    for cls in peers:
        guarded(w, cls.name, lambda e, c=cls: body(e, c()))
