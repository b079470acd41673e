"""The op-code table of the tape: one number per kind of row.

The table is APPEND-ONLY. Numbers are stored in tapes, compiled programs and in
Numba's on-disk cache of the kernels, so an existing number never changes
meaning; a new op gets the next free number. ``tinyml/kernels.py`` keeps its
own literal copy of these numbers (so its cache can never disagree with its
source) and checks the two tables agree when it is imported;
``tests/test_ops.py`` pins the exact mapping.
"""

from __future__ import annotations

from enum import IntEnum


class Op(IntEnum):
    # ---- leaves: no parents (parameters, constants, input placeholders) ----
    LEAF = 0
    # ---- binary: two parent rows ----
    ADD = 1  # x + y
    SUB = 2  # x - y
    MUL = 3  # x * y
    DIV = 4  # x / y
    POW = 5  # x ** y (Value exponent)
    # ---- one parent row and the constant aux[i] ----
    ADD_C = 6  # x + c
    MUL_C = 7  # x * c
    POW_C = 8  # x ** c
    RSUB_C = 9  # c - x
    RDIV_C = 10  # c / x
    # ---- unary: one parent row ----
    NEG = 11
    RELU = 12
    TANH = 13
    SIGMOID = 14
    EXP = 15
    LOG = 16
    LEAKY_RELU = 17  # aux[i] is the negative slope
    GELU_TANH = 18  # tanh approximation of GELU
    GELU_ERF = 19  # exact GELU, x * Phi(x)
    SILU = 20  # x * sigmoid(x), a.k.a. swish
    SOFTPLUS = 21  # log(1 + exp(x)), computed stably
    ABS = 22
    # ---- n-ary: any number of parents, held CSR-style ----
    SUM = 23  # p0 + p1 + ... + pk
    AFFINE = 24  # parents [b, w1..wn, x1..xn]: b + sum(w_i * x_i)
    LOGSUMEXP = 25  # log(sum(exp(p_i))), computed stably
    # ---- loss rows ----
    BCE = 26  # parents [p, y]: binary cross-entropy with logs clamped at -100
    # ---- appended after the first release of the table ----
    DIV_C = 27  # x / c
    NEURON = 28  # parents as AFFINE, then the activation whose op code is aux[i]:
    #              TANH, SIGMOID or RELU (0: none); a whole neuron in one row
    DROPOUT = 29  # parents [x, u]: x / (1 - p) if u >= p else 0, p = aux[i], u uniform in [0, 1)
    INPUT = 30  # a leaf with one value per lane: a program's input placeholder or noise row
    SQDIFF = 31  # parents [x, y]: (x - y)^2, one term of a squared error
    SQRT = 32  # sqrt(x): NaN below 0, also at -inf (x ** 0.5 gives +inf there, as IEEE pow)
    CROSS_ENTROPY = 33  # one sample's softmax cross-entropy, as PyTorch's log-softmax computes it:
    #                     parents [z_1..z_k] with aux = the class index, or
    #                     [z_1..z_k, t_1..t_k] (a target row) with aux = -1


LEAVES = frozenset({Op.LEAF, Op.INPUT})
BINARY = frozenset({Op.ADD, Op.SUB, Op.MUL, Op.DIV, Op.POW, Op.BCE, Op.DROPOUT, Op.SQDIFF})
WITH_CONSTANT = frozenset({Op.DIV_C, Op.ADD_C, Op.MUL_C, Op.POW_C, Op.RSUB_C, Op.RDIV_C, Op.LEAKY_RELU})
UNARY = frozenset(
    {
        Op.NEG,
        Op.RELU,
        Op.TANH,
        Op.SIGMOID,
        Op.EXP,
        Op.LOG,
        Op.LEAKY_RELU,
        Op.GELU_TANH,
        Op.GELU_ERF,
        Op.SILU,
        Op.SOFTPLUS,
        Op.ABS,
        Op.ADD_C,
        Op.MUL_C,
        Op.POW_C,
        Op.RSUB_C,
        Op.RDIV_C,
        Op.DIV_C,
        Op.SQRT,
    }
)
NARY = frozenset({Op.SUM, Op.AFFINE, Op.LOGSUMEXP, Op.NEURON, Op.CROSS_ENTROPY})
# activations a NEURON row can fuse: their derivative is a function of their output
NEURON_ACTIVATIONS = frozenset({Op.TANH, Op.SIGMOID, Op.RELU})


def arity(op: Op) -> int | None:
    """Number of parents of a row of this op; ``None`` for n-ary ops."""
    if op in LEAVES:
        return 0
    if op in BINARY:
        return 2
    if op in UNARY:
        return 1
    return None
