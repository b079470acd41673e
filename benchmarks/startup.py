"""Workload 3: start-up, ``python examples/xor_demo.py`` end to end in a subprocess.

Cold: Numba's cache directory (``NUMBA_CACHE_DIR``) is a new empty temporary
folder, so every kernel the demo needs is compiled. Warm: a second run with the
same folder, so the kernels are loaded from the cache. ``python -c "import
tinyml"`` with the warm cache is the floor (interpreter, numpy, numba, tinyml).
Quick mode passes ``--epochs 200`` to the demo and runs it once, with the
caller's own Numba cache: no cold run (a compilation of every kernel, most of
the quick suite's time), whose figure only full mode reports; the full mode
runs the demo's defaults.

Then, in full mode, the first use of each other feature, in the same cache
folder one after the other (so each pays only for the kernels it adds): a
``tm.Value`` expression with ``backward()``, ``fit`` with cross-entropy
mini-batches, ``fit`` with Adam. Each entry is what its snippet's first run
takes beyond a second, warm run: the compilation it adds.

Every subprocess imports the checkout's ``tinyml`` (``PYTHONPATH`` is the
repository root), not another installed copy.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile

from .core import OK, ROOT, Entry, Settings, Workload, guarded, measure, median

KEY = "startup"
DEMO = ROOT / "examples" / "xor_demo.py"
CONVERGED = 1e-2
_LOSS = re.compile(r"Total Loss:\s*([-+0-9.eEinfa]+)")
_DATA = "import numpy as np, tinyml as tm\nX = np.random.default_rng(0).normal(size=(100, 8))\n"
FEATURES = {
    "Value expression": (
        "import tinyml as tm\na, b = tm.Value(0.5), tm.Value(-1.2)\n"
        "c = (a * b + a.tanh()).sigmoid() + (a**2).exp() / b\nc.backward()\nprint(c.data, a.grad)\n"
    ),
    "cross-entropy mini-batches": _DATA + "m = tm.MLP(8, [16, 3], activation='relu', seed=0)\n"
    "print(m.fit(X, np.arange(100) % 3, 2, loss='cross_entropy', batch_size=16, progress=False))\n",
    "Adam": _DATA + "m = tm.MLP(8, [8, 1], seed=0)\nopt = tm.optim.Adam(m.parameters(), lr=1e-2)\n"
    "print(m.fit(X, X[:, :1] * X[:, 1:2], 2, loss='mse', optimizer=opt, progress=False))\n",
}


def _run(args: list[str], cache: str | None) -> subprocess.CompletedProcess:
    """Run Python with ``args`` in the checkout; ``cache``: its Numba cache folder (None: the caller's)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if cache is not None:
        env["NUMBA_CACHE_DIR"] = cache
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800
    )


def run(settings: Settings) -> Workload:
    w = Workload(KEY, "3. Start-up: python examples/xor_demo.py end to end", "s", "xor_demo.py warm")
    demo_args = [str(DEMO), *settings.pick([], ["--epochs", "200"])]
    w.notes.append("command: python " + " ".join([f"examples/{DEMO.name}", *demo_args[1:]]))
    folders: list[str] = []

    def new_cache() -> str:
        folders.append(tempfile.mkdtemp(prefix="tinyml-bench-numba-"))
        return folders[-1]

    try:
        if settings.quick:
            w.notes.append("quick mode: no cold run; the demo runs once with this process's Numba cache")
            guarded(w, "xor_demo.py", lambda e: _demo(e, lambda: None, demo_args, 1, settings))
            return w
        cold = guarded(w, "xor_demo.py cold", lambda e: _demo(e, lambda: new_cache(), demo_args, 1, settings))
        warm_cache = folders[-1] if folders and cold.status == OK else None

        def warm_body(e: Entry) -> None:
            _demo(e, lambda: warm_cache or new_cache(), demo_args, settings.repeats, settings)

        guarded(w, "xor_demo.py warm", warm_body)
        guarded(w, "import tinyml (warm)", lambda e: _import(e, warm_cache or new_cache(), settings.repeats))
        for name, code in FEATURES.items():
            guarded(w, f"first {name}: adds", lambda e, c=code: _feature(e, warm_cache or new_cache(), c))
    finally:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
    cold, warm = w.entry("xor_demo.py cold"), w.entry("xor_demo.py warm")
    if cold.status == OK and warm.status == OK:
        w.extra["compile_seconds"] = cold.value - warm.value
        w.notes.append(f"cold - warm = {cold.value - warm.value:.2f} s of compilation (and cache writing)")
    return w


def _demo(e: Entry, cache, demo_args: list[str], repeats: int, settings: Settings) -> None:
    times, proc = measure(cache, lambda folder: _run(demo_args, folder), repeats)
    e.times = times
    e.value = median(times)
    if proc.returncode != 0:
        e.check = f"FAILED: exit status {proc.returncode}: {proc.stderr.strip()[-500:]}"
        return
    losses = _LOSS.findall(proc.stdout)
    if not losses:
        e.check = f"FAILED: no 'Total Loss: <x>' line in the output: {proc.stdout.strip()[-300:]!r}"
        return
    e.loss = float(losses[-1])
    e.check = OK
    if not settings.quick and not e.loss < CONVERGED:
        e.check = f"FAILED: final loss {e.loss:g}, expected < {CONVERGED:g}"


def _feature(e: Entry, cache: str, code: str) -> None:
    """Seconds that a snippet's first run (compiling what it adds) takes beyond its warm run."""
    cold, proc = measure(lambda: cache, lambda folder: _run(["-c", code], folder), 1)
    if proc.returncode != 0:
        e.check = f"FAILED: {proc.stderr.strip()[-500:]}"
        return
    warm, _ = measure(lambda: cache, lambda folder: _run(["-c", code], folder), 1)
    e.times = [cold[0] - warm[0]]
    e.value = e.times[0]
    e.check = OK


def _import(e: Entry, cache: str, repeats: int) -> None:
    times, proc = measure(lambda: cache, lambda folder: _run(["-c", "import tinyml"], folder), repeats)
    e.times = times
    e.value = median(times)
    e.check = OK if proc.returncode == 0 else f"FAILED: {proc.stderr.strip()[-500:]}"
