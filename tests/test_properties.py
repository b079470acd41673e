"""Random expression graphs: tinyml against the pure-Python reference and finite differences."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import tinyml as tm

from . import reference as ref
from .programs import (
    LIMIT,
    Resolved,
    apply,
    gradient_magnitude,
    mismatches,
    programs,
    run,
    same,
    well_conditioned,
)

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


# ---------------------------------------------------------------------------
# Compiled programs: the same random graphs, one lane per sample
# ---------------------------------------------------------------------------
ROLES = ("input", "param", "const")


def conditioned_at(prog: Resolved, leaves: list[float]) -> bool:
    """Whether every step of ``prog`` is as well-conditioned at ``leaves`` as
    ``resolve`` demanded at the program's own leaf values."""
    nodes = [ref.Scalar(v) for v in leaves]
    for op, i, j, c in prog.steps:
        a, b = nodes[i], nodes[j]
        if not well_conditioned(op, a.data, b.data, c):
            return False
        node = apply(op, a, b, c)
        if not abs(node.data) <= LIMIT:
            return False
        nodes.append(node)
    return True


@st.composite
def lane_programs(draw):
    """A program, a role for each leaf, and 2..12 samples of its leaves.

    Each sample moves the inputs a little off the drawn leaf values (so a lane
    mix-up shows) and must keep every step well-conditioned.
    """
    prog = draw(programs(max_leaves=4, max_ops=12))
    roles = draw(st.lists(st.sampled_from(ROLES), min_size=len(prog.leaves), max_size=len(prog.leaves)))
    samples = []
    for s in range(draw(st.integers(2, 12))):
        leaves = [
            v + 1e-4 * (s + 1) * (1.0 + abs(v)) if role == "input" else v
            for v, role in zip(prog.leaves, roles)
        ]
        assume(conditioned_at(prog, leaves))
        samples.append(leaves)
    return prog, roles, samples


def eager_values(prog: Resolved, roles, samples) -> list[list[float]]:
    """Every node's value for each sample, from the eager engine."""
    with tm.Graph():
        values = []
        for leaves in samples:
            values.append([v.data for v in run(Resolved(leaves, prog.steps, prog.kink_distance), tm.Value)])
        return values


def check_lanes(prog: Resolved, roles, samples) -> None:
    """Compile ``prog`` (leaves in the given roles; outputs: the root, then every
    node) and run it on ``samples``, one lane per sample: ``run`` must give
    each sample's eager values bit for bit (the same arithmetic, lane by lane),
    and one ``fit`` step the reference's gradients summed over the samples."""
    values = eager_values(prog, roles, samples)
    inputs = [k for k, r in enumerate(roles) if r == "input"]
    params = [k for k, r in enumerate(roles) if r == "param"]
    with tm.Graph():
        nodes = run(prog, tm.Value)
        program = tm.compile([nodes[-1]] + nodes, [nodes[k] for k in inputs], [nodes[k] for k in params])
        x = np.array([[leaves[k] for k in inputs] for leaves in samples]).reshape(len(samples), len(inputs))
        out = program.run(x)
        assert out[:, 1:].tolist() == values
        if not params:
            return
        # SGD with lr 0 and momentum: after one step the momentum buffer is the gradient
        opt = tm.optim.SGD([nodes[k] for k in params], lr=0.0, momentum=0.9)
        program.fit(x, 1, optimizer=opt, reduction="sum", progress=False)
        assert [nodes[k].data for k in params] == [prog.leaves[k] for k in params]
    want = np.zeros(len(params))
    scale = np.zeros(len(params))
    for leaves in samples:
        rnodes = run(Resolved(leaves, prog.steps, prog.kink_distance), ref.Scalar)
        rnodes[-1].backward()
        magnitude = gradient_magnitude(rnodes[-1])
        for m, k in enumerate(params):
            want[m] += rnodes[k].grad
            scale[m] += magnitude.get(id(rnodes[k]), 0.0)  # 0: not an ancestor of the root
    for m, k in enumerate(params):
        assert same(opt.state[m, 0], want[m], scale[m], REL), (k, opt.state[m, 0], want[m])


@settings(max_examples=300, deadline=None)
@given(lane_programs())
def test_compiled_programs_match_the_eager_engine_lane_by_lane(case):
    """Random graphs, run with one lane per sample (``check_lanes``): every op
    outside the fused layer rows, with parents of every kind."""
    check_lanes(*case)


# Every kind of parent an op can have in a program, as a Resolved program over
# the leaves [u, v, p, q, c] in the roles below; "computed" parents are u + p and
# v + q (steps 5 and 6). Inputs are u, v in 0.8..1.5 and p, q, c are positive,
# so every op below is well-conditioned on every sample.
KIND_LEAVES = [0.8, 1.1, 0.7, 1.3, 0.9]
KIND_ROLES = ["input", "input", "param", "param", "const"]
KIND_STEPS = [("add", 0, 2, 0.0), ("add", 1, 3, 0.0)]
FIRST = {"input": 0, "param": 2, "const": 4, "computed": 5}
SECOND = {"input": 1, "param": 3, "const": 4, "computed": 6}


def kind_samples(n: int = 5) -> list[list[float]]:
    return [[0.8 + 0.1 * s, 1.1 + 0.07 * s, 0.7, 1.3, 0.9] for s in range(n)]


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "pow"])
@pytest.mark.parametrize("a", list(FIRST))
@pytest.mark.parametrize("b", list(SECOND))
def test_binary_ops_over_every_kind_of_parent(op, a, b):
    prog = Resolved(KIND_LEAVES, KIND_STEPS + [(op, FIRST[a], SECOND[b], 0.0)], math.inf)
    check_lanes(prog, KIND_ROLES, kind_samples())


@pytest.mark.parametrize("op", ["tanh", "exp", "sigmoid", "neg", "mul_c", "rpow_c"])
@pytest.mark.parametrize("a", list(FIRST))
def test_unary_ops_over_every_kind_of_parent(op, a):
    prog = Resolved(KIND_LEAVES, KIND_STEPS + [(op, FIRST[a], FIRST[a], 0.6)], math.inf)
    check_lanes(prog, KIND_ROLES, kind_samples())
