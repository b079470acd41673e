"""The one table of op test cases that the torch, reference, op-code and property tests read.

Each :class:`Case` is an expression of tinyml's Value syntax (which the
reference ``Scalar`` and the torch wrapper of ``test_torch`` share), the op
code of the row it builds, the same function in PyTorch, a plain-Python
reference of the value, and the domain where it is well-conditioned (random
programs keep away from poles and overflow there). A new op gets one line
here; ``test_ops`` fails for an op of the table in ``tinyml.ops`` that has none.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from tinyml.ops import Op

from . import reference as ref

MARGIN = 0.25  # distance kept from singularities (log 0, 1/0, 0 ** negative)


@dataclass(frozen=True)
class Case:
    name: str
    code: Op  # the op of the row the expression builds
    apply: Callable  # (a, b, c) -> node, in Value syntax (b: a second node, c: a number)
    torch: Callable  # (ta, tb, c) -> tensor, the same function in PyTorch float64
    value: Callable  # (x, y, c) -> float, a plain-Python reference of the value
    domain: Callable = lambda x, y, c: True  # whether (x, y, c) is well-conditioned
    kinked: bool = False  # not differentiable at 0
    c: float = 0.0  # the constant of the grid tests


def _torch():
    import torch

    return torch


def _f():
    return _torch().nn.functional


def _gelu_domain(x, y, c):
    # far left, GELU is x/2 * (1 + erf or tanh ~ -1): a cancellation whose last bits
    # differ between libraries; its tails are checked in test_torch's grids instead
    return abs(x) <= 4.0


def _pow_c_domain(x, y, c):
    if c != math.floor(c) and x < MARGIN:
        return False
    return not (c < 0.0 and abs(x) < MARGIN)


# unary: one Value and maybe a number
UNARY = [
    Case("neg", Op.NEG, lambda a, b, c: -a, lambda t, u, c: -t, lambda x, y, c: -x),
    Case("abs", Op.ABS, lambda a, b, c: abs(a), lambda t, u, c: t.abs(), lambda x, y, c: abs(x), kinked=True),
    Case("relu", Op.RELU, lambda a, b, c: a.relu(), lambda t, u, c: t.relu(), lambda x, y, c: max(x, 0.0),
         kinked=True),
    Case("tanh", Op.TANH, lambda a, b, c: a.tanh(), lambda t, u, c: t.tanh(), lambda x, y, c: math.tanh(x)),
    Case("sigmoid", Op.SIGMOID, lambda a, b, c: a.sigmoid(), lambda t, u, c: t.sigmoid(),
         lambda x, y, c: ref.sigmoid(x)),
    Case("exp", Op.EXP, lambda a, b, c: a.exp(), lambda t, u, c: t.exp(), lambda x, y, c: ref.exp(x),
         domain=lambda x, y, c: x <= 6.0),
    Case("log", Op.LOG, lambda a, b, c: a.log(), lambda t, u, c: t.log(), lambda x, y, c: ref.log(x),
         domain=lambda x, y, c: x >= MARGIN),
    Case("sqrt", Op.SQRT, lambda a, b, c: a.sqrt(), lambda t, u, c: t.sqrt(), lambda x, y, c: math.sqrt(x),
         domain=lambda x, y, c: x >= MARGIN),
    Case("leaky_relu", Op.LEAKY_RELU, lambda a, b, c: a.leaky_relu(c),
         lambda t, u, c: _f().leaky_relu(t, c), lambda x, y, c: x if x > 0.0 else c * x, kinked=True, c=0.01),
    Case("gelu", Op.GELU_ERF, lambda a, b, c: a.gelu(), lambda t, u, c: _f().gelu(t),
         lambda x, y, c: ref.Scalar(x).gelu().data, domain=_gelu_domain),
    Case("gelu_tanh", Op.GELU_TANH, lambda a, b, c: a.gelu(approximate="tanh"),
         lambda t, u, c: _f().gelu(t, approximate="tanh"), lambda x, y, c: ref.Scalar(x).gelu("tanh").data,
         domain=_gelu_domain),
    Case("silu", Op.SILU, lambda a, b, c: a.silu(), lambda t, u, c: _f().silu(t),
         lambda x, y, c: x * ref.sigmoid(x)),
    # torch's F.softplus returns x itself above threshold=20 (a shortcut, off by
    # log1p(exp(-x))); logaddexp(x, 0) is the same function without the shortcut
    Case("softplus", Op.SOFTPLUS, lambda a, b, c: a.softplus(),
         lambda t, u, c: _torch().logaddexp(t, _torch().zeros((), dtype=t.dtype)),
         lambda x, y, c: ref.softplus(x)),
]  # fmt: skip

# one Value and a number c
WITH_CONSTANT = [
    Case("add_c", Op.ADD_C, lambda a, b, c: a + c, lambda t, u, c: t + c, lambda x, y, c: x + c),
    Case("radd_c", Op.ADD_C, lambda a, b, c: c + a, lambda t, u, c: c + t, lambda x, y, c: c + x),
    Case("sub_c", Op.ADD_C, lambda a, b, c: a - c, lambda t, u, c: t - c, lambda x, y, c: x - c),
    Case("rsub_c", Op.RSUB_C, lambda a, b, c: c - a, lambda t, u, c: c - t, lambda x, y, c: c - x),
    Case("mul_c", Op.MUL_C, lambda a, b, c: a * c, lambda t, u, c: t * c, lambda x, y, c: x * c),
    Case("rmul_c", Op.MUL_C, lambda a, b, c: c * a, lambda t, u, c: c * t, lambda x, y, c: c * x),
    Case("div_c", Op.DIV_C, lambda a, b, c: a / c, lambda t, u, c: t / c, lambda x, y, c: ref.div(x, c)),
    Case("rdiv_c", Op.RDIV_C, lambda a, b, c: c / a, lambda t, u, c: c / t, lambda x, y, c: ref.div(c, x),
         domain=lambda x, y, c: abs(x) >= MARGIN),
    Case("pow_c", Op.POW_C, lambda a, b, c: a**c, lambda t, u, c: _torch().pow(t, c),
         lambda x, y, c: ref.power(x, c), domain=_pow_c_domain),
    Case("rpow_c", Op.POW, lambda a, b, c: c**a, lambda t, u, c: _torch().pow(c, t),
         lambda x, y, c: ref.power(c, x), domain=lambda x, y, c: x <= 6.0),
]  # fmt: skip

# two Values
BINARY = [
    Case("add", Op.ADD, lambda a, b, c: a + b, lambda t, u, c: t + u, lambda x, y, c: x + y),
    Case("sub", Op.SUB, lambda a, b, c: a - b, lambda t, u, c: t - u, lambda x, y, c: x - y),
    Case("mul", Op.MUL, lambda a, b, c: a * b, lambda t, u, c: t * u, lambda x, y, c: x * y),
    Case("div", Op.DIV, lambda a, b, c: a / b, lambda t, u, c: t / u, lambda x, y, c: ref.div(x, y),
         domain=lambda x, y, c: abs(y) >= MARGIN),
    Case("pow", Op.POW, lambda a, b, c: a**b, lambda t, u, c: _torch().pow(t, u),
         lambda x, y, c: ref.power(x, y),
         domain=lambda x, y, c: x >= MARGIN and abs(y) <= 3.0),
]  # fmt: skip

# other spellings of the same ops (micrograd's and PyTorch's names)
ALIASES = [
    Case("sigm", Op.SIGMOID, lambda a, b, c: a.sigm(), UNARY[4].torch, UNARY[4].value),
    Case("swish", Op.SILU, lambda a, b, c: a.swish(), UNARY[11].torch, UNARY[11].value),
    Case("abs_method", Op.ABS, lambda a, b, c: a.abs(), UNARY[1].torch, UNARY[1].value, kinked=True),
]

CASES = {case.name: case for case in UNARY + WITH_CONSTANT + BINARY + ALIASES}

# ops whose rows no Value method builds: losses and layers, tested in their own files
ELSEWHERE = {Op.LEAF, Op.INPUT, Op.SUM, Op.AFFINE, Op.LOGSUMEXP, Op.NEURON, Op.CROSS_ENTROPY}
ELSEWHERE |= {Op.BCE, Op.DROPOUT, Op.SQDIFF}  # test_losses, test_train
ELSEWHERE |= {Op.MAX, Op.LANE_SUM, Op.RUNNING_STAT}  # test_layers, test_tensor_nd
