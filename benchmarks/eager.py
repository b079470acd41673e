"""Workload 2: the seed-style eager loop, microseconds per epoch, tinyml vs micrograd.

Per epoch: build the SSE loss over the 4 XOR samples (the graph is rebuilt
every epoch), zero the gradients, backward, one SGD update. The same loop as
``examples/xor_demo.py``; both sides start from the same weights, must follow
the pure-Python reference's parameters over the first 100 epochs, and must
lower the loss.
"""

from __future__ import annotations

from .core import OK, Entry, Settings, Workload, close, combine, guarded, measure, median
from .mlp import evaluate, reference_train
from .xor import TRAJECTORY_EPOCHS
from .xor_peers import NET, MicrogradXor, Peer, TinymlEager, X, Y, initial_params

KEY = "eager"
GOAL = 5.0  # tinyml at least this many times faster than micrograd


def run(settings: Settings) -> Workload:
    w = Workload(KEY, "2. Seed-style eager XOR loop (graph rebuilt every epoch)", "us/epoch", "tinyml eager")
    flat0 = initial_params()
    plan = [(TinymlEager(), settings.pick(20_000, 200)), (MicrogradXor(), settings.pick(2_000, 200))]
    want = reference_train(NET, flat0, X, Y, TRAJECTORY_EPOCHS)
    for peer, n in plan:
        guarded(w, peer.name, lambda e, p=peer, n=n: _measure(e, p, settings, n, flat0, want))
    tiny, micro = w.entry("tinyml eager"), w.entry("micrograd")
    if tiny.status == OK and micro.status == OK:
        speedup = micro.value / tiny.value
        w.extra["speedup_vs_micrograd"] = speedup
        w.extra["goal"] = GOAL
        verdict = "met" if speedup >= GOAL else "NOT met"
        if settings.quick:
            verdict += " (quick mode: too few epochs to judge)"
        w.notes.append(f"goal: tinyml eager >= {GOAL:g}x faster than micrograd: {speedup:.1f}x, {verdict}")
    return w


def _measure(e: Entry, peer: Peer, settings: Settings, n: int, flat0, want) -> None:
    peer.load()

    def train(state):
        peer.train(state, n)
        return state

    # equal trajectories over the first epochs (see xor.py); also a warm-up before timing
    state = peer.prepare(flat0)
    peer.train(state, TRAJECTORY_EPOCHS)
    what = f"parameters after {TRAJECTORY_EPOCHS} epochs vs the pure-Python reference"
    checks = [close(peer.params(state), want, 1e-7, 1e-10, what)]
    times, state = measure(lambda: peer.prepare(flat0), train, settings.repeats)
    final = peer.params(state)
    e.times = times
    e.epochs = n
    e.note = peer.note
    e.value = median(times) / n * 1e6
    e.loss = evaluate(NET, final, X, Y)["loss"]
    start = evaluate(NET, flat0, X, Y)["loss"]
    if not e.loss < start:
        checks.append(f"FAILED: loss {e.loss:.3g} after {n:,} epochs, not below the initial {start:.3g}")
    e.check = combine(*checks)
