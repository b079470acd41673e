"""Workload 1: XOR as the Rust example, training-loop seconds for 300,000 epochs.

Each implementation is first checked against the pure-Python reference from
the shared initial weights: the parameters after one epoch (equal gradients)
and after 100 epochs (equal trajectories). Then it is timed; slow ones are
timed over fewer epochs in full mode and extrapolated linearly (a loop that
rebuilds its graph every epoch costs the same every epoch), labelled so.
Finally its loss must have converged.
"""

from __future__ import annotations

from .core import OK, Entry, Settings, Workload, close, combine, guarded, measure, median, time_goal
from .mlp import evaluate, reference_train
from .xor_peers import EPOCHS, NET, PEERS, Peer, X, Y, initial_params

GOAL = 1.0  # tinyml fit at most this many times the hand-written Numba kernel's time (issue 12)
KEY = "xor"
QUICK_EPOCHS = 2_000
CONVERGED = 1e-2  # SSE over the 4 samples: every prediction within ~0.05 of its target
# From these weights the run crosses an unstable stretch near epoch 500 that turns a 1e-15
# difference (one rounding of tanh) into 1e-4, so trajectories are compared over the first
# 100 epochs only, where float64 implementations agree to ~1e-12; later, the loss must converge.
TRAJECTORY_EPOCHS = 100


def run(settings: Settings) -> Workload:
    epochs = settings.pick(EPOCHS, QUICK_EPOCHS)
    w = Workload(
        KEY,
        f"1. XOR 2-4-1 tanh, SSE, full-batch SGD lr 0.1, {epochs:,} epochs: training-loop time",
        unit="s",
        reference="tinyml fit",
    )
    flat0 = initial_params()
    refs = {n: reference_train(NET, flat0, X, Y, n) for n in (1, TRAJECTORY_EPOCHS)}
    w.notes.append(f"SSE at the initial weights: {evaluate(NET, flat0, X, Y)['loss']:.6f}")
    w.notes.append("final loss: SSE over the 4 samples after the last update; epochs: epochs actually timed")
    for cls in PEERS:
        peer = cls()
        guarded(w, peer.name, lambda e, p=peer: _measure(e, p, settings, epochs, flat0, refs))
    if w.entry("tinyml fit") is None or w.entry("tinyml fit").status != OK:
        w.reference = "tinyml eager"
        w.notes.append("tinyml fit is not available: ratios are to tinyml eager (extrapolated)")
    time_goal(
        w, settings, "tinyml fit", "numba (hand-written)", GOAL, "tinyml fit vs the hand-written Numba kernel"
    )
    return w


def _measure(e: Entry, peer: Peer, settings: Settings, epochs: int, flat0, refs) -> None:
    peer.load()
    # equal gradients and equal early trajectories (this also compiles, before timing)
    checks = []
    for n, rtol in ((1, 1e-9), (TRAJECTORY_EPOCHS, 1e-7)):
        state = peer.prepare(flat0)
        peer.train(state, n)
        what = f"parameters after {n} epoch(s) vs the pure-Python reference"
        checks.append(close(peer.params(state), refs[n], rtol, 1e-10, what))

    n = peer.slow_epochs if (peer.slow and not settings.quick) else epochs

    def train(state):
        peer.train(state, n)
        return state

    times, state = measure(lambda: peer.prepare(flat0), train, settings.repeats)
    final = peer.params(state)
    e.times = times
    e.epochs = n
    e.value = median(times) * epochs / n
    e.loss = evaluate(NET, final, X, Y)["loss"]
    notes = [peer.note] if peer.note else []
    if n != epochs:
        e.extrapolated = True
        notes.append(f"extrapolated from {n:,} epochs (x{epochs / n:g}); final loss is at {n:,} epochs")
    e.note = "; ".join(notes)
    if not e.loss < CONVERGED:
        checks.append(f"FAILED: loss {e.loss:.3g} after {n:,} epochs, expected < {CONVERGED:g}")
    e.check = combine(*checks)
