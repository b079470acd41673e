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

from . import reference as ref

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
    **dict.fromkeys(["SUM", "AFFINE", "LOGSUMEXP", "NEURON", "CROSS_ENTROPY"], None),
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

UNARY_EXPECT = {
    "ADD_C": lambda x, c: x + c,
    "MUL_C": lambda x, c: x * c,
    "POW_C": lambda x, c: ref.power(x, c),
    "RSUB_C": lambda x, c: c - x,
    "RDIV_C": lambda x, c: c / x,
    "DIV_C": lambda x, c: x / c,
    "NEG": lambda x, c: -x,
    "RELU": lambda x, c: max(x, 0.0),
    "TANH": lambda x, c: math.tanh(x),
    "SIGMOID": lambda x, c: ref.sigmoid(x),
    "EXP": lambda x, c: math.exp(x),
    "LOG": lambda x, c: math.log(x),
    "LEAKY_RELU": lambda x, c: x if x > 0 else c * x,
    "GELU_TANH": lambda x, c: ref.Scalar(x).gelu("tanh").data,
    "GELU_ERF": lambda x, c: ref.Scalar(x).gelu().data,
    "SILU": lambda x, c: x * ref.sigmoid(x),
    "SOFTPLUS": lambda x, c: math.log1p(math.exp(x)),
    "ABS": lambda x, c: abs(x),
}


def _row_value(op_code, parents_data, aux=0.0):
    with tm.Graph() as g:
        leaves = [tm.Value(v) for v in parents_data]
        g.reserve(1, len(leaves))
        row = g.push(op_code, [v._row for v in leaves], aux)
        g.evaluate()
        return float(g.data[row, 0])


@pytest.mark.parametrize("name", sorted(UNARY_EXPECT))
@pytest.mark.parametrize("x", [X, -X])
def test_unary_code_computes_its_op(name, x):
    if name in ("LOG", "POW_C"):
        x = abs(x)  # real-valued domain
    got = _row_value(int(PINNED[name]), [x], C)
    assert got == pytest.approx(UNARY_EXPECT[name](x, C), rel=1e-14, abs=1e-15)


BINARY_EXPECT = {
    "ADD": lambda x, y: x + y,
    "SUB": lambda x, y: x - y,
    "MUL": lambda x, y: x * y,
    "DIV": lambda x, y: x / y,
    "POW": lambda x, y: x**y,
}


@pytest.mark.parametrize("name", sorted(BINARY_EXPECT))
def test_binary_code_computes_its_op(name):
    x, y = abs(X), Y  # positive base for POW
    assert _row_value(PINNED[name], [x, y]) == pytest.approx(BINARY_EXPECT[name](x, y), rel=1e-15)


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
