"""The benchmark suite's quick mode (what CI runs): every workload tiny, every result checked.

``python -m benchmarks --quick`` runs in a subprocess from the repository root,
with whichever peers are installed; a peer that is not installed must be
reported as skipped, never as an error. No time is asserted anywhere.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinyml as tm
from benchmarks import WORKLOADS, cpeer

ROOT = Path(__file__).resolve().parent.parent

# peer entry name -> the package it needs
PEER_PACKAGES = {
    "torch eager (1 thread)": "torch",
    "jax jit (fori_loop)": "jax",
    "jax jit per batch": "jax",
    "jax jit epoch (lax.scan)": "jax",
    "micrograd": "micrograd",
    "jax jit(vmap) fori_loop": "jax",
    "dask, 1 worker": "distributed",
    "dask, 2 workers": "distributed",
}
ALWAYS = {"numba (hand-written)", "numpy (hand-written)"}


def installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def _command(out: Path, args: list[str], blocked: tuple[str, ...]) -> list[str]:
    argv = ["--quick", "--json", str(out), *args]
    if not blocked:
        return [sys.executable, "-m", "benchmarks", *argv]
    code = (
        "import runpy, sys\n"
        f"for name in {list(blocked)!r}:\n"
        "    sys.modules[name] = None  # 'import name' now raises ImportError\n"
        f"sys.argv = ['benchmarks', *{argv!r}]\n"
        "runpy.run_module('benchmarks', run_name='__main__', alter_sys=True)\n"
    )
    return [sys.executable, "-c", code]


def start_suite(folder: Path, args: list[str] = (), blocked: tuple[str, ...] = ()) -> tuple:
    """Start the suite in a subprocess (``blocked`` packages made unimportable); see ``finish_suite``.
    Its output goes to files (a pipe that nobody reads would stall it once full)."""
    out = folder / "results.json"
    logs = (open(folder / "stdout.txt", "w+"), open(folder / "stderr.txt", "w+"))
    cmd = _command(out, list(args), blocked)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=logs[0], stderr=logs[1], text=True)
    return proc, out, logs


def finish_suite(started: tuple) -> dict:
    """Wait for a suite started by ``start_suite``; returns its JSON report (and stdout)."""
    proc, out, logs = started
    try:
        proc.wait(timeout=900)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    finally:
        stdout, stderr = (f.seek(0) or f.read() for f in logs)
        for f in logs:
            f.close()
    assert proc.returncode == 0, f"exit {proc.returncode}\n{stdout[-4000:]}\n{stderr[-4000:]}"
    report = json.loads(out.read_text())
    report["stdout"] = stdout
    return report


def run_suite(tmp_path: Path, args: list[str], blocked: tuple[str, ...] = ()) -> dict:
    """Run the suite in a subprocess and wait for it; returns its JSON report."""
    return finish_suite(start_suite(tmp_path, args, blocked))


# The full quick run takes most of the test suite's time, waiting on peers' imports and
# subprocesses: tests/conftest.py starts it when collection ends, and runs this test last,
# so that it runs beside the other tests rather than after them.
BACKGROUND: dict = {}


def entries(report: dict) -> dict[tuple[str, str], dict]:
    return {(w["key"], e["name"]): e for w in report["workloads"] for e in w["entries"]}


def test_quick_mode_runs_every_workload_and_every_check_passes(tmp_path):
    started = BACKGROUND.pop("quick", None)  # (None when this module was not collected by pytest's hook)
    report = finish_suite(started) if started is not None else run_suite(tmp_path, [])
    assert report["mode"] == "quick"
    assert report["failed"] == []
    machine = report["machine"]
    assert machine["cores"] >= 1 and machine["cpu"] and machine["python"]
    assert machine["versions"]["numpy"] and machine["versions"]["numba"]
    assert report["machine_line"] in report["stdout"]

    keys = [w["key"] for w in report["workloads"]]
    # every registered workload ran (a workload may report several tables,
    # keyed "<workload>.<part>" or by a name of their own, as the cnn's "bn")
    ran = {k.split(".")[0] for k in keys}
    assert [w for w in WORKLOADS if w not in ran] == []
    assert {"memory.tape", "memory.rss", "ensemble.sweep", "bn", "expression.costs"} <= set(keys)
    got = entries(report)
    for activation in tm.Activation:  # workload 9: every activation trained and checked
        assert got[("activations", activation.value)]["check"] == "ok", activation
    for (key, name), e in got.items():
        package = PEER_PACKAGES.get(name)
        if package is not None and not installed(package):
            assert e["status"] == "skipped", (key, name, e)
            continue
        if name == "C (hand-written)" and cpeer.compiler() is None:
            assert e["status"] == "skipped", (key, name, e)
            continue
        if e["status"] == "not available":  # a tinyml feature still being written
            assert name.startswith("tinyml"), (key, name, e)
            continue
        assert e["status"] == "ok", (key, name, e)
        assert e["check"] == "ok", (key, name, e)
        assert e["median"] is not None and np.isfinite(e["median"]) and e["median"] > 0, (key, name, e)
        assert e["name"] in report["stdout"]

    # the practical lower bound and the numpy peer always run, and trained
    for name in ALWAYS:
        assert got[("xor", name)]["status"] == "ok"
        assert got[("xor", name)]["final_loss"] < 1e-2
    assert got[("eager", "tinyml eager")]["status"] == "ok"
    assert got[("startup", "xor_demo.py")]["status"] == "ok"  # (quick: no cold run)
    assert got[("expression", "tinyml")]["check"] == "ok"  # micrograd's values and gradients
    if installed("sklearn"):
        assert got[("digits", "numba (hand-written)")]["status"] == "ok"
        assert got[("sklearn", "tinyml.sklearn")]["status"] == "ok"
        assert got[("sklearn", "scikit-learn")]["status"] == "ok"
        assert got[("cnn", "tinyml fit")]["status"] == "ok" and got[("bn", "tinyml fit")]["status"] == "ok"


def test_missing_peers_are_reported_as_skipped_not_as_errors(tmp_path):
    report = run_suite(tmp_path, ["--only", "xor,eager"], blocked=("torch", "jax", "micrograd"))
    got = entries(report)
    for name in ("torch eager (1 thread)", "jax jit (fori_loop)", "micrograd"):
        assert got[("xor", name)]["status"] == "skipped"
        assert "not installed" in got[("xor", name)]["note"]
    assert got[("eager", "micrograd")]["status"] == "skipped"
    assert got[("xor", "numba (hand-written)")]["check"] == "ok"
    assert "skipped" in report["stdout"]


def test_a_peer_with_a_wrong_gradient_fails_its_check():
    from benchmarks import xor
    from benchmarks.core import Settings, Workload, guarded
    from benchmarks.mlp import reference_train
    from benchmarks.xor_peers import NET, NumpyXor, X, Y, initial_params

    class Wrong(NumpyXor):
        name = "wrong"

        def train(self, layers, epochs):
            super().train(layers, epochs)
            layers[1][1][0] += 1e-6  # as if the output bias's gradient were off

    flat0 = initial_params()
    refs = {n: reference_train(NET, flat0, X, Y, n) for n in (1, xor.TRAJECTORY_EPOCHS)}
    w = Workload("xor", "t", "s")
    settings = Settings(quick=True, repeats=1)
    for peer in (NumpyXor(), Wrong()):
        guarded(w, peer.name, lambda e, p=peer: xor._measure(e, p, settings, 300, flat0, refs))
    assert w.entries[0].check == "ok"
    assert w.entries[1].check.startswith("FAILED: parameters after 1 epoch")
    assert w.failed


def test_params_layout_round_trips_and_matches_tinyml_order():
    from benchmarks.mlp import join, split
    from benchmarks.xor_peers import tinyml_model

    model = tinyml_model()
    flat = np.array([p.data for p in model.parameters()])
    (w1, b1), (w2, b2) = split(flat, (2, 4, 1))
    neuron = model.layers[0].neurons[2]
    assert w1[2].tolist() == [w.data for w in neuron.weights]
    assert b1[2] == neuron.bias.data
    assert b2[0] == model.layers[1].neurons[0].bias.data
    np.testing.assert_array_equal(join([(w1, b1), (w2, b2)]), flat)
    with pytest.raises(ValueError, match="17 parameters"):
        split(flat, (2, 5, 1))


def test_the_c_peer_is_skipped_without_a_compiler(monkeypatch):
    from benchmarks.core import SKIPPED, Unavailable

    monkeypatch.setenv("CC", "no-such-c-compiler-anywhere")
    monkeypatch.setattr(cpeer, "_LOADED", {})
    with pytest.raises(Unavailable, match="no C compiler") as info:
        cpeer.load("xor_kernel.c")
    assert info.value.status == SKIPPED
