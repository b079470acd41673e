"""Build a hand-written C kernel with the system's C compiler and load it with ctypes.

``load(source, functions)`` compiles ``benchmarks/<source>`` into a shared library
in a temporary folder (``cc -O3 -march=native -shared -fPIC``, the compiler from
``$CC`` or the first of cc / gcc / clang on the PATH) once per process and
returns the ``ctypes.CDLL``. Without a compiler, or when the build fails, it
raises ``Unavailable`` so the peer is reported as skipped, never as an error.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .core import Unavailable

HERE = Path(__file__).resolve().parent
FLAGS = ["-O3", "-march=native", "-shared", "-fPIC"]
_LOADED: dict[str, ctypes.CDLL] = {}
_TMP: list[tempfile.TemporaryDirectory] = []  # kept alive while the libraries are loaded


def compiler() -> str | None:
    """The C compiler to use: ``$CC`` if set, else cc, gcc or clang, or None."""
    names = [os.environ["CC"]] if os.environ.get("CC") else ["cc", "gcc", "clang"]
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


def load(source: str) -> ctypes.CDLL:
    """The compiled library of ``benchmarks/<source>`` (built on first use)."""
    if source in _LOADED:
        return _LOADED[source]
    cc = compiler()
    if cc is None:
        raise Unavailable("no C compiler found (set CC, or install cc/gcc/clang)")
    tmp = tempfile.TemporaryDirectory(prefix="tinyml-cpeer-")
    _TMP.append(tmp)
    lib = Path(tmp.name) / (Path(source).stem + ".so")
    cmd = [cc, *FLAGS, "-o", str(lib), str(HERE / source), "-lm"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"C compiler {cc} did not run: {exc}") from None
    if proc.returncode != 0:
        raise Unavailable(f"{' '.join(cmd)} failed: {proc.stderr.strip()[:300]}")
    _LOADED[source] = dll = ctypes.CDLL(str(lib))
    return dll


def flags_note() -> str:
    cc = compiler()
    return f"{Path(cc).name} {' '.join(FLAGS[:2])}" if cc else "no C compiler"
