"""Shared pieces of the suite: result records, timing, checks, machine facts, tables.

Timing goes through the standard library only: ``timeit`` runs each repeat
(untimed set-up, then one timed call) and ``statistics.median`` summarises.
"""

from __future__ import annotations

import gc
import importlib
import importlib.metadata
import os
import platform
import statistics
import timeit
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent  # the repository: subprocesses run here

OK = "ok"
SKIPPED = "skipped"  # an optional peer is not installed: never an error
NOT_AVAILABLE = "not available"  # a tinyml feature that is not written yet
FAILED = "failed"  # an exception or a failed correctness check: the run exits non-zero


class Unavailable(Exception):
    """Raised by an implementation that cannot run here; ``status`` says why."""

    def __init__(self, reason: str, status: str = SKIPPED) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def require(module: str) -> Any:
    """Import an optional peer's package, or raise ``Unavailable`` (reported as skipped)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise Unavailable(f"{module} not installed ({exc.__class__.__name__})") from None


@dataclass
class Entry:
    """One implementation's line in a workload's table."""

    name: str
    status: str = OK
    value: float | None = None  # median in the workload's unit (after any extrapolation)
    times: list[float] = field(default_factory=list)  # raw seconds of each timed repeat
    loss: float | None = None  # final loss, so nobody wins by not training
    epochs: int | None = None  # epochs actually run per timed repeat
    extrapolated: bool = False  # value scaled up from fewer epochs than the workload's
    note: str = ""
    check: str = ""  # "" not checked, "ok", or "FAILED: <why>"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status == FAILED or self.check.startswith("FAILED")


@dataclass
class Workload:
    """A workload's results: a table of entries plus free-form numbers."""

    key: str
    title: str
    unit: str
    reference: str | None = None  # entry name that ratios are taken against
    entries: list[Entry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, entry: Entry) -> Entry:
        self.entries.append(entry)
        return entry

    def entry(self, name: str) -> Entry | None:
        return next((e for e in self.entries if e.name == name), None)

    def ratio(self, entry: Entry) -> float | None:
        """``entry``'s value divided by the reference's (above 1: slower than tinyml)."""
        ref = self.entry(self.reference) if self.reference else None
        if ref is None or ref.value is None or entry.value is None or ref.value == 0:
            return None
        return entry.value / ref.value

    @property
    def failed(self) -> bool:
        return any(e.failed for e in self.entries)


@dataclass(frozen=True)
class Settings:
    quick: bool
    repeats: int  # timed repeats per measurement

    def pick(self, full: Any, quick: Any) -> Any:
        return quick if self.quick else full


def time_goal(w: Workload, settings: Settings, ours: str, theirs: str, at_most: float, text: str) -> None:
    """Note whether entry ``ours`` takes at most ``at_most`` times entry ``theirs``'s time
    (both measured in this run); nothing if either did not run."""
    a, b = w.entry(ours), w.entry(theirs)
    if a is None or b is None or a.status != OK or b.status != OK or not b.value:
        return
    ratio = a.value / b.value
    w.extra["goal"] = {"entry": ours, "versus": theirs, "at_most": at_most, "ratio": ratio}
    verdict = "met" if ratio <= at_most else "NOT met"
    if settings.quick:
        verdict += " (quick mode: too few epochs to judge)"
    w.notes.append(f"goal: {text} (at most {at_most:g}x): {ratio:.2f}x, {verdict}")


def guarded(workload: Workload, name: str, body: Callable[[Entry], None]) -> Entry:
    """Run ``body(entry)`` for one implementation; turn its failure into a table line.

    ``Unavailable`` becomes a skipped / not-available line; any other exception a
    FAILED line (printed, and the run's exit status becomes non-zero) so that
    one broken peer never hides the others' numbers.
    """
    entry = workload.add(Entry(name))
    try:
        body(entry)
    except Unavailable as exc:
        entry.status = exc.status
        entry.note = exc.reason
        entry.value = None
    except Exception as exc:  # noqa: BLE001 - reported in the table and the exit status
        entry.status = FAILED
        entry.note = f"{exc.__class__.__name__}: {exc}"
        entry.extra["traceback"] = traceback.format_exc()
        print(entry.extra["traceback"], flush=True)
    return entry


class _Trial:
    """State shared by timeit's set-up and statement callables."""

    def __init__(self, prepare: Callable[[], Any], run: Callable[[Any], Any]) -> None:
        self.prepare = prepare
        self.run = run
        self.state: Any = None
        self.result: Any = None

    def setup(self) -> None:
        gc.enable()  # timeit disables gc; eager peers (micrograd) need it, as in real use
        self.state = self.prepare()

    def stmt(self) -> None:
        self.result = self.run(self.state)


def measure(prepare: Callable[[], Any], run: Callable[[Any], Any], repeats: int) -> tuple[list[float], Any]:
    """Time ``run(prepare())`` ``repeats`` times (prepare untimed); returns (seconds, last result)."""
    trial = _Trial(prepare, run)
    times = timeit.Timer(trial.stmt, trial.setup).repeat(repeat=repeats, number=1)
    return times, trial.result


def median(times: list[float]) -> float:
    return statistics.median(times)


def close(got: Any, want: Any, rtol: float, atol: float, what: str) -> str:
    """ "ok" if ``got`` matches ``want`` elementwise, else a FAILED message with the worst element."""
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    if got.shape != want.shape:
        return f"FAILED: {what}: shape {got.shape}, expected {want.shape}"
    if np.allclose(got, want, rtol=rtol, atol=atol):
        return OK
    err = np.abs(got - want).reshape(-1)
    i = int(np.nanargmax(err)) if np.isfinite(err).any() else 0
    return (
        f"FAILED: {what} differ: element {i} is {got.reshape(-1)[i]!r}, "
        f"expected {want.reshape(-1)[i]!r} (rtol {rtol:g}, atol {atol:g})"
    )


def combine(*checks: str) -> str:
    """The first failure among ``checks``, else "ok" (empty strings are ignored)."""
    done = [c for c in checks if c]
    failed = [c for c in done if c != OK]
    if failed:
        return failed[0]
    return OK if done else ""


# ---------------------------------------------------------------------------
# The machine
# ---------------------------------------------------------------------------
def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def _cpu_model() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


_SIMD = ("avx2", "fma", "avx512f", "asimd")  # the vector units that matter to numba and BLAS


def machine() -> dict[str, Any]:
    """CPU model, cores, OS, Python and library versions (peers: None when not installed)."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cpu_family_model": "/".join(_cpuinfo().get(k, "?") for k in ("cpu family", "model", "stepping")),
        "cpu_simd": [f for f in _SIMD if f in _cpuinfo().get("flags", "").split()],
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
    }
    versions = {
        "tinyml": "tinyml-tape",
        "numpy": "numpy",
        "numba": "numba",
        "llvmlite": "llvmlite",
        "torch": "torch",
        "jax": "jax",
        "jaxlib": "jaxlib",
        "micrograd": "micrograd",
        "scikit-learn": "scikit-learn",
    }
    info["versions"] = {name: _version(dist) for name, dist in versions.items()}
    info["env"] = {
        k: os.environ[k]
        for k in ("NUMBA_CACHE_DIR", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS")
        if k in os.environ
    }
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [
            {k: p.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
            for p in threadpool_info()
        ]
    except ImportError:
        info["blas"] = None
    return info


def machine_line(info: dict[str, Any]) -> str:
    v = info["versions"]
    simd = "/".join(info["cpu_simd"])
    parts = [
        f"{info['cpu']} ({simd}), {info['cores']} cores" if simd else f"{info['cpu']}, {info['cores']} cores",
        f"{info['os']}",
        f"Python {info['python']}",
        f"numpy {v['numpy']}",
        f"numba {v['numba']} (llvmlite {v['llvmlite']})",
    ]
    for peer in ("torch", "jax", "micrograd", "scikit-learn"):
        parts.append(f"{peer} {v[peer] or 'not installed'}")
    return "; ".join(parts)


# ---------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------
def fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    if x == 0 or not np.isfinite(x):
        return f"{x:g}"
    if 1e-3 <= abs(x) < 1e6:
        return f"{x:.{digits}g}" if abs(x) < 10**digits else f"{x:,.0f}"
    return f"{x:.{digits - 1}e}"


def table(w: Workload) -> str:
    """The workload as a fixed-width text table (columns empty on every row are left out).

    An extrapolated median is marked with ``*`` (see ``Entry.extrapolated``).
    """
    head = [
        "implementation",
        f"median ({w.unit})",
        f"/ {w.reference}" if w.reference else "ratio",
        "final loss",
        "epochs",
        "check",
    ]
    rows = []
    for e in w.entries:
        if e.status == OK:
            ratio = w.ratio(e)
            rows.append(
                [
                    e.name,
                    fmt(e.value) + (" *" if e.extrapolated else ""),
                    "-" if ratio is None else f"{ratio:.2f}",
                    fmt(e.loss, 4),
                    "-" if e.epochs is None else f"{e.epochs:,}",
                    e.check or "-",
                ]
            )
        else:
            rows.append([e.name, e.status, "", "", "", e.check or "-"])
    always = (0, 1, len(head) - 1)
    keep = [i for i in range(len(head)) if i in always or any(r[i] not in ("-", "") for r in rows)]
    head = [head[i] for i in keep]
    rows = [[r[i] for i in keep] for r in rows]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]
    lines = [f"== {w.title} =="]
    for r in [head, *rows]:
        cells = [r[0].ljust(widths[0])] + [c.rjust(wd) for c, wd in zip(r[1:-1], widths[1:])]
        lines.append("  ".join(cells) + "  " + r[-1])
    if any(e.extrapolated for e in w.entries):
        lines.append("  * extrapolated linearly from the epochs shown to the workload's epoch count")
    for e in w.entries:
        if e.note:
            lines.append(f"  {e.name}: {e.note}")
    lines.extend(f"  {n}" for n in w.notes)
    return "\n".join(lines)


def as_json(w: Workload) -> dict[str, Any]:
    return {
        "key": w.key,
        "title": w.title,
        "unit": w.unit,
        "reference": w.reference,
        "notes": w.notes,
        "extra": w.extra,
        "entries": [
            {
                "name": e.name,
                "status": e.status,
                "median": e.value,
                "ratio_to_reference": w.ratio(e),
                "times_s": e.times,
                "final_loss": e.loss,
                "epochs": e.epochs,
                "extrapolated": e.extrapolated,
                "note": e.note,
                "check": e.check,
                **({"extra": e.extra} if e.extra else {}),
            }
            for e in w.entries
        ],
    }
