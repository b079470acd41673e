"""Run one XOR training in a fresh process and print its memory use as JSON.

    python -m benchmarks.rss_child MODE EPOCHS

MODE is ``import`` (import tinyml and build the model, no training), ``fit``,
``eager`` (the seed-style loop, RSS sampled at a few epochs) or ``numba`` (the
hand-written kernel). Peak RSS is ``VmHWM`` from ``/proc/self/status`` (see
``peak_rss_bytes``; ``ru_maxrss`` is reported too); the samples read the
current RSS from ``/proc/self/statm``.
"""

from __future__ import annotations

import json
import os
import resource
import sys

import numpy as np

SAMPLES = 5  # RSS samples of the eager loop, at evenly spaced epochs


def current_rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def peak_rss_bytes() -> int:
    """This process's peak RSS: ``VmHWM`` where Linux has it, else ``ru_maxrss``.

    On Linux ``ru_maxrss`` of a subprocess can report its PARENT's size: Python
    starts children with vfork, and the parent's memory high-water mark is
    carried into the child's counter across exec. ``VmHWM`` belongs to the
    child's own address space.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return maxrss_bytes()


def main(argv: list[str]) -> dict:
    mode, epochs = argv[0], int(argv[1])
    from .mlp import evaluate
    from .xor_peers import NET, NumbaXor, TinymlEager, TinymlFit, X, Y, initial_params

    out: dict = {"mode": mode, "epochs": epochs}
    if mode == "numba":
        peer = NumbaXor()
        state = peer.prepare(initial_params())
        peer.train(state, epochs)
        out["final_loss"] = evaluate(NET, peer.params(state), X, Y)["loss"]
    elif mode in ("import", "fit", "eager"):
        if mode == "fit":
            try:
                TinymlFit().load()
            except Exception as exc:  # noqa: BLE001 - reported to the parent
                out["unavailable"] = str(exc)
                return out
        peer = TinymlEager()
        model = peer.prepare(initial_params())
        if mode == "fit":
            TinymlFit().train(model, epochs)
        elif mode == "eager":
            marks = np.linspace(0, epochs, SAMPLES + 1).astype(int)
            samples = []
            for done, upto in zip(marks[:-1], marks[1:]):
                peer.train(model, int(upto - done))
                graph = model.graph
                samples.append(
                    {
                        "epoch": int(upto),
                        "rss": current_rss_bytes(),
                        "rows": len(graph),
                        "capacity": graph.capacity,
                    }
                )
            out["samples"] = samples
        if mode != "import":
            out["final_loss"] = evaluate(NET, peer.params(model), X, Y)["loss"]
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    out["peak_rss"] = peak_rss_bytes()
    out["ru_maxrss"] = maxrss_bytes()
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
