"""Workload 9: the digits MLP with each activation of ``tm.Activation``, time per epoch.

The network of workload 6 (64-32-10, linear output, cross-entropy, batch 32,
SGD lr 0.1) trained with ``MLP.fit`` once per hidden activation, from the same
seed. Every activation's rows run in the same sweep, so none should cost much
more than tanh (whose NEURON row fuses the activation): the goal is at most
1.15 times tanh's time per epoch for each. A one-epoch fit first warms up (and
compiles the kernels); the timed fits start from fresh models. Checks: the loss is finite and
below the first epoch's.
"""

from __future__ import annotations

from .core import OK, Entry, Settings, Unavailable, Workload, combine, guarded, measure, median, time_goal
from .digits_peers import load_data

KEY = "activations"
GOAL = 1.15  # each activation at most this many times tanh's time per epoch


def run(settings: Settings) -> Workload:
    import tinyml as tm

    epochs = settings.pick(5, 1)
    w = Workload(KEY, "9. Digits MLP per hidden activation: time per epoch", "ms/epoch", "tanh")
    try:
        x, y = load_data()
    except Unavailable as exc:
        w.notes.append(f"skipped: {exc.reason}")
        return w
    labels = y.argmax(axis=1) if y.ndim == 2 else y

    def model(activation):
        return tm.MLP(64, [32, 10], 0.1, activation, seed=0, output_activation="linear")

    def fit(m):
        return m.fit(x, labels, epochs, loss="cross_entropy", batch_size=32, seed=0, progress=False)

    def body(e: Entry, activation) -> None:
        model(activation).fit(x, labels, 1, loss="cross_entropy", batch_size=32, progress=False)  # warm-up
        times, history = measure(lambda: model(activation), fit, settings.repeats)
        e.times = times
        e.epochs = epochs
        e.value = median(times) / epochs * 1e3
        e.loss = float(history.loss[-1])
        ok = (
            OK
            if history.loss[-1] <= history.loss[0] and history.loss[-1] < 1e3
            else "FAILED: loss did not fall"
        )
        e.check = combine(ok)

    order = [tm.Activation.TANH] + [a for a in tm.Activation if a is not tm.Activation.TANH]
    for activation in order:
        guarded(w, activation.value, lambda e, a=activation: body(e, a))
    worst = max((e for e in w.entries if e.status == OK and e.value), key=lambda e: e.value, default=None)
    if worst is not None:
        time_goal(w, settings, worst.name, "tanh", GOAL, f"the slowest activation ({worst.name}) vs tanh")
    return w
