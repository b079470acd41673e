"""Workload 7: scikit-learn's MLPClassifier against tinyml.sklearn's, fit time and test accuracy.

Digits (1,797 samples, 64 features / 16), a stratified 75/25 split, both estimators
with the same parameters: ``hidden_layer_sizes=(32,)``, adam, ``batch_size=32``,
``max_iter=100`` (``tol`` as default; neither stops early on this data), the same
``random_state`` (so the same initial weights). The time is one ``fit`` call,
median of the repeats, after a warm-up fit (which compiles tinyml's kernels).

Checks: both reach at least 0.9 test accuracy, and tinyml's is within 0.02 of
scikit-learn's.
"""

from __future__ import annotations

import warnings

from .core import OK, Entry, Settings, Unavailable, Workload, guarded, measure, median, require, time_goal
from .digits_peers import load_data

GOAL = 0.5  # tinyml.sklearn's fit time at most this fraction of scikit-learn's
KEY = "sklearn"
PARAMS = dict(hidden_layer_sizes=(32,), solver="adam", batch_size=32, random_state=0)


def run(settings: Settings) -> Workload:
    max_iter = settings.pick(100, 3)
    w = Workload(
        KEY,
        f"7. MLPClassifier on digits, (32,) adam batch 32, {max_iter} iterations: fit time",
        "s/fit",
        "tinyml.sklearn",
    )
    try:
        x, y = load_data()
        selection = require("sklearn.model_selection")
        exceptions = require("sklearn.exceptions")
    except Unavailable as exc:
        w.notes.append(f"skipped: {exc.reason}")
        return w
    xtr, xte, ytr, yte = selection.train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    accuracy: dict[str, float] = {}

    def body(e: Entry, make) -> None:
        def fit(est):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", exceptions.ConvergenceWarning)
                return est.fit(xtr, ytr)

        fit(make())  # warm-up: compiles tinyml's kernels, loads scikit-learn's code
        times, est = measure(make, fit, settings.repeats)
        e.times = times
        e.epochs = est.n_iter_
        e.value = median(times)
        e.loss = float(est.loss_curve_[-1])
        acc = float(est.score(xte, yte))
        e.extra["accuracy"] = acc
        accuracy[e.name] = acc
        e.check = OK if (settings.quick or acc >= 0.9) else f"FAILED: test accuracy {acc:.3f} below 0.9"

    def ours():
        from tinyml.sklearn import MLPClassifier

        return MLPClassifier(max_iter=max_iter, **PARAMS)

    def theirs():
        from sklearn.neural_network import MLPClassifier

        return MLPClassifier(max_iter=max_iter, **PARAMS)

    guarded(w, "tinyml.sklearn", lambda e: body(e, ours))
    guarded(w, "scikit-learn", lambda e: body(e, theirs))
    time_goal(w, settings, "tinyml.sklearn", "scikit-learn", GOAL, "tinyml.sklearn fit vs scikit-learn's")
    if len(accuracy) == 2:
        gap = accuracy["scikit-learn"] - accuracy["tinyml.sklearn"]
        w.extra["accuracy_gap"] = gap
        w.notes.append(
            "test accuracy: " + ", ".join(f"{k} {v:.4f}" for k, v in accuracy.items()) + f" (gap {gap:+.4f})"
        )
        ours_entry = w.entry("tinyml.sklearn")
        if not settings.quick and gap > 0.02 and ours_entry is not None and ours_entry.status == OK:
            ours_entry.check = f"FAILED: test accuracy {gap:.3f} below scikit-learn's (at most 0.02)"
    return w
