"""The op-code table is append-only and the kernels' literal copy agrees with it.

Op numbers are stored in tapes, saved programs and Numba's on-disk cache of
the kernels. If a number changed meaning, a cached kernel would silently
compute the wrong op. The mapping below is pinned: never edit an existing
line; a new op is appended with the next free number (and added here).
"""

from __future__ import annotations

import ast
import inspect
import math

import numpy as np
import pytest

import tinyml as tm
from tinyml import kernels, ops
from tinyml.ops import Op

from . import op_cases

# NEVER change a number here: that would break saved tapes and cached kernels.
PINNED = {
    "LEAF": 0,
    "ADD": 1,
    "SUB": 2,
    "MUL": 3,
    "DIV": 4,
    "POW": 5,
    "ADD_C": 6,
    "MUL_C": 7,
    "POW_C": 8,
    "RSUB_C": 9,
    "RDIV_C": 10,
    "NEG": 11,
    "RELU": 12,
    "TANH": 13,
    "SIGMOID": 14,
    "EXP": 15,
    "LOG": 16,
    "LEAKY_RELU": 17,
    "GELU_TANH": 18,
    "GELU_ERF": 19,
    "SILU": 20,
    "SOFTPLUS": 21,
    "ABS": 22,
    "SUM": 23,
    "AFFINE": 24,
    "LOGSUMEXP": 25,
    "BCE": 26,
    "DIV_C": 27,
    "NEURON": 28,
    "DROPOUT": 29,
    "INPUT": 30,
    "SQDIFF": 31,
    "SQRT": 32,
    "CROSS_ENTROPY": 33,
    "MAX": 34,
    "LANE_SUM": 35,
    "RUNNING_STAT": 36,
}

PINNED_ARITY = {
    "LEAF": 0,
    "INPUT": 0,
    **dict.fromkeys(["ADD", "SUB", "MUL", "DIV", "POW", "BCE", "DROPOUT", "SQDIFF"], 2),
    **dict.fromkeys(
        [
            "ADD_C",
            "MUL_C",
            "POW_C",
            "RSUB_C",
            "RDIV_C",
            "DIV_C",
            "SQRT",
            "NEG",
            "RELU",
            "TANH",
            "SIGMOID",
            "EXP",
            "LOG",
            "LEAKY_RELU",
            "GELU_TANH",
            "GELU_ERF",
            "SILU",
            "SOFTPLUS",
            "ABS",
        ],
        1,
    ),
    # (LANE_SUM has two parents and RUNNING_STAT one, but they read other lanes: n-ary to the sweeps)
    **dict.fromkeys(
        ["SUM", "AFFINE", "LOGSUMEXP", "NEURON", "CROSS_ENTROPY", "MAX", "LANE_SUM", "RUNNING_STAT"], None
    ),
}


@pytest.mark.parametrize("name, number", sorted(PINNED.items(), key=lambda kv: kv[1]))
def test_pinned_number(name, number):
    assert Op[name] == number
    assert Op(number).name == name


def test_table_is_append_only():
    numbers = [int(m) for m in Op]
    # no aliases: every member has its own number
    assert len(Op.__members__) == len(set(numbers)) == len(list(Op))
    # every new op is appended after the pinned ones, without gaps
    assert sorted(numbers) == list(range(len(numbers)))
    for member in Op:
        if member.name not in PINNED:
            assert int(member) > max(PINNED.values()), f"{member.name} reuses or precedes a pinned number"


def test_op_codes_fit_the_tape_dtype():
    assert max(int(m) for m in Op) <= np.iinfo(tm.Graph().op.dtype).max


@pytest.mark.parametrize("name, number", sorted(PINNED.items(), key=lambda kv: kv[1]))
def test_kernel_literal_matches(name, number):
    assert getattr(kernels, name) == number


def test_kernel_codes_are_literals_in_kernels_source():
    """Numba's cache keys on kernels.py: the codes must be written there, not imported."""
    tree = ast.parse(inspect.getsource(kernels))
    literals = {}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, ast.Constant)
            and type(node.value.value) is int
        ):
            literals[node.targets[0].id] = node.value.value
    for member in Op:
        assert literals.get(member.name) == int(member), member.name


def test_drifted_kernel_code_is_refused(monkeypatch):
    monkeypatch.setattr(kernels, "TANH", 99)
    with pytest.raises(ImportError, match="TANH"):
        kernels._check_codes()


@pytest.mark.parametrize("name", ["UNARY_CODES", "BINARY_CODES", "NARY_CODES", "LEAF_CODES", "FUSABLE_CODES"])
def test_a_kernel_op_set_that_misses_an_op_is_refused(monkeypatch, name):
    """Forgetting to add an op to the kernels' literal sets fails at import, not as NaN rows."""
    monkeypatch.setattr(kernels, name, getattr(kernels, name)[1:])
    with pytest.raises(ImportError, match=name):
        kernels._check_codes()


def test_the_kernels_dispatch_table_matches_the_sets():
    for member in Op:
        want = {"leaf": 0, "unary": 1, "binary": 2, "nary": 3}[ops.TABLE[member].arity]
        assert kernels.CLASS_OF[int(member)] == want, member.name


def test_op_sets_are_derived_from_the_records():
    assert ops.NEURON_ACTIVATIONS == {Op.TANH, Op.SIGMOID, Op.RELU}
    assert ops.WITH_CONSTANT == {
        Op.DIV_C, Op.ADD_C, Op.MUL_C, Op.POW_C, Op.RSUB_C, Op.RDIV_C, Op.LEAKY_RELU, Op.RUNNING_STAT
    }  # fmt: skip
    assert ops.label(Op.MUL_C, 2.5) == "* 2.5" and ops.label(Op.TANH) == "tanh"


@pytest.mark.parametrize("name", sorted(PINNED_ARITY))
def test_arity(name):
    assert ops.arity(Op[name]) == PINNED_ARITY[name]


def test_every_op_has_an_arity_class():
    for member in Op:
        classes = [member in ops.LEAVES, member in ops.BINARY, member in ops.UNARY, member in ops.NARY]
        assert sum(classes) == 1, member.name


# ---------------------------------------------------------------------------
# Behaviour: a row pushed with a raw code computes what the name says.
# This catches a kernel whose literal was swapped with another op's.
# ---------------------------------------------------------------------------
X = 0.7
Y = -1.3
C = 2.5


def _case_of(member: Op) -> op_cases.Case:
    """The first case of the shared table whose expression builds a row of ``member``."""
    return next(c for c in op_cases.BINARY + op_cases.UNARY + op_cases.WITH_CONSTANT if c.code == member)


def test_every_op_has_a_test_case():
    """An op a Value method builds must have its line in tests/op_cases.py, so the torch,
    reference and property tests all cover it (and a missing kernel rule shows as NaN)."""
    covered = {c.code for c in op_cases.CASES.values()} | op_cases.ELSEWHERE
    assert sorted(m.name for m in Op if m not in covered) == []


UNARY_EXPECT = sorted(m.name for m in ops.UNARY)


def _row_value(op_code, parents_data, aux=0.0):
    with tm.Graph() as g:
        leaves = [tm.Value(v) for v in parents_data]
        g.reserve(1, len(leaves))
        row = g.push(op_code, [v._row for v in leaves], aux)
        g.evaluate()
        return float(g.data[row, 0])


@pytest.mark.parametrize("name", UNARY_EXPECT)
@pytest.mark.parametrize("x", [X, -X])
def test_unary_code_computes_its_op(name, x):
    case = _case_of(Op[name])
    if not case.domain(x, 0.0, C):
        x = abs(x)  # real-valued domain
    got = _row_value(int(PINNED[name]), [x], C)
    assert got == pytest.approx(case.value(x, None, C), rel=1e-14, abs=1e-15)


@pytest.mark.parametrize("name", [c.code.name for c in op_cases.BINARY])
def test_binary_code_computes_its_op(name):
    x, y = abs(X), Y  # positive base for POW
    want = _case_of(Op[name]).value(x, y, 0.0)
    assert _row_value(PINNED[name], [x, y]) == pytest.approx(want, rel=1e-15)


def test_nary_codes_compute_their_ops():
    xs = [0.5, -2.0, 3.25]
    assert _row_value(PINNED["SUM"], xs) == pytest.approx(sum(xs), rel=1e-15)
    lse = math.log(sum(math.exp(v) for v in xs))
    assert _row_value(PINNED["LOGSUMEXP"], xs) == pytest.approx(lse, rel=1e-14)
    # AFFINE parents: bias, w1..wn, x1..xn
    b, w, x = 0.25, [1.5, -0.5], [2.0, 4.0]
    assert _row_value(PINNED["AFFINE"], [b, *w, *x]) == pytest.approx(b + 1.5 * 2.0 - 0.5 * 4.0, rel=1e-15)
    p, t = 0.8, 1.0
    assert _row_value(PINNED["BCE"], [p, t]) == pytest.approx(-math.log(p), rel=1e-14)
