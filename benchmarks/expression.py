"""Workload 13: micrograd's own README expression, built and backpropagated per iteration.

The expression of micrograd's README (about 25 operators on two leaves), then
``g.backward()``, in a fresh graph every iteration, as a micrograd user
writes it. tinyml, micrograd and PyTorch eager (scalar float64 tensors, one
thread) run the same function; each must reproduce micrograd's value of
``g`` and gradients of ``a`` and ``b`` (and PyTorch float64's, when torch is
installed). Three more figures for tinyml alone: ``backward()`` on one
already built expression, a ``.data`` read that has to evaluate it, and
the build cost per row. BurTorch (C++, small-graph autograd) is quoted from
its authors as a reference, not run.
"""

from __future__ import annotations

import timeit

from .core import OK, Entry, Settings, Workload, close, guarded, measure, median, require, time_goal

KEY = "expression"
GOAL = 0.12  # tinyml at most this fraction of micrograd's time
BURTORCH_US = 0.52  # BurTorch's figure for this expression, us per iteration (C++, not run here)
BACKWARD_GOAL_US = 3.0
DATA_GOAL_US = 2.0
# g, dg/da, dg/db as micrograd 0.1.0 computes them (its README prints them to 4 places); every
# implementation must match them to 1e-12, so the check runs whichever peers are installed
WANT = [24.70408163265306, 138.83381924198252, 645.5772594752187]


def build(value, relu):
    """micrograd's README expression over ``value(x)`` leaves; returns (a, b, g)."""
    a = value(-4.0)
    b = value(2.0)
    c = a + b
    d = a * b + b**3
    c = c + (c + 1)
    c = c + (1 + c + (-a))
    d = d + (d * 2 + relu(b + a))
    d = d + (3 * d + relu(b - a))
    e = c - d
    f = e**2
    g = f / 2.0
    g = g + 10.0 / f
    return a, b, g


def expression(value, relu):
    """``build``, then ``g.backward()``; returns (a, b, g)."""
    a, b, g = build(value, relu)
    g.backward()
    return a, b, g


def _tinyml():
    import tinyml as tm

    def run():
        return expression(tm.Value, lambda x: x.relu())

    def result(out):
        a, b, g = out
        return [g.data, a.grad, b.grad]

    return run, result


def _micrograd():
    engine = require("micrograd.engine")

    def run():
        return expression(engine.Value, lambda x: x.relu())

    def result(out):
        a, b, g = out
        return [g.data, a.grad, b.grad]

    return run, result


def _torch():
    torch = require("torch")
    torch.set_num_threads(1)

    def leaf(x):
        return torch.tensor(x, dtype=torch.float64, requires_grad=True)

    def run():
        return expression(leaf, torch.relu)

    def result(out):
        a, b, g = out
        return [g.item(), a.grad.item(), b.grad.item()]

    return run, result


PEERS = {"tinyml": _tinyml, "micrograd": _micrograd, "torch eager (1 thread)": _torch}


def run(settings: Settings) -> list[Workload]:
    title = "13. micrograd's README expression, built + backward each iteration"
    w = Workload(KEY, title, "us/iter", "tinyml")
    n = settings.pick(20_000, 200)
    results = {}
    for name, make in PEERS.items():
        guarded(w, name, lambda e, name=name, make=make: _measure(e, name, make, n, settings, results))
    for e in w.entries:
        if e.status == OK and e.name in results:
            e.check = close(results[e.name], WANT, 1e-12, 0.0, "g, dg/da, dg/db vs micrograd's")
    time_goal(w, settings, "tinyml", "micrograd", GOAL, "tinyml's time / micrograd's")
    w.notes.append(f"reference (C++, quoted, not run): BurTorch {BURTORCH_US} us/iteration")

    costs = Workload(KEY + ".costs", "13b. tinyml's fixed costs on that expression", "us")
    guarded(costs, "backward() of the built expression", lambda e: _backward_alone(e, settings))
    guarded(costs, ".data read that evaluates it", lambda e: _data_alone(e, settings))
    guarded(costs, "build, per row", lambda e: _build_per_row(e, settings))
    for name, goal in ((costs.entries[0], BACKWARD_GOAL_US), (costs.entries[1], DATA_GOAL_US)):
        if name.status == OK:
            verdict = "met" if name.value <= goal else "NOT met"
            if settings.quick:
                verdict += " (quick mode: too few calls to judge)"
            costs.notes.append(f"goal: {name.name} at most {goal:g} us: {name.value:.2f}, {verdict}")
    return [w, costs]


def _measure(e: Entry, name: str, make, n: int, settings: Settings, results: dict) -> None:
    step, result = make()
    results[name] = result(step())  # also the warm-up (compiles tinyml's kernels)

    def loop(_):
        for _ in range(n):
            step()

    times, _ = measure(lambda: None, loop, settings.repeats)
    e.times = times
    e.epochs = n
    e.value = median(times) / n * 1e6


def _best_us(stmt, number: int, settings: Settings) -> float:
    """The best of many short timings, in us per call (costs of a microsecond or so): short,
    so that some of them run between two preemptions of this process on a shared machine."""
    return min(timeit.repeat(stmt, number=number, repeat=settings.pick(50, 5))) / number * 1e6


def _built():
    """One expression built in a fresh graph, nothing evaluated yet: (graph, a, b, g)."""
    import tinyml as tm

    graph = tm.Graph()
    with graph:
        a, b, g = build(tm.Value, lambda x: x.relu())
    return graph, a, b, g


def _backward_alone(e: Entry, settings: Settings) -> None:
    graph, a, b, g = _built()
    g.backward()
    first = [g.data, a.grad, b.grad]
    e.value = _best_us(g.backward, settings.pick(2_000, 200), settings)  # leaves accumulate; same work
    e.note = f"{len(graph)} rows"
    e.check = close(first, WANT, 1e-12, 0.0, "the first backward vs micrograd's")


def _data_alone(e: Entry, settings: Settings) -> None:
    graph, _, _, g = _built()
    first = g.data

    def read():
        graph.n_eval = 0  # every row pending again (leaves keep their data): one evaluation per read
        return g.data

    e.value = _best_us(read, settings.pick(2_000, 200), settings)
    e.note = f"{len(graph)} rows evaluated per read"
    again = read()
    e.check = OK if again == first else f"FAILED: re-evaluation gave {again!r}, first {first!r}"


def _build_per_row(e: Entry, settings: Settings) -> None:
    import tinyml as tm

    rows = len(_built()[0])
    graph = tm.Graph()

    def one():
        with graph:
            build(tm.Value, lambda x: x.relu())

    e.value = _best_us(one, settings.pick(500, 100), settings) / rows
    e.note = f"{rows} rows per build, in one graph (compacted as it fills)"
    with graph:
        _, _, g = build(tm.Value, lambda x: x.relu())
    e.check = close([g.data], WANT[:1], 1e-12, 0.0, "g after the timed builds")
