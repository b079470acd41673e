"""Random expression programs for property tests, run on any scalar backend.

A *program* is a list of leaf values and instructions ``(op, i, j, c)``: apply
``op`` to earlier nodes ``i`` (and ``j``) and a constant ``c``. Indices count
back from the newest node, so shrinking makes deep chains, and any node can be
used many times (shared subexpressions, leaves used several times, ``a + a``).

:func:`resolve` walks a program on the reference (tests/reference.py) and
replaces each instruction whose inputs are outside a well-conditioned domain
(log of a small number, division by a small number, a huge result...) by
``tanh`` of its first input, so every backend computes finite, comparable
numbers. :func:`run` then builds the resolved program on any backend whose
values support Python's operators and micrograd's method names (tinyml's
``Value``, the reference ``Scalar``, a torch wrapper).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hypothesis import strategies as st

from . import op_cases
from . import reference as ref

UNARY = [c.name for c in op_cases.UNARY + op_cases.ALIASES]
WITH_CONSTANT = [c.name for c in op_cases.WITH_CONSTANT]
BINARY = [c.name for c in op_cases.BINARY]
ALL_OPS = UNARY + WITH_CONSTANT + BINARY
KINKED = {c.name for c in op_cases.CASES.values() if c.kinked}  # not differentiable at 0

LIMIT = 1e3  # largest |value| a resolved program produces
MARGIN = op_cases.MARGIN  # distance kept from singularities (log 0, 1/0, 0 ** negative)
POW_EXPONENTS = [0.0, 1.0, 2.0, 3.0, -1.0, -2.0, 0.5, 1.5, -0.5, 2.5]
RPOW_BASES = [0.5, 1.5, 2.0, 3.0]


def apply(op: str, a, b, c: float):
    """Node ``op`` over nodes ``a``, ``b`` and constant ``c``, with backend-neutral syntax."""
    if op == "leaky_relu":
        c = abs(c) * 0.1  # a slope in [0, 0.3]
    return op_cases.CASES[op].apply(a, b, c)


def constant_for(op: str, raw: float) -> float:
    """Map a drawn constant to one that suits ``op`` (nonzero divisor, tabled exponents)."""
    if op == "pow_c":
        return POW_EXPONENTS[int(abs(raw) * 1000) % len(POW_EXPONENTS)]
    if op == "rpow_c":
        return RPOW_BASES[int(abs(raw) * 1000) % len(RPOW_BASES)]
    if op in ("div_c", "rdiv_c") and abs(raw) < 0.1:
        return 0.5
    return raw


def well_conditioned(op: str, x: float, y: float, c: float) -> bool:
    """Whether ``op`` at inputs ``x``, ``y`` stays away from poles and overflow."""
    return op_cases.CASES[op].domain(x, y, c)


@dataclass
class Resolved:
    """A program whose every instruction is safe at its leaf values."""

    leaves: list[float]
    steps: list[tuple[str, int, int, float]]  # absolute node indices
    kink_distance: float  # min |input| over relu/abs/leaky_relu nodes (inf if none)


def resolve(leaves: list[float], instructions: list[tuple[str, int, int, float]]) -> Resolved:
    nodes = [ref.Scalar(v) for v in leaves]
    steps = []
    kink = math.inf
    for op, ri, rj, raw in instructions:
        n = len(nodes)
        i = n - 1 - ri % n
        j = n - 1 - rj % n
        c = constant_for(op, raw)
        a, b = nodes[i], nodes[j]
        node = None
        if well_conditioned(op, a.data, b.data, c):
            node = apply(op, a, b, c)
            if not (abs(node.data) <= LIMIT):
                node = None
        if node is None:
            op, j, c = "tanh", i, 0.0
            node = a.tanh()
        if op in KINKED:
            kink = min(kink, abs(a.data))
        nodes.append(node)
        steps.append((op, i, j, c))
    return Resolved(list(leaves), steps, kink)


def run(resolved: Resolved, make_leaf) -> list:
    """Build the program with ``make_leaf(float)``; returns every node (leaves first)."""
    nodes = [make_leaf(v) for v in resolved.leaves]
    for op, i, j, c in resolved.steps:
        nodes.append(apply(op, nodes[i], nodes[j], c))
    return nodes


def gradient_magnitude(root: ref.Scalar, floor: float = 1e-5) -> dict[int, float]:
    """Sum over paths of |chain-rule products| for every node: a rounding-error scale.

    Each local derivative counts as ``|d| + floor``: derivatives such as
    1 - tanh(x)^2 or 1 + tanh(u) carry an *absolute* rounding error of a few
    ulps of 1 (a backend's tanh may differ from math.tanh by one ulp), which a
    relative tolerance ``rel`` times this scale covers when ``floor >~ eps / rel``.
    """
    order = root.topological_order()
    mag = {id(n): 0.0 for n in order}
    mag[id(root)] = 1.0
    for node in reversed(order):
        for p, d in zip(node.parents, node.local):
            mag[id(p)] += mag[id(node)] * (abs(d) + floor)
    return mag


def value_magnitude(nodes: list[ref.Scalar]) -> dict[int, float]:
    """A first-order bound on each node's accumulated forward rounding, in units of eps.

    |node| for its own rounding plus |d node / d parent| times the parent's bound:
    a difference of two nearly equal numbers (1e-5 - tanh(1e-5)) inherits the
    error of its operands, not a relative error of its own tiny value.
    """
    mag: dict[int, float] = {}
    for node in nodes:
        m = abs(node.data)
        for p, d in zip(node.parents, node.local):
            m += abs(d) * mag.get(id(p), abs(p.data))
        mag[id(node)] = m
    return mag


def same(x: float, y: float, scale: float, rel: float) -> bool:
    """x == y up to ``rel * scale`` (NaN equals NaN, infinities must match)."""
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    if math.isinf(x) or math.isinf(y):
        return x == y
    return abs(x - y) <= rel * max(scale, abs(x), abs(y), 1e-300)


leaf_values = st.floats(-3.0, 3.0, allow_nan=False, allow_subnormal=False)
constants = st.floats(-3.0, 3.0, allow_nan=False, allow_subnormal=False)


@st.composite
def programs(draw, max_leaves: int = 4, max_ops: int = 14, ops: list[str] | None = None) -> Resolved:
    """A random resolved program over 1..max_leaves leaves and 1..max_ops instructions."""
    choices = ALL_OPS if ops is None else ops
    leaves = draw(st.lists(leaf_values, min_size=1, max_size=max_leaves))
    n_ops = draw(st.integers(1, max_ops))
    instructions = [
        (
            draw(st.sampled_from(choices)),
            draw(st.integers(0, 63)),
            draw(st.integers(0, 63)),
            draw(constants),
        )
        for _ in range(n_ops)
    ]
    return resolve(leaves, instructions)


def mismatches(
    got: list[tuple[float, float]],
    rnodes: list[ref.Scalar],
    root: int = -1,
    rel: float = 1e-10,
    expected: list[tuple[float, float]] | None = None,
):
    """Nodes whose (data, grad) in ``got`` differ beyond rounding from ``expected``.

    ``expected`` defaults to the reference's own (data, grad); either way the
    rounding scales come from the reference nodes ``rnodes``, on which
    ``rnodes[root].backward()`` must have been called. Returns a list of
    (index, what, got, expected) for the assertion message; empty is a pass.
    """
    if expected is None:
        expected = [(r.data, r.grad) for r in rnodes]
    vmag = value_magnitude(rnodes)
    gmag = gradient_magnitude(rnodes[root])
    bad = []
    for k, ((data, grad), (want_data, want_grad), r) in enumerate(zip(got, expected, rnodes, strict=True)):
        if not same(data, want_data, vmag[id(r)], rel):
            bad.append((k, "data", data, want_data))
        if not same(grad, want_grad, gmag.get(id(r), 0.0), rel):
            bad.append((k, "grad", grad, want_grad))
    return bad
