"""The op table of the tape: one number and one record per kind of row.

The numbers are APPEND-ONLY. They are stored in tapes, compiled programs and in
Numba's on-disk cache of the kernels, so an existing number never changes
meaning; a new op gets the next free number. ``tinyml/kernels.py`` keeps its
own literal copy of the numbers and of the arity classes (so its cache can
never disagree with its source) and refuses to import if they differ from
this table; ``tests/test_ops.py`` pins the exact mapping.

Every fact about an op lives in its :class:`OpInfo` record in :data:`TABLE`;
the op sets (``UNARY``, ``BINARY``, ...) are derived from the records.
Adding a unary op ``foo`` takes four edits: its ``Op`` member and record
here (and its code in the kernels' literal copy), its value and derivative
rule in ``kernels.unary_value`` / ``kernels.unary_derivative``, the
``Value.foo`` method, and its line in ``tests/op_cases.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    #              one of NEURON_ACTIVATIONS (0: none); a whole neuron in one row
    DROPOUT = 29  # parents [x, u]: x / (1 - p) if u >= p else 0, p = aux[i], u uniform in [0, 1)
    INPUT = 30  # a leaf with one value per lane: a program's input placeholder or noise row
    SQDIFF = 31  # parents [x, y]: (x - y)^2, one term of a squared error
    SQRT = 32  # sqrt(x): NaN below 0, also at -inf (x ** 0.5 gives +inf there, as IEEE pow)
    CROSS_ENTROPY = 33  # one sample's softmax cross-entropy, as PyTorch's log-softmax computes it:
    #                     parents [z_1..z_k] with aux = the class index, or
    #                     [z_1..z_k, t_1..t_k] (a target row) with aux = -1
    # ---- layers: pooling, and batch norm's reductions across lanes ----
    MAX = 34  # max(p_0..p_k); its gradient goes to the first largest parent (as max_pool2d)
    LANE_SUM = 35  # parents [x, m]: sum over the lanes of m * x, the same in every lane
    #                (m: the lane mask, 1 in a lane holding a sample of the batch, else 0)
    RUNNING_STAT = 36  # parents [s]: (1 - aux) * old + aux * s, old its own previous value;
    #                    batch norm's running statistics, updated once per forward sweep


# arity classes
LEAF_CLASS = "leaf"  # no parents
UNARY_CLASS = "unary"  # one parent row (and maybe the constant aux)
BINARY_CLASS = "binary"  # two parent rows
NARY_CLASS = "nary"  # any number of parents


@dataclass(frozen=True)
class OpInfo:
    """What the kernels and tools need to know about an op.

    ``arity``: one of the classes above. ``constant``: the row reads ``aux``
    as a number of the formula (drawn in its label). ``fusable``: a NEURON row
    may apply it as its activation, because its derivative is a function of
    its output (and of the sign of its input, which the output shares).
    ``label``: how ``tools.to_dot`` draws the row; ``{c}`` stands for aux.
    """

    op: Op
    arity: str
    label: str
    constant: bool = False
    fusable: bool = False


def _records(*records: OpInfo) -> dict[Op, OpInfo]:
    table = {r.op: r for r in records}
    missing = [m.name for m in Op if m not in table]
    if missing or len(table) != len(records):
        raise ImportError(f"tinyml.ops: every Op needs exactly one record; missing {missing}")
    return table


TABLE: dict[Op, OpInfo] = _records(
    OpInfo(Op.LEAF, LEAF_CLASS, "leaf"),
    OpInfo(Op.INPUT, LEAF_CLASS, "input"),
    # binary
    OpInfo(Op.ADD, BINARY_CLASS, "+"),
    OpInfo(Op.SUB, BINARY_CLASS, "-"),
    OpInfo(Op.MUL, BINARY_CLASS, "*"),
    OpInfo(Op.DIV, BINARY_CLASS, "/"),
    OpInfo(Op.POW, BINARY_CLASS, "**"),
    OpInfo(Op.BCE, BINARY_CLASS, "bce"),
    OpInfo(Op.DROPOUT, BINARY_CLASS, "dropout"),
    OpInfo(Op.SQDIFF, BINARY_CLASS, "sqdiff"),
    # one parent and a constant
    OpInfo(Op.ADD_C, UNARY_CLASS, "+ {c}", constant=True),
    OpInfo(Op.MUL_C, UNARY_CLASS, "* {c}", constant=True),
    OpInfo(Op.DIV_C, UNARY_CLASS, "/ {c}", constant=True),
    OpInfo(Op.POW_C, UNARY_CLASS, "** {c}", constant=True),
    OpInfo(Op.RSUB_C, UNARY_CLASS, "{c} -", constant=True),
    OpInfo(Op.RDIV_C, UNARY_CLASS, "{c} /", constant=True),
    OpInfo(Op.LEAKY_RELU, UNARY_CLASS, "leaky_relu {c}", constant=True),
    # unary
    OpInfo(Op.NEG, UNARY_CLASS, "neg"),
    OpInfo(Op.RELU, UNARY_CLASS, "relu", fusable=True),
    OpInfo(Op.TANH, UNARY_CLASS, "tanh", fusable=True),
    OpInfo(Op.SIGMOID, UNARY_CLASS, "sigmoid", fusable=True),
    OpInfo(Op.EXP, UNARY_CLASS, "exp"),
    OpInfo(Op.LOG, UNARY_CLASS, "log"),
    OpInfo(Op.GELU_TANH, UNARY_CLASS, "gelu_tanh"),
    OpInfo(Op.GELU_ERF, UNARY_CLASS, "gelu_erf"),
    OpInfo(Op.SILU, UNARY_CLASS, "silu"),
    OpInfo(Op.SOFTPLUS, UNARY_CLASS, "softplus"),
    OpInfo(Op.ABS, UNARY_CLASS, "abs"),
    OpInfo(Op.SQRT, UNARY_CLASS, "sqrt"),
    # n-ary
    OpInfo(Op.SUM, NARY_CLASS, "sum"),
    OpInfo(Op.AFFINE, NARY_CLASS, "affine"),
    OpInfo(Op.LOGSUMEXP, NARY_CLASS, "logsumexp"),
    OpInfo(Op.NEURON, NARY_CLASS, "neuron"),
    OpInfo(Op.CROSS_ENTROPY, NARY_CLASS, "cross_entropy"),
    # n-ary as the sweeps see them: a row that reads other lanes is no lane-wise formula
    OpInfo(Op.MAX, NARY_CLASS, "max"),
    OpInfo(Op.LANE_SUM, NARY_CLASS, "lane_sum"),
    OpInfo(Op.RUNNING_STAT, NARY_CLASS, "running {c}", constant=True),
)


def _where(**facts) -> frozenset[Op]:
    return frozenset(op for op, r in TABLE.items() if all(getattr(r, k) == v for k, v in facts.items()))


LEAVES = _where(arity=LEAF_CLASS)
UNARY = _where(arity=UNARY_CLASS)
BINARY = _where(arity=BINARY_CLASS)
NARY = _where(arity=NARY_CLASS)
WITH_CONSTANT = _where(constant=True)
# activations a NEURON row can fuse: their derivative is a function of their output
NEURON_ACTIVATIONS = _where(fusable=True)
# rows whose value in one lane depends on the other lanes: batch statistics
ACROSS_LANES = frozenset({Op.LANE_SUM, Op.RUNNING_STAT})

_ARITY = {LEAF_CLASS: 0, UNARY_CLASS: 1, BINARY_CLASS: 2, NARY_CLASS: None}


def arity(op: Op) -> int | None:
    """Number of parents of a row of this op; ``None`` for n-ary ops."""
    return _ARITY[TABLE[Op(op)].arity]


def label(op: Op, aux: float = 0.0) -> str:
    """The op as ``tools.to_dot`` draws it, with its constant ``aux`` where it has one."""
    return TABLE[Op(op)].label.format(c=f"{aux:.4g}")
