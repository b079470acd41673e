"""Workload 5: memory. Two tables.

5a, bytes per tape row: a random graph (the engine workload's, 200,000 rows;
3,000 in quick mode) is built, and every numpy array the ``Graph`` holds is
summed (``nbytes``), then divided by the allocated rows (``capacity``) and by
the rows in use. The parent-index array is sized by parent entries, not rows;
it is included, so these are whole-tape figures.

5b, peak RSS: XOR trained in a fresh subprocess (``benchmarks/rss_child.py``),
its peak RSS at exit (Linux ``VmHWM``; ``ru_maxrss`` is kept in the JSON but can
report the parent's size, see ``rss_child.peak_rss_bytes``): after importing
tinyml and building the model only (the floor), after ``model.fit``, after
the eager loop and after the hand-written Numba kernel. The eager run also
samples the current RSS and the tape's capacity at evenly spaced epochs: a loop
that rebuilds its graph every epoch must stay flat (the check is on the tape,
which is deterministic; RSS is reported).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from .core import NOT_AVAILABLE, OK, ROOT, Entry, Settings, Unavailable, Workload, combine, guarded, measure
from .engine import build, random_program
from .mlp import evaluate
from .xor_peers import EPOCHS, NET, X, Y, initial_params

KEY = "memory"
MB = 1024 * 1024
CONVERGED = 1e-2


def run(settings: Settings) -> list[Workload]:
    return [_tape(settings), _rss(settings)]


def _tape(settings: Settings) -> Workload:
    n = settings.pick(200_000, 3_000)
    w = Workload(KEY + ".tape", f"5a. Memory: tape bytes per row ({n:,}-row random graph)", "bytes/row")

    def body(e: Entry, per: str) -> None:
        graph, root, _ = build(random_program(n))
        root.backward()
        arrays = {k: v for k, v in vars(graph).items() if isinstance(v, np.ndarray)}
        # views of another of the graph's arrays (shared is data[:, 0]) add no memory
        arrays = {k: v for k, v in arrays.items() if not any(v.base is u for u in arrays.values())}
        total = sum(a.nbytes for a in arrays.values())
        rows = len(graph)
        e.value = total / (graph.capacity if per == "allocated" else rows)
        e.extra.update(
            rows=rows,
            capacity=graph.capacity,
            total_bytes=total,
            arrays={
                k: {"dtype": str(a.dtype), "shape": list(a.shape), "nbytes": a.nbytes}
                for k, a in arrays.items()
            },
        )
        e.check = (
            OK if arrays and rows <= graph.capacity else f"FAILED: {rows} rows, capacity {graph.capacity}"
        )

    guarded(w, "per allocated row (capacity)", lambda e: body(e, "allocated"))
    guarded(w, "per row in use", lambda e: body(e, "used"))
    first = w.entries[0]
    if first.status == OK:
        arrays = first.extra["arrays"]
        w.notes.append(
            f"{first.extra['rows']:,} rows in use, capacity {first.extra['capacity']:,}; arrays: "
            + ", ".join(f"{k} {a['dtype']}{tuple(a['shape'])}" for k, a in arrays.items())
        )
    return w


def _describe(a: np.ndarray) -> dict:
    return {"dtype": str(a.dtype), "shape": list(a.shape), "nbytes": a.nbytes}


def _child(mode: str, epochs: int) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.rss_child", mode, str(epochs)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"rss_child {mode} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _rss(settings: Settings) -> Workload:
    epochs = settings.pick(EPOCHS, 2_000)
    w = Workload(
        KEY + ".rss", f"5b. Memory: peak RSS of XOR training in a subprocess, {epochs:,} epochs", "MB"
    )
    _warm_caches()
    start_loss = evaluate(NET, initial_params(), X, Y)["loss"]

    def body(e: Entry, mode: str) -> None:
        times, out = measure(lambda: None, lambda _: _child(mode, epochs if mode != "import" else 0), 1)
        if "unavailable" in out:
            raise Unavailable(out["unavailable"], NOT_AVAILABLE)
        e.value = out["peak_rss"] / MB
        e.extra.update(out, subprocess_seconds=times[0])
        checks = [OK]
        if "final_loss" in out:
            e.loss = out["final_loss"]
            e.epochs = epochs
            limit = start_loss if settings.quick else CONVERGED
            if not e.loss < limit:
                checks.append(f"FAILED: loss {e.loss:.3g} after {epochs:,} epochs, expected < {limit:.3g}")
        samples = out.get("samples")
        if samples:
            caps = [s["capacity"] for s in samples]
            if caps[-1] != caps[0]:
                checks.append(f"FAILED: the eager loop's tape grew from {caps[0]:,} to {caps[-1]:,} rows")
            if samples[0]["rss"] is not None:
                rss = [s["rss"] / MB for s in samples]
                w.notes.append(
                    "eager loop RSS at epochs "
                    + "/".join(f"{s['epoch']:,}" for s in samples)
                    + ": "
                    + "/".join(f"{r:.1f}" for r in rss)
                    + f" MB (growth {rss[-1] - rss[0]:+.1f} MB); tape capacity "
                    + "/".join(f"{c:,}" for c in caps)
                    + " rows"
                )
        e.check = combine(*checks)

    guarded(w, "import tinyml + build model", lambda e: body(e, "import"))
    guarded(w, "tinyml fit", lambda e: body(e, "fit"))
    guarded(w, "tinyml eager", lambda e: body(e, "eager"))
    guarded(w, "numba (hand-written)", lambda e: body(e, "numba"))
    floor = w.entries[0]
    if floor.status == OK:
        above = [f"{e.name} {e.value - floor.value:+.1f}" for e in w.entries[1:] if e.status == OK]
        w.notes.append("above the import floor (MB): " + ", ".join(above))
    return w


def _warm_caches() -> None:
    """Compile (and cache on disk) what the children run, so no measured child compiles.

    Each mode runs once for a few epochs in a child of its own, not in this
    process: this process's kernels may predate an edit of tinyml's sources,
    and only a child sees what a fresh process would load.
    """
    for mode in ("fit", "eager", "numba"):
        _child(mode, 50)  # enough epochs for the eager tape to fill and compact once
