"""Random expression graphs: tinyml against the pure-Python reference and finite differences."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

import tinyml as tm

from . import reference as ref
from .programs import Resolved, apply, mismatches, programs, run, same

REL = 1e-10  # engine vs reference: same formulas, different summation order
SETTINGS = settings(max_examples=150, deadline=None)


def build_both(prog: Resolved, root_index: int = -1):
    """Build ``prog`` in tinyml (fresh graph) and the reference; backward from the same node."""
    with tm.Graph():
        nodes = run(prog, tm.Value)
    rnodes = run(prog, ref.Scalar)
    nodes[root_index].backward()
    rnodes[root_index].backward()
    return nodes, rnodes


def assert_match(nodes, rnodes, root_index=-1):
    got = [(v.data, v.grad) for v in nodes]
    assert not mismatches(got, rnodes, root_index, REL)


@SETTINGS
@given(programs())
def test_values_and_gradients_match_reference(prog):
    nodes, rnodes = build_both(prog)
    assert_match(nodes, rnodes)


@SETTINGS
@given(programs(max_leaves=2, max_ops=24), st.integers(0, 1000))
def test_backward_from_an_interior_node(prog, pick):
    root = len(prog.leaves) + pick % len(prog.steps)
    nodes, rnodes = build_both(prog, root)
    assert_match(nodes, rnodes, root)


@SETTINGS
@given(programs(max_leaves=1, max_ops=10))
def test_single_leaf_used_many_times(prog):
    nodes, rnodes = build_both(prog)
    assert_match(nodes, rnodes)


def finite_difference(prog: Resolved, k: int) -> float:
    """Central difference of the program's root with respect to leaf ``k``, on the reference."""
    x = prog.leaves[k]
    h = 1e-6 * max(1.0, abs(x))

    def f(xk):
        leaves = list(prog.leaves)
        leaves[k] = xk
        return run(Resolved(leaves, prog.steps, prog.kink_distance), ref.Scalar)[-1].data

    return (f(x + h) - f(x - h)) / (2 * h)


@SETTINGS
@given(programs(max_leaves=3, max_ops=10))
def test_gradients_match_finite_differences(prog):
    if prog.kink_distance < 1e-3:
        return  # a kink within reach of the step: no derivative to compare against
    with tm.Graph():
        nodes = run(prog, tm.Value)
    nodes[-1].backward()
    for k in range(len(prog.leaves)):
        fd = finite_difference(prog, k)
        g = nodes[k].grad
        assert math.isfinite(g)
        assert abs(fd - g) <= 1e-5 * max(1.0, abs(g), abs(nodes[-1].data)), (k, fd, g)


@SETTINGS
@given(programs(max_leaves=3, max_ops=10))
def test_backward_twice_doubles_leaf_gradients(prog):
    with tm.Graph():
        nodes = run(prog, tm.Value)
    root = nodes[-1]
    root.backward()
    first = [v.grad for v in nodes]
    root.backward()
    n = len(prog.leaves)
    for k in range(n):
        assert same(nodes[k].grad, 2 * first[k], abs(first[k]), 1e-12)
    for k in range(n, len(nodes)):  # interior gradients are not accumulated
        assert same(nodes[k].grad, first[k], abs(first[k]), 0.0)


@SETTINGS
@given(programs(max_leaves=3, max_ops=12))
def test_reading_values_while_building_changes_nothing(prog):
    """Lazy evaluation: reading .data after every step (many small forward sweeps)
    gives bit-for-bit the same numbers as one sweep at the end."""
    with tm.Graph():
        lazy = run(prog, tm.Value)
    with tm.Graph():
        eager = [tm.Value(v) for v in prog.leaves]
        for op, i, j, c in prog.steps:
            eager.append(apply(op, eager[i], eager[j], c))
            _ = eager[-1].data
    lazy[-1].backward()
    eager[-1].backward()
    assert [v.data for v in lazy] == [v.data for v in eager] or any(math.isnan(v.data) for v in lazy)
    assert [v.grad for v in lazy[: len(prog.leaves)]] == [v.grad for v in eager[: len(prog.leaves)]]


@settings(max_examples=40, deadline=None)
@given(st.lists(programs(max_leaves=2, max_ops=6), min_size=2, max_size=2))
def test_two_independent_graphs_do_not_interfere(progs):
    """Building into two graphs alternately gives what each gives alone."""
    alone = []
    for p in progs:
        nodes, _ = build_both(p)
        alone.append([(v.data, v.grad) for v in nodes])
    g1, g2 = tm.Graph(), tm.Graph()
    with g1:
        a = run(progs[0], tm.Value)
    with g2:
        b = run(progs[1], tm.Value)
    b[-1].backward()
    a[-1].backward()
    for nodes, expected in zip((a, b), alone):
        got = [(v.data, v.grad) for v in nodes]
        assert len(got) == len(expected)
        for (d, g), (ed, eg) in zip(got, expected):
            assert same(d, ed, 0.0, 0.0) and same(g, eg, 0.0, 0.0)
