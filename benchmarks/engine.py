"""Workload 4: engine throughput, nanoseconds per node, on graphs built with ``tm.Value``.

Two graphs of about a million rows (3,000 in quick mode):

- random: a mix of leaves, ``+ - *``, ``+ c``, ``* c``, ``tanh``, ``sigmoid``,
  ``relu``; every op row takes the previous op row and a uniformly random earlier
  row as operands (so memory access is scattered), every leaf feeds the next
  row, and so the whole graph is an ancestor of the last row (the root);
- chain: one leaf, then a chain of unary rows (``* 0.9``, ``tanh``, ``+ 0.1``,
  ``sigmoid``), each row depending on the one before: a million-deep graph
  (its leaf's gradient underflows to 0; rows near the root have real ones).

Per repeat the graph is built anew (Python front-end time: "build"), then
``root.backward()`` is timed twice: the first call evaluates every pending row
and backpropagates ("forward+backward"), the second only backpropagates
("backward"). Each is divided by the graph's row count. The root's value and the
gradients of every leaf and of a few rows near the root are checked against a
pure-Python evaluation of the same program.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .core import Settings, Workload, close, combine, guarded, measure, median

KEY = "engine"

LEAF, ADD, SUB, MUL, ADD_C, MUL_C, TANH, SIGMOID, RELU = range(9)
BINARY = (ADD, SUB, MUL)
KINDS = np.array([LEAF, ADD, SUB, MUL, ADD_C, MUL_C, TANH, SIGMOID, RELU])
WEIGHTS = np.array([0.10, 0.15, 0.10, 0.15, 0.10, 0.10, 0.15, 0.10, 0.05])
CHAIN_CYCLE = ((MUL_C, 0.9), (TANH, 0.0), (ADD_C, 0.1), (SIGMOID, 0.0))


@dataclass
class Program:
    """A graph as plain lists: kind, second operand (an earlier row) and constant per row."""

    kind: list[int]
    other: list[int]
    const: list[float]


def random_program(n: int, seed: int = 0) -> Program:
    rng = np.random.default_rng(seed)
    kind = rng.choice(KINDS, size=n, p=WEIGHTS)
    kind[0] = LEAF
    other = (rng.random(n) * np.arange(n)).astype(np.int64)  # uniform in [0, i)
    const = rng.uniform(-1.0, 1.0, n)
    for i in range(1, n):
        if kind[i - 1] == LEAF and kind[i] not in BINARY:
            kind[i] = BINARY[i % 3]
        if kind[i - 1] == LEAF:
            other[i] = i - 1  # every leaf feeds the row after it
    kind[-1] = ADD if kind[-1] == LEAF else kind[-1]
    return Program(kind.tolist(), other.tolist(), const.tolist())


def chain_program(n: int) -> Program:
    kind = [LEAF] + [CHAIN_CYCLE[i % 4][0] for i in range(n - 1)]
    const = [0.3] + [CHAIN_CYCLE[i % 4][1] for i in range(n - 1)]
    return Program(kind, [0] * n, const)


def watched(prog: Program) -> list[int]:
    """Rows whose gradients are checked: every leaf, and a few rows near the root."""
    n = len(prog.kind)
    probes = {n - d for d in (2, 10, 100, 1_000, 10_000) if d < n}
    return sorted(probes | {i for i, k in enumerate(prog.kind) if k == LEAF})


def build(prog: Program):
    """Build ``prog`` with tm.Value in a graph of its own; returns (graph, root, watched Values)."""
    import tinyml as tm

    keep = set(watched(prog))
    with tm.Graph() as graph:
        nodes = []
        kept = []
        last = None  # the previous op row (or the first leaf)
        for i, (k, j, c) in enumerate(zip(prog.kind, prog.other, prog.const)):
            if k == LEAF:
                v = tm.Value(c)
                if last is None:
                    last = v
            elif k == ADD:
                v = last + nodes[j]
            elif k == SUB:
                v = last - nodes[j]
            elif k == MUL:
                v = last * nodes[j]
            elif k == ADD_C:
                v = last + c
            elif k == MUL_C:
                v = last * c
            elif k == TANH:
                v = last.tanh()
            elif k == SIGMOID:
                v = last.sigmoid()
            else:
                v = last.relu()
            nodes.append(v)
            if k != LEAF:
                last = v
            if i in keep:
                kept.append(v)
    return graph, last, kept


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def reference(prog: Program) -> tuple[float, list[float]]:
    """Pure-Python forward and reverse sweep of ``prog``: (root value, gradients of watched rows)."""
    n = len(prog.kind)
    val = [0.0] * n
    first = [0] * n  # the row used as the first operand
    last = -1
    for i, (k, j, c) in enumerate(zip(prog.kind, prog.other, prog.const)):
        if k == LEAF:
            val[i] = c
            if last < 0:
                last = i
            continue
        a = val[last]
        first[i] = last
        if k == ADD:
            val[i] = a + val[j]
        elif k == SUB:
            val[i] = a - val[j]
        elif k == MUL:
            val[i] = a * val[j]
        elif k == ADD_C:
            val[i] = a + c
        elif k == MUL_C:
            val[i] = a * c
        elif k == TANH:
            val[i] = math.tanh(a)
        elif k == SIGMOID:
            val[i] = _sigmoid(a)
        else:
            val[i] = a if a > 0 else 0.0
        last = i
    grad = [0.0] * n
    grad[last] = 1.0
    for i in range(last, -1, -1):
        k = prog.kind[i]
        g = grad[i]
        if k == LEAF or g == 0.0:
            continue
        a, j = first[i], prog.other[i]
        if k == ADD:
            grad[a] += g
            grad[j] += g
        elif k == SUB:
            grad[a] += g
            grad[j] -= g
        elif k == MUL:
            grad[a] += g * val[j]
            grad[j] += g * val[a]
        elif k == ADD_C:
            grad[a] += g
        elif k == MUL_C:
            grad[a] += g * prog.const[i]
        elif k == TANH:
            grad[a] += g * (1.0 - val[i] * val[i])
        elif k == SIGMOID:
            grad[a] += g * val[i] * (1.0 - val[i])
        elif val[a] > 0:
            grad[a] += g
    return val[last], [grad[i] for i in watched(prog)]


def run(settings: Settings) -> Workload:
    n = settings.pick(1_000_000, 3_000)
    w = Workload(KEY, f"4. Engine throughput on ~{n:,}-row graphs built with tm.Value", "ns/node")
    w.notes.append("ns/node = time / rows in the graph; build = Python front-end appending the rows")
    _, root, _ = build(random_program(100, seed=1))  # warm-up: load the kernels before timing
    root.backward()
    for name, make in (("random", lambda: random_program(n)), ("chain", lambda: chain_program(n))):
        prog = make()
        _graph(w, name, prog, settings)
    return w


def _graph(w: Workload, name: str, prog: Program, settings: Settings) -> None:
    results: dict[str, list[float]] = {"build": [], "forward+backward": [], "backward": []}
    info: dict[str, object] = {}

    def body_build(e) -> None:
        built = None
        for _ in range(settings.repeats):
            built = None  # free the previous graph before building the next
            t_build, built = measure(lambda: None, lambda _: build(prog), 1)
            root = built[1]
            t_fb, _ = measure(lambda r=root: r, _backward, 1)
            t_b, _ = measure(lambda r=root: r, _backward, 1)
            results["build"] += t_build
            results["forward+backward"] += t_fb
            results["backward"] += t_b
        graph, root, kept = built
        rows = len(graph)
        info.update(rows=rows, capacity=graph.capacity, leaves=prog.kind.count(LEAF))
        want_root, want_grads = reference(prog)
        # leaves accumulate: the second backward() doubled theirs; interior rows were reset
        rows_watched = watched(prog)
        grads = [v.grad / (2.0 if prog.kind[i] == LEAF else 1.0) for v, i in zip(kept, rows_watched)]
        e.check = combine(
            close(root.data, want_root, 1e-9, 1e-12, "root value vs the pure-Python reference"),
            close(grads, want_grads, 1e-9, 1e-12, "gradients vs the pure-Python reference"),
        )
        _fill(e, results["build"], rows)
        e.extra.update(info)

    guarded(w, f"{name}: build", body_build)
    for part in ("forward+backward", "backward"):
        entry = guarded(w, f"{name}: {part}", lambda e, p=part: _fill(e, results[p], info.get("rows")))
        entry.check = w.entry(f"{name}: build").check
    w.extra[name] = info


def _backward(root) -> None:
    root.backward()


def _fill(e, times: list[float], rows) -> None:
    if not times or not rows:
        raise RuntimeError("the graph was not built")
    e.times = times
    e.value = median(times) / rows * 1e9
