"""Numba kernels over the tape's plain arrays: forward, backward, update, compaction.

The sweeps take the tape as a :class:`Tape` (eight arrays, see ``tinyml/graph.py``):

- ``op``     uint8[rows]        op code of each row (numbers below)
- ``pstart`` int64[rows + 1]    row i's parents are ``pidx[pstart[i]:pstart[i+1]]``
- ``pidx``   int64[entries]     parent row numbers, CSR-style
- ``aux``    float64[rows]      a per-row constant (pow exponent, leaky slope, ...)
- ``data``   float64[rows, L]   values, one column per lane (sample)
- ``grad``   float64[rows, L]   gradients, same shape
- ``shared``, ``shared_grad``  float64[rows]: the value and gradient of each
  LEAF row, which is the same in every lane (see "Shared rows" below); in
  the one-lane eager graph these are views of ``data[:, 0]`` and ``grad[:, 0]``

Each op's value and derivative are written once, in the scalar rules
(``unary_value``, ``unary_derivative``, ``binary_value``, ``binary_backward``);
every sweep calls them.

The eager graph is the one-lane case (L = 1); compiled training replays a
program with one lane per sample of a batch. Rows are in topological order,
so forward is an ascending sweep and backward a descending one, no recursion.

Kernels do no validation and raise nothing: the front-end checks inputs first.
No ``fastmath``: NaN and inf must propagate, divergence detection relies on it;
``error_model="numpy"`` makes ``1/0`` give inf instead of raising.
"""

from __future__ import annotations

import math
import sys
from typing import NamedTuple

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import ops
from .ops import Op

JIT_OPTIONS = {"cache": True, "nogil": True, "error_model": "numpy"}


def kernel(fn):
    """Compile ``fn`` with the project's Numba options (cached on disk)."""
    return njit(**JIT_OPTIONS)(fn)


def borrowing_kernel(fn):
    """A kernel that only borrows arrays: it allocates none and returns none, so it
    is compiled without Numba's reference counting (its runtime, NRT, off).

    With it on, a kernel brackets the arrays it uses (its arguments, the members
    of a tuple it unpacks) with atomic increments and decrements whenever it also
    calls a compiled function the optimiser does not inline: Numba's pruning pass
    cannot see through the call. That is a few ns per array per call: for the
    row sweeps, called once per batch chunk in training, it was a third of the
    XOR network's epoch (0.195 s against 0.150 s for 300,000 epochs). Numba
    refuses, at compile time, an allocation in such a kernel, so it cannot leak.
    ``train_epochs`` and ``predict_batch`` are such kernels too (their callers
    pass the scratch arrays), so the helpers they inline cost no counts either.
    """
    return njit(_nrt=False, **JIT_OPTIONS)(fn)


COMPILING = "tinyml: compiling kernels for this machine (first run only, 10 to 30 s)"
notice_pending = True  # until every entry kernel has been checked once (see `notice_compile`)
_unchecked = {"eager_evaluate", "eager_gradients", "train_epochs", "predict_batch"}


def notice_compile(name: str) -> None:
    """Say once per process, on stderr, that kernel ``name`` is about to be compiled,
    when Numba's disk cache has no entry of it for this machine (its first run here)."""
    global notice_pending
    if name not in _unchecked:
        return
    _unchecked.discard(name)
    dispatcher = globals()[name]
    if not dispatcher.signatures and not _cached_here(dispatcher):
        print(COMPILING, file=sys.stderr, flush=True)
        _unchecked.clear()
    notice_pending = bool(_unchecked)


def _cached_here(dispatcher) -> bool:
    """Whether the disk cache holds a compiled ``dispatcher`` for this CPU (Numba's own index)."""
    try:
        index = dispatcher._cache._cache_file._load_index()
        magic = dispatcher.targetctx.codegen().magic_tuple()
        return any(key[1] == magic for key in index)
    except Exception:  # an internal of Numba changed: stay quiet rather than fail
        return True


def inline_kernel(fn):
    """A kernel that other kernels inline (Numba IR level) instead of calling.

    For small helpers of a sweep (a row's affine part, an activation over rows):
    no call. Its array arguments become the caller's variables, and in a loop
    that also calls a compiled function they are reference-counted on every
    iteration (see ``borrowing_kernel``), so the training loop calls no inlined
    helper that takes arrays: it writes such loops out, or calls a kernel.
    """
    return njit(inline="always", **JIT_OPTIONS)(fn)


# ---------------------------------------------------------------------------
# Op codes, as literals: Numba's disk cache is keyed on THIS file, so the
# numbers the kernels were compiled with must be written here, not imported.
# `_check_codes` below refuses to import if they drift from `ops.Op`.
# ---------------------------------------------------------------------------
LEAF = 0
ADD = 1
SUB = 2
MUL = 3
DIV = 4
POW = 5
ADD_C = 6
MUL_C = 7
POW_C = 8
RSUB_C = 9
RDIV_C = 10
NEG = 11
RELU = 12
TANH = 13
SIGMOID = 14
EXP = 15
LOG = 16
LEAKY_RELU = 17
GELU_TANH = 18
GELU_ERF = 19
SILU = 20
SOFTPLUS = 21
ABS = 22
SUM = 23
AFFINE = 24
LOGSUMEXP = 25
BCE = 26
DIV_C = 27
NEURON = 28
DROPOUT = 29
INPUT = 30
SQDIFF = 31
SQRT = 32
CROSS_ENTROPY = 33
MAX = 34
LANE_SUM = 35
RUNNING_STAT = 36

# Optimizer kinds (``tinyml.optim`` imports these: the kernels are compiled with them)
SGD_KIND = 0
ADAM_KIND = 1
ADAMW_KIND = 2
RMSPROP_KIND = 3


# Arity classes, as literal sets of the codes above; ``CLASS_OF[code]`` is what
# the sweeps dispatch on. `_check_codes` refuses to import if a code or a set
# differs from the records of ``tinyml/ops.py``: forgetting one place fails here.
UNARY_CLASS = 1  # one parent row (and maybe the constant aux)
BINARY_CLASS = 2  # two parent rows
NARY_CLASS = 3  # any number of parents, held CSR-style
LEAF_CODES = (LEAF, INPUT)
UNARY_CODES = (
    ADD_C, MUL_C, DIV_C, POW_C, RSUB_C, RDIV_C, LEAKY_RELU,
    NEG, RELU, TANH, SIGMOID, EXP, LOG, GELU_TANH, GELU_ERF, SILU, SOFTPLUS, ABS, SQRT,
)  # fmt: skip
BINARY_CODES = (ADD, SUB, MUL, DIV, POW, BCE, DROPOUT, SQDIFF)
NARY_CODES = (SUM, AFFINE, LOGSUMEXP, NEURON, CROSS_ENTROPY, MAX, LANE_SUM, RUNNING_STAT)
FUSABLE_CODES = (TANH, SIGMOID, RELU)  # activations a NEURON row applies itself


def _class_table() -> np.ndarray:
    table = np.zeros(256, np.uint8)  # 0: a leaf, or no op at all
    for cls, codes in ((UNARY_CLASS, UNARY_CODES), (BINARY_CLASS, BINARY_CODES), (NARY_CLASS, NARY_CODES)):
        table[list(codes)] = cls
    return table


CLASS_OF = _class_table()  # a global array: Numba compiles it in as a constant (of THIS file)


def _check_codes() -> None:
    """Refuse to import if the kernels' literal codes or sets disagree with ``tinyml.ops``."""
    for member in Op:
        if globals().get(member.name) != int(member):
            raise ImportError(
                f"tinyml.kernels op code {member.name} is {globals().get(member.name)!r}, "
                f"but tinyml.ops says {int(member)}; the two tables must be identical"
            )
    for name, mine, theirs in (
        ("LEAF_CODES", LEAF_CODES, ops.LEAVES),
        ("UNARY_CODES", UNARY_CODES, ops.UNARY),
        ("BINARY_CODES", BINARY_CODES, ops.BINARY),
        ("NARY_CODES", NARY_CODES, ops.NARY),
        ("FUSABLE_CODES", FUSABLE_CODES, ops.NEURON_ACTIVATIONS),
    ):
        if sorted(mine) != sorted(int(m) for m in theirs):
            raise ImportError(
                f"tinyml.kernels.{name} is {sorted(mine)}, but tinyml.ops says "
                f"{sorted(int(m) for m in theirs)}; add the op to both"
            )


_check_codes()


class Tape(NamedTuple):
    """The arrays of a tape, as the sweeps take them (a NamedTuple of arrays: Numba caches it).

    Callers hand the kernels ``tuple(tape)``, a plain tuple of the same arrays:
    Numba's dispatcher types it about 1 us faster per call than the NamedTuple,
    and one type for every caller means one compiled sweep for all of them.
    """

    op: np.ndarray  # uint8[rows]: op code of each row
    pstart: np.ndarray  # int64[rows + 1]: row i's parents are pidx[pstart[i]:pstart[i + 1]]
    pidx: np.ndarray  # int64[entries]: parent row numbers, CSR-style
    aux: np.ndarray  # float64[rows]: a per-row constant (pow exponent, leaky slope, ...)
    data: np.ndarray  # float64[rows, lanes]: computed and INPUT rows, one value per lane
    grad: np.ndarray  # float64[rows, lanes]
    shared: np.ndarray  # float64[rows]: LEAF rows (parameters, constants), one value for all lanes
    shared_grad: np.ndarray  # float64[rows]: their gradients, summed over lanes


SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
INV_SQRT_2 = 1.0 / math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
GELU_C = 0.044715
BCE_LOG_FLOOR = -100.0  # PyTorch clamps BCE's logs here
BCE_EPS = 1e-12  # and bounds p(1-p) below by this in the gradient


# ---------------------------------------------------------------------------
# Scalar math shared by every rule (one definition of each function)
# ---------------------------------------------------------------------------
# Constants of `tanh`: log2(e), and ln 2 split in a part exact in few bits plus the rest.
LOG2E = 1.4426950408889634
LN2_HI = 6.93145751953125e-1
LN2_LO = 1.42860682030941723212e-6


@inline_kernel
def expm1_parts(y):
    """(n, q) with y = n ln2 + r, |r| <= ln2/2, and q = e^r - 1 by its Taylor series to
    r^13 (truncation < 1e-17 relative): e^y = 2^n (1 + q). The one reduction of
    ``tanh`` and ``exp``; n is a whole float (no conversions on the critical path)."""
    n = np.floor(y * LOG2E + 0.5)
    r = (y - n * LN2_HI) - n * LN2_LO
    # q(r) = r + r^2/2! + ... + r^13/13!, by Estrin's scheme (shorter dependency
    # chain than Horner's, which matters when few lanes are in flight)
    r2 = r * r
    r4 = r2 * r2
    r8 = r4 * r4
    a1 = 1.0 + r * (1.0 / 2.0)
    a2 = 1.0 / 6.0 + r * (1.0 / 24.0)
    a3 = 1.0 / 120.0 + r * (1.0 / 720.0)
    a4 = 1.0 / 5040.0 + r * (1.0 / 40320.0)
    a5 = 1.0 / 362880.0 + r * (1.0 / 3628800.0)
    a6 = 1.0 / 39916800.0 + r * (1.0 / 479001600.0)
    b1 = a1 + r2 * a2
    b2 = a3 + r2 * a4
    b3 = a5 + r2 * a6
    q = r * ((b1 + r4 * b2) + r8 * (b3 + r4 * (1.0 / 6227020800.0)))
    return n, q


@kernel
def tanh(x):
    """tanh in plain arithmetic (within 4 ulp of math.tanh), so lane loops vectorise.

    tanh|x| = m / (m + 2) with m = expm1(2|x|). expm1(y) = 2^n (1 + q(r)) - 1
    with y = n ln2 + r, |r| <= ln2/2, q(r) = exp(r) - 1 by its Taylor series to
    r^13 (truncation < 1e-17 relative). For n = 0 (small |x|) m = q exactly, so
    small inputs keep full relative accuracy. |x| is capped at 20, where tanh
    already rounds to 1.0; NaN passes through; the sign (also of -0.0) is kept.
    """
    y = min(abs(x), 20.0) * 2.0
    n, q = expm1_parts(y)
    p = float(np.int64(1) << np.int64(n))  # 2^n, n in 0..58: exact
    m = p * q + (p - 1.0)
    t = math.copysign(m / (m + 2.0), x)
    return t if x == x else x


@intrinsic
def _double_from_bits(typingctx, bits):
    """The float64 whose IEEE bits are the int64 ``bits`` (a register move, vectorisable)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


EXP_HI = 709.8  # exp(x) overflows to inf above 709.78 and
EXP_LO = -745.2  # underflows to 0 below -745.13: the range is clamped just outside


@kernel
def exp(x):
    """e^x in plain arithmetic (within 2 ulp of math.exp, tested), so lane loops vectorise.

    exp(x) = 2^n (1 + q(r)) with x = n ln2 + r, |r| <= ln2/2 and q the series
    of ``tanh`` (exp(r) - 1 to r^13). 2^n is built from its IEEE bits in two
    factors 2^(n//2) 2^(n - n//2), both normal numbers, so results down to the
    subnormals (one rounding) and up to the overflow to inf come out right;
    x is clamped to [EXP_LO, EXP_HI] first (inf gives inf, -inf gives 0); NaN passes.
    """
    y = min(max(x, EXP_LO), EXP_HI)
    n, q = expm1_parts(y)
    half = math.floor(n * 0.5)
    p1 = _double_from_bits((np.int64(half) + np.int64(1023)) << np.int64(52))
    p2 = _double_from_bits((np.int64(n - half) + np.int64(1023)) << np.int64(52))
    e = ((1.0 + q) * p1) * p2
    return e if x == x else x


@inline_kernel
def sigmoid(x):
    """Logistic function, exact 0 and 1 at the extremes, never NaN for finite x.

    1 / (1 + e^-x) for x >= 0 and e^x / (1 + e^x) below, both from one e = e^-|x|
    and a select rather than a branch, so lane loops over it vectorise."""
    e = exp(-abs(x))
    return (1.0 if x >= 0.0 else e) / (1.0 + e)


@inline_kernel
def relu(x):
    """max(x, 0), with NaN passing through, as in PyTorch."""
    return 0.0 if x <= 0.0 else x


@inline_kernel
def log1p_unit(t):
    """log(1 + t) for t in [0, 1] in plain arithmetic (within 4 ulp of math.log1p, tested),
    so lane loops vectorise: 2 atanh(u) with u = t / (2 + t) <= 1/3, by its series
    2u (1 + v/3 + v^2/5 + ... + v^16/33), v = u^2 (truncation below 2^-54 relative)."""
    u = t / (2.0 + t)
    v = u * u
    # Horner's scheme, written out (a loop here keeps the lane loop from vectorising;
    # Estrin's scheme, tried, rounds to 5 ulp)
    s = 1.0 / 33.0
    s = 1.0 / 31.0 + v * s
    s = 1.0 / 29.0 + v * s
    s = 1.0 / 27.0 + v * s
    s = 1.0 / 25.0 + v * s
    s = 1.0 / 23.0 + v * s
    s = 1.0 / 21.0 + v * s
    s = 1.0 / 19.0 + v * s
    s = 1.0 / 17.0 + v * s
    s = 1.0 / 15.0 + v * s
    s = 1.0 / 13.0 + v * s
    s = 1.0 / 11.0 + v * s
    s = 1.0 / 9.0 + v * s
    s = 1.0 / 7.0 + v * s
    s = 1.0 / 5.0 + v * s
    s = 1.0 / 3.0 + v * s
    s = 1.0 + v * s
    return 2.0 * u * s


@inline_kernel
def softplus(x):
    """log(1 + exp(x)) without overflow: max(x, 0) + log1p(exp(-|x|))."""
    return max(x, 0.0) + log1p_unit(exp(-abs(x)))


@inline_kernel
def clamped_log(x):
    """log(x) bounded below by -100, as PyTorch's binary cross-entropy."""
    if x <= 0.0:
        return BCE_LOG_FLOOR
    return max(math.log(x), BCE_LOG_FLOOR)


# ---------------------------------------------------------------------------
# The rules: each op's value and local derivative, written once. Every sweep
# (the eager one-lane graph, a program's lanes, training) calls these; fast
# paths may specialise a layout or pass a constant op code, never restate one.
# Scalar arguments only, so a call from a lane loop costs no reference counts.
# ---------------------------------------------------------------------------
@kernel
def unary_value(o, x, c):
    """z = value of a one-parent row of op ``o`` at input ``x`` (``c`` = aux)."""
    if o == TANH:
        return tanh(x)
    if o == SIGMOID:
        return sigmoid(x)
    if o == RELU:
        return relu(x)
    if o == ADD_C:
        return x + c
    if o == MUL_C:
        return x * c
    if o == DIV_C:
        return x / c
    if o == POW_C:
        if c == 2.0:
            return x * x
        return x**c
    if o == RSUB_C:
        return c - x
    if o == RDIV_C:
        return c / x
    if o == SQRT:
        return math.sqrt(x)
    if o == NEG:
        return -x
    if o == EXP:
        return exp(x)
    if o == LOG:
        if x < 0.0:
            return math.nan
        return math.log(x)  # log(0) = -inf
    if o == LEAKY_RELU:
        return x if x > 0.0 else c * x
    if o == GELU_TANH:
        return 0.5 * x * (1.0 + tanh(SQRT_2_OVER_PI * (x + GELU_C * x * x * x)))
    if o == GELU_ERF:
        return 0.5 * x * (1.0 + math.erf(x * INV_SQRT_2))
    if o == SILU:
        return x * sigmoid(x)
    if o == SOFTPLUS:
        return softplus(x)
    if o == ABS:
        return abs(x)
    return math.nan


@kernel
def unary_derivative(o, x, z, c):
    """dz/dx of a one-parent row of op ``o``: input ``x``, output ``z``, aux ``c``.

    The fusable activations (tanh, sigmoid, relu) read only ``z`` (relu its
    sign, which ``x`` shares), so a NEURON row passes ``x = z``.
    """
    if o == TANH:
        return 1.0 - z * z  # d tanh x = 1 - tanh^2 x
    if o == SIGMOID:
        return z * (1.0 - z)  # d s(x) = s (1 - s)
    if o == RELU:
        return 0.0 if x <= 0.0 else 1.0  # at NaN the gradient passes, as in PyTorch
    if o == ADD_C:
        return 1.0  # d (x + c) = 1
    if o == MUL_C:
        return c  # d (x c) = c
    if o == DIV_C:
        return 1.0 / c  # d (x / c) = 1 / c
    if o == POW_C:  # d x^c = c x^(c-1), 0 for c = 0 (x^0 is constant, even at 0)
        if c == 2.0:
            return 2.0 * x
        if c == 0.0:
            return 0.0
        return c * x ** (c - 1.0)
    if o == RSUB_C:
        return -1.0  # d (c - x) = -1
    if o == RDIV_C:
        return -c / (x * x)  # d (c / x) = -c / x^2
    if o == SQRT:
        return 0.5 / z  # d sqrt x = 1 / (2 sqrt x): inf at 0, NaN below, as PyTorch
    if o == NEG:
        return -1.0  # d (-x) = -1
    if o == EXP:
        return z  # d e^x = e^x
    if o == LOG:
        return 1.0 / x  # d log x = 1 / x
    if o == LEAKY_RELU:
        return 1.0 if x > 0.0 else c  # slope c left of 0, at 0 too (PyTorch)
    if o == GELU_TANH:  # d x/2 (1 + t(u)) = (1 + t)/2 + x/2 (1 - t^2) u'
        t = tanh(SQRT_2_OVER_PI * (x + GELU_C * x * x * x))
        dt = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * x * x)
        return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * dt
    if o == GELU_ERF:  # d x Phi(x) = Phi(x) + x phi(x)
        return 0.5 * (1.0 + math.erf(x * INV_SQRT_2)) + x * INV_SQRT_2PI * exp(-0.5 * x * x)
    if o == SILU:  # d x s(x) = s + x s (1 - s)
        s = sigmoid(x)
        return s * (1.0 + x * (1.0 - s))
    if o == SOFTPLUS:
        return sigmoid(x)  # d log(1 + e^x) = s(x)
    if o == ABS:  # d |x| = sign x, 0 at 0
        if x > 0.0:
            return 1.0
        if x < 0.0:
            return -1.0
        return 0.0
    return math.nan


@kernel
def binary_value(o, x, y, c):
    """z = value of a two-parent row of op ``o`` at inputs ``x``, ``y`` (``c`` = aux)."""
    if o == ADD:
        return x + y
    if o == SUB:
        return x - y
    if o == MUL:
        return x * y
    if o == DIV:
        return x / y
    if o == POW:
        return x**y
    if o == SQDIFF:
        return (x - y) * (x - y)
    if o == BCE:  # x = p, y = target; p outside [0, 1] is no probability: NaN
        bce = -(y * clamped_log(x) + (1.0 - y) * clamped_log(1.0 - x))
        return bce if 0.0 <= x <= 1.0 else math.nan
    if o == DROPOUT:  # y is the uniform draw, c the rate
        return x / (1.0 - c) if y >= c else 0.0
    return math.nan


@kernel
def binary_backward(o, x, y, z, c, g):
    """(g dz/dx, g dz/dy) of a two-parent row: inputs ``x``, ``y``, output ``z``, aux ``c``.

    The incoming gradient ``g`` goes in, so each product is rounded as PyTorch
    rounds it (``g / y`` rather than ``g * (1 / y)``).
    """
    if o == ADD:
        return g, g  # d (x + y) = (1, 1)
    if o == SUB:
        return g, -g  # d (x - y) = (1, -1)
    if o == MUL:
        return g * y, g * x  # d (x y) = (y, x)
    if o == DIV:
        return g / y, -g * (z / y)  # d (x / y) = (1 / y, -(x / y) / y): no overflow in y * y
    if o == POW:
        # d x^y = (y x^(y-1), x^y log x); the first 0 where y == 0 (x^0 is constant,
        # even at x = 0), the second 0 where x == 0 and y >= 0 (PyTorch's conventions)
        dx = g * y * x ** (y - 1.0) if y != 0.0 else 0.0
        dy = g * z * math.log(x) if not (x == 0.0 and y >= 0.0) else 0.0
        return dx, dy
    if o == SQDIFF:
        d = 2.0 * g * (x - y)  # d (x - y)^2 = (2 (x - y), -2 (x - y))
        return d, -d
    if o == BCE:  # d bce = ((p - y) / (p (1 - p)), log(1 - p) - log p); NaN outside [0, 1]
        if not 0.0 <= x <= 1.0:
            return math.nan, math.nan
        return g * (x - y) / max(x * (1.0 - x), BCE_EPS), g * (clamped_log(1.0 - x) - clamped_log(x))
    if o == DROPOUT:  # d = (1 / (1 - c) where kept, else 0; the draw y gets none)
        return (g / (1.0 - c) if y >= c else 0.0), 0.0
    return math.nan, math.nan


# ---------------------------------------------------------------------------
# Shared rows. A LEAF (parameter or constant) is the same in every sample, so
# it has one value, shared[p], and one gradient, shared_grad[p], which sums the
# contributions of every lane: parameters are never copied across lanes, and
# they sit next to each other in memory rather than one per (rows, lanes) row.
# An INPUT row (a placeholder fed per sample) and every computed row have one
# value per lane, data[p, lane]. In the one-lane eager graph, shared and
# shared_grad are views of data[:, 0] and grad[:, 0].
#
# Loops over lanes test a parent's kind once, before the loop (``leaf_a =
# op[a] == LEAF``), and read ``shared[a] if leaf_a else data[a, lane]`` in
# it; they call no helper that takes an array. Numba brackets an inlined
# helper's array arguments with reference-count calls, which its pruning pass
# does not always remove inside a branchy loop: the cross-entropy's AFFINE row,
# with such a helper in its loop over lanes, ran 70 times slower than with the
# expression written out. No sweep calls, per row, a compiled function that
# takes an array (about 100 ns each); the rules above take scalars.
# ---------------------------------------------------------------------------
@inline_kernel
def affine_row(op, pstart, pidx, data, shared, i):
    """data[i] = b + sum(w_j * x_j) over row i's parents [b, w_1..w_n, x_1..x_n]."""
    lanes = data.shape[1]
    s = pstart[i]
    n = (pstart[i + 1] - s - 1) // 2
    b = pidx[s]
    leaf_b = op[b] == LEAF
    for lane in range(lanes):
        data[i, lane] = shared[b] if leaf_b else data[b, lane]
    for j in range(n):
        w = pidx[s + 1 + j]
        x = pidx[s + 1 + n + j]
        leaf_w = op[w] == LEAF
        leaf_x = op[x] == LEAF
        if leaf_w and not leaf_x:  # the usual case: a shared weight times a per-lane input
            wv = shared[w]
            for lane in range(lanes):
                data[i, lane] += wv * data[x, lane]
        elif leaf_w:  # and leaf_x: a constant term
            c = shared[w] * shared[x]
            for lane in range(lanes):
                data[i, lane] += c
        elif leaf_x:
            xv = shared[x]
            for lane in range(lanes):
                data[i, lane] += data[w, lane] * xv
        else:
            for lane in range(lanes):
                data[i, lane] += data[w, lane] * data[x, lane]


@inline_kernel
def usual_layout(op, pstart, pidx, i):
    """True if AFFINE/NEURON row i has a shared bias and weights (LEAF rows) and
    per-lane inputs: a layer's neuron in a program, or an eager neuron whose
    inputs are computed rows (not numbers turned into leaves)."""
    s = pstart[i]
    n = (pstart[i + 1] - s - 1) // 2
    if op[pidx[s]] != LEAF:
        return False
    for j in range(n):
        if op[pidx[s + 1 + j]] != LEAF or op[pidx[s + 1 + n + j]] == LEAF:
            return False
    return True


@inline_kernel
def activate(act, data, lo, hi):
    """Apply a NEURON activation (op code ``act``; 0: none) to rows lo..hi-1 in place.

    One loop per activation, each calling the function its rule in ``unary_value``
    calls, so the compiler sees one formula and vectorises the loop.
    """
    lanes = data.shape[1]
    if act == TANH:
        for r in range(lo, hi):
            for lane in range(lanes):
                data[r, lane] = tanh(data[r, lane])
    elif act == SIGMOID:
        for r in range(lo, hi):
            for lane in range(lanes):
                data[r, lane] = sigmoid(data[r, lane])
    elif act == RELU:
        for r in range(lo, hi):
            for lane in range(lanes):
                data[r, lane] = relu(data[r, lane])


@inline_kernel
def pre_activation_grad(act, grad, data, i, g):
    """g[lane] = grad[i, lane] * (the derivative of NEURON row i's activation ``act``),
    from the row's output alone (see ``unary_derivative``); act 0: none.

    One loop per activation, each passing the rule a constant code, which the
    compiler folds to the one formula; as a uint8, the type of ``op[i]``, so
    the rule is compiled once for every caller.
    """
    lanes = data.shape[1]
    if act == TANH:
        for lane in range(lanes):
            z = data[i, lane]
            g[lane] = grad[i, lane] * unary_derivative(np.uint8(TANH), z, z, 0.0)
    elif act == SIGMOID:
        for lane in range(lanes):
            z = data[i, lane]
            g[lane] = grad[i, lane] * unary_derivative(np.uint8(SIGMOID), z, z, 0.0)
    elif act == RELU:
        for lane in range(lanes):
            z = data[i, lane]
            g[lane] = grad[i, lane] * unary_derivative(np.uint8(RELU), z, z, 0.0)
    else:
        for lane in range(lanes):
            g[lane] = grad[i, lane]


@inline_kernel
def lane_dot(g, data, x, lanes):
    """sum over lanes of g[lane] * data[x, lane], last lane first.

    Eight partial sums keep the adds from waiting on each other (and let the
    compiler use vector instructions); with seven lanes or fewer the order is
    exactly last lane first, the order in which an eager graph built sample
    by sample accumulates a shared gradient.
    """
    a0 = 0.0
    a1 = 0.0
    a2 = 0.0
    a3 = 0.0
    a4 = 0.0
    a5 = 0.0
    a6 = 0.0
    a7 = 0.0
    lane = lanes - 1
    while lane >= 7:
        a7 += g[lane] * data[x, lane]
        a6 += g[lane - 1] * data[x, lane - 1]
        a5 += g[lane - 2] * data[x, lane - 2]
        a4 += g[lane - 3] * data[x, lane - 3]
        a3 += g[lane - 4] * data[x, lane - 4]
        a2 += g[lane - 5] * data[x, lane - 5]
        a1 += g[lane - 6] * data[x, lane - 6]
        a0 += g[lane - 7] * data[x, lane - 7]
        lane -= 8
    r = 0.0
    while lane >= 0:
        r += g[lane] * data[x, lane]
        lane -= 1
    return (((a7 + a6) + (a5 + a4)) + ((a3 + a2) + (a1 + a0))) + r


# ---------------------------------------------------------------------------
# Forward: rows lo..hi-1, ascending, every lane
# ---------------------------------------------------------------------------
@borrowing_kernel
def forward(tape, lo, hi):
    """Evaluate rows ``lo <= i < hi`` of ``tape``; leaves and inputs keep the data they hold.

    Every op is handled here, with no per-row call that takes an array. One
    compiled sweep for every job (the eager graph, a program's lanes,
    training): called once per sweep, not per row, so its call costs nothing
    that matters, and it is compiled once per machine rather than once per
    kernel that needs it.
    """
    op, pstart, pidx, aux, data, grad, shared, shared_grad = tape
    lanes = data.shape[1]
    i = lo
    while i < hi:
        o = op[i]
        s = pstart[i]
        if o == NEURON or o == AFFINE:
            # A run of NEURON rows with one activation (or of AFFINE rows), none reading
            # another (a layer): all affine parts first, then the activation over the
            # whole run in one loop nest, so independent activations overlap in flight.
            start = i
            act = aux[i] if o == NEURON else 0.0
            while i < hi and op[i] == o and (o == AFFINE or aux[i] == act):
                last_parent = -1
                for k in range(pstart[i], pstart[i + 1]):
                    last_parent = max(last_parent, pidx[k])
                if last_parent >= start and i > start:
                    break  # reads a row of this run: it starts the next run
                affine_row(op, pstart, pidx, data, shared, i)
                i += 1
            activate(act, data, start, i)
            continue
        cls = CLASS_OF[o]
        if cls == UNARY_CLASS:
            a = pidx[s]
            c = aux[i]
            if op[a] == LEAF:
                v = unary_value(o, shared[a], c)
                for lane in range(lanes):
                    data[i, lane] = v
            # the activations a NEURON row does not fuse: a loop each, the rule given a
            # constant code, which the compiler folds (and vectorises where it can)
            elif o == GELU_ERF:
                for lane in range(lanes):
                    data[i, lane] = unary_value(np.uint8(GELU_ERF), data[a, lane], c)
            elif o == GELU_TANH:
                for lane in range(lanes):
                    data[i, lane] = unary_value(np.uint8(GELU_TANH), data[a, lane], c)
            elif o == SILU:
                for lane in range(lanes):
                    data[i, lane] = unary_value(np.uint8(SILU), data[a, lane], c)
            elif o == SOFTPLUS:
                for lane in range(lanes):
                    data[i, lane] = unary_value(np.uint8(SOFTPLUS), data[a, lane], c)
            elif o == LEAKY_RELU:
                for lane in range(lanes):
                    data[i, lane] = unary_value(np.uint8(LEAKY_RELU), data[a, lane], c)
            else:
                for lane in range(lanes):
                    data[i, lane] = unary_value(o, data[a, lane], c)
        elif cls == BINARY_CLASS:
            a = pidx[s]
            b = pidx[s + 1]
            leaf_a = op[a] == LEAF
            leaf_b = op[b] == LEAF
            c = aux[i]
            for lane in range(lanes):
                x = shared[a] if leaf_a else data[a, lane]
                y = shared[b] if leaf_b else data[b, lane]
                data[i, lane] = binary_value(o, x, y, c)
        elif o == SUM:
            for lane in range(lanes):
                data[i, lane] = 0.0
            for k in range(s, pstart[i + 1]):
                p = pidx[k]
                leaf_p = op[p] == LEAF
                for lane in range(lanes):
                    data[i, lane] += shared[p] if leaf_p else data[p, lane]
        elif o == LOGSUMEXP:
            e = pstart[i + 1]
            for lane in range(lanes):
                # subtract the largest input so no exp overflows (logits of 1000 are fine)
                m = -math.inf
                has_nan = False
                for k in range(s, e):
                    p = pidx[k]
                    v = shared[p] if op[p] == LEAF else data[p, lane]
                    if v != v:
                        has_nan = True
                    elif v > m:
                        m = v
                if has_nan:
                    data[i, lane] = math.nan
                elif math.isinf(m):
                    data[i, lane] = m  # all -inf gives -inf; any +inf gives +inf
                else:
                    acc = 0.0
                    for k in range(s, e):
                        p = pidx[k]
                        acc += exp((shared[p] if op[p] == LEAF else data[p, lane]) - m)
                    data[i, lane] = m + math.log(acc)
        elif o == CROSS_ENTROPY:
            # -sum_j t_j * log_softmax(z)_j, log_softmax(z)_j = (z_j - m) - L with m = max z
            # and L = log sum exp(z - m), as PyTorch: two large numbers are never subtracted
            # after the logarithm, so logits of 1e16 keep full precision
            label = int(aux[i])  # the class index; -1: parents k..2k-1 are a target row
            k = pstart[i + 1] - s if label >= 0 else (pstart[i + 1] - s) // 2
            for lane in range(lanes):
                m = -math.inf
                has_nan = False
                for j in range(k):
                    p = pidx[s + j]
                    v = shared[p] if op[p] == LEAF else data[p, lane]
                    if v != v:
                        has_nan = True
                    elif v > m:
                        m = v
                if has_nan or math.isinf(m):  # a NaN logit, a +inf one or all -inf: NaN, as PyTorch
                    data[i, lane] = math.nan
                    continue
                acc = 0.0
                for j in range(k):
                    p = pidx[s + j]
                    acc += exp((shared[p] if op[p] == LEAF else data[p, lane]) - m)
                big_l = math.log(acc)
                if label >= 0:
                    p = pidx[s + label]
                    data[i, lane] = (m - (shared[p] if op[p] == LEAF else data[p, lane])) + big_l
                else:
                    loss = 0.0
                    for j in range(k):
                        p = pidx[s + j]
                        q = pidx[s + k + j]
                        t = shared[q] if op[q] == LEAF else data[q, lane]
                        loss += t * ((m - (shared[p] if op[p] == LEAF else data[p, lane])) + big_l)
                    data[i, lane] = loss
        elif o == MAX:  # NaN if any parent is NaN, as max_pool2d
            e = pstart[i + 1]
            for lane in range(lanes):
                m = -math.inf
                for k in range(s, e):
                    p = pidx[k]
                    v = shared[p] if op[p] == LEAF else data[p, lane]
                    if v > m or v != v:
                        m = v
                        if v != v:
                            break
                data[i, lane] = m
        elif o == LANE_SUM:  # sum over the lanes of mask * x, in every lane
            a = pidx[s]
            b = pidx[s + 1]
            acc = 0.0
            for lane in range(lanes):
                m = shared[b] if op[b] == LEAF else data[b, lane]
                if m != 0.0:
                    acc += m * (shared[a] if op[a] == LEAF else data[a, lane])
            for lane in range(lanes):
                data[i, lane] = acc
        elif o == RUNNING_STAT:  # a moving average kept in the row itself
            a = pidx[s]
            c = aux[i]
            v = (1.0 - c) * data[i, 0] + c * (shared[a] if op[a] == LEAF else data[a, 0])
            for lane in range(lanes):
                data[i, lane] = v
        elif o != LEAF and o != INPUT:
            for lane in range(lanes):
                data[i, lane] = math.nan  # not an op the kernels know
        i += 1


# ---------------------------------------------------------------------------
# Backward: each row's gradient, times each local derivative, into its parents
# ---------------------------------------------------------------------------
@borrowing_kernel
def backward(tape, lo, hi, mark, stamp, clear, g):
    """Descending sweep over rows ``hi-1 .. lo`` of ``tape``.

    With ``stamp >= 0`` only rows with ``mark[i] == stamp`` take part (the eager
    graph's ancestors of a root); with ``stamp < 0`` every computed row does.
    With ``clear``, each swept row's own gradient is set to 0 once it has been
    passed on (training reuses the tape for the next batch without a zeroing
    pass). Lanes run last first into shared rows, so shared (LEAF) gradients
    add up in the order of an eager graph built sample by sample. One kernel
    for every job, as ``forward``. ``g``
    (float64[lanes]) is scratch space for a NEURON row's gradient at its
    pre-activation.
    """
    op, pstart, pidx, aux, data, grad, shared, shared_grad = tape
    lanes = data.shape[1]
    for i in range(hi - 1, lo - 1, -1):
        o = op[i]
        if o == LEAF or o == INPUT or (stamp >= 0 and mark[i] != stamp):
            continue
        s = pstart[i]
        cls = CLASS_OF[o]
        if o == AFFINE or o == NEURON:
            n = (pstart[i + 1] - s - 1) // 2
            pre_activation_grad(aux[i] if o == NEURON else 0.0, grad, data, i, g)
            if usual_layout(op, pstart, pidx, i):
                # a layer's neuron: shared bias and weights, per-lane inputs
                acc = 0.0
                for lane in range(lanes - 1, -1, -1):
                    acc += g[lane]
                shared_grad[pidx[s]] += acc
                for j in range(n):
                    w = pidx[s + 1 + j]
                    x = pidx[s + 1 + n + j]
                    shared_grad[w] += lane_dot(g, data, x, lanes)
                    if op[x] != INPUT:
                        wv = shared[w]
                        for lane in range(lanes):
                            grad[x, lane] += g[lane] * wv
            else:  # any other layout: bias, weights and inputs of every kind, lane by lane
                b = pidx[s]
                ob = op[b]
                for lane in range(lanes - 1, -1, -1):
                    gl = g[lane]
                    if ob == LEAF:
                        shared_grad[b] += gl
                    elif ob != INPUT:
                        grad[b, lane] += gl
                    for j in range(n):
                        w = pidx[s + 1 + j]
                        x = pidx[s + 1 + n + j]
                        ow = op[w]
                        ox = op[x]
                        wv = shared[w] if ow == LEAF else data[w, lane]
                        xv = shared[x] if ox == LEAF else data[x, lane]
                        if ow == LEAF:
                            shared_grad[w] += gl * xv
                        elif ow != INPUT:
                            grad[w, lane] += gl * xv
                        if ox == LEAF:
                            shared_grad[x] += gl * wv
                        elif ox != INPUT:
                            grad[x, lane] += gl * wv
        elif cls == UNARY_CLASS:
            a = pidx[s]
            oa = op[a]
            c = aux[i]
            if oa == LEAF:
                x = shared[a]
                for lane in range(lanes - 1, -1, -1):
                    shared_grad[a] += grad[i, lane] * unary_derivative(o, x, data[i, lane], c)
            elif oa == INPUT:
                pass
            elif o == GELU_ERF:  # as in forward: a loop per unfused activation
                for lane in range(lanes):
                    d = unary_derivative(np.uint8(GELU_ERF), data[a, lane], data[i, lane], c)
                    grad[a, lane] += grad[i, lane] * d
            elif o == GELU_TANH:  # as in forward: a loop per unfused activation
                for lane in range(lanes):
                    d = unary_derivative(np.uint8(GELU_TANH), data[a, lane], data[i, lane], c)
                    grad[a, lane] += grad[i, lane] * d
            elif o == SILU:  # as in forward: a loop per unfused activation
                for lane in range(lanes):
                    d = unary_derivative(np.uint8(SILU), data[a, lane], data[i, lane], c)
                    grad[a, lane] += grad[i, lane] * d
            elif o == SOFTPLUS:  # as in forward: a loop per unfused activation
                for lane in range(lanes):
                    d = unary_derivative(np.uint8(SOFTPLUS), data[a, lane], data[i, lane], c)
                    grad[a, lane] += grad[i, lane] * d
            elif o == LEAKY_RELU:  # as in forward: a loop per unfused activation
                for lane in range(lanes):
                    d = unary_derivative(np.uint8(LEAKY_RELU), data[a, lane], data[i, lane], c)
                    grad[a, lane] += grad[i, lane] * d
            else:
                for lane in range(lanes):
                    grad[a, lane] += grad[i, lane] * unary_derivative(o, data[a, lane], data[i, lane], c)
        elif cls == BINARY_CLASS:
            a = pidx[s]
            b = pidx[s + 1]
            oa = op[a]
            ob = op[b]
            c = aux[i]
            for lane in range(lanes - 1, -1, -1):
                x = shared[a] if oa == LEAF else data[a, lane]
                y = shared[b] if ob == LEAF else data[b, lane]
                da, db = binary_backward(o, x, y, data[i, lane], c, grad[i, lane])
                # into the parents: a shared row sums its lanes, an input takes nothing
                if oa == LEAF:
                    shared_grad[a] += da
                elif oa != INPUT:
                    grad[a, lane] += da
                if ob == LEAF:
                    shared_grad[b] += db
                elif ob != INPUT:
                    grad[b, lane] += db
        elif o == SUM:
            for k in range(s, pstart[i + 1]):
                p = pidx[k]
                if op[p] == LEAF:
                    for lane in range(lanes - 1, -1, -1):
                        shared_grad[p] += grad[i, lane]
                elif op[p] != INPUT:
                    for lane in range(lanes):
                        grad[p, lane] += grad[i, lane]
        elif o == LOGSUMEXP:
            # d lse / d p_k = softmax_k = exp(p_k - lse), as PyTorch computes it. Where the
            # logits are so large (or non-finite) that lse = m + log(sum) has rounded to
            # m, it is exp(p_k - m) / sum_j exp(p_j - m), m = max p_j, recomputed.
            e = pstart[i + 1]
            for lane in range(lanes - 1, -1, -1):
                lse = data[i, lane]
                gl = grad[i, lane]
                if not abs(lse) < 1e15:
                    lse = -math.inf  # now the largest input
                    for k in range(s, e):
                        p = pidx[k]
                        lse = max(lse, shared[p] if op[p] == LEAF else data[p, lane])
                    acc = 0.0
                    for k in range(s, e):
                        p = pidx[k]
                        acc += exp((shared[p] if op[p] == LEAF else data[p, lane]) - lse)
                    gl /= acc
                for k in range(s, e):
                    p = pidx[k]
                    op_p = op[p]
                    d = gl * exp((shared[p] if op_p == LEAF else data[p, lane]) - lse)
                    if op_p == LEAF:
                        shared_grad[p] += d
                    elif op_p != INPUT:
                        grad[p, lane] += d
        elif o == CROSS_ENTROPY:
            # d/dz_j = c * softmax_j - t_j (c = sum t, 1 for a class index), softmax_j =
            # exp(z_j - m) / sum exp(z - m); d/dt_j = (m - z_j) + L = -log_softmax_j
            label = int(aux[i])
            k = pstart[i + 1] - s if label >= 0 else (pstart[i + 1] - s) // 2
            for lane in range(lanes - 1, -1, -1):
                gl = grad[i, lane]
                m = -math.inf
                for j in range(k):
                    p = pidx[s + j]
                    m = max(m, shared[p] if op[p] == LEAF else data[p, lane])
                acc = 0.0
                for j in range(k):
                    p = pidx[s + j]
                    acc += exp((shared[p] if op[p] == LEAF else data[p, lane]) - m)
                c = 1.0
                if label < 0:
                    c = 0.0
                    for j in range(k):
                        q = pidx[s + k + j]
                        c += shared[q] if op[q] == LEAF else data[q, lane]
                big_l = math.log(acc)
                for j in range(k):
                    p = pidx[s + j]
                    op_p = op[p]
                    z = shared[p] if op_p == LEAF else data[p, lane]
                    if label >= 0:
                        t = 1.0 if j == label else 0.0
                    else:
                        q = pidx[s + k + j]
                        op_q = op[q]
                        t = shared[q] if op_q == LEAF else data[q, lane]
                        if op_q != INPUT:  # a target that is a Value: -log_softmax_j
                            dt = gl * ((m - z) + big_l)
                            if op_q == LEAF:
                                shared_grad[q] += dt
                            else:
                                grad[q, lane] += dt
                    dz = gl * (c * (exp(z - m) / acc) - t)  # exp again: no scratch array
                    if op_p == LEAF:
                        shared_grad[p] += dz
                    elif op_p != INPUT:
                        grad[p, lane] += dz
        elif o == MAX:
            # d max / d p_k = 1 for the first largest parent k (the first NaN), else 0
            e = pstart[i + 1]
            for lane in range(lanes - 1, -1, -1):
                z = data[i, lane]
                for k in range(s, e):
                    p = pidx[k]
                    v = shared[p] if op[p] == LEAF else data[p, lane]
                    if v == z or (v != v and z != z):
                        if op[p] == LEAF:
                            shared_grad[p] += grad[i, lane]
                        elif op[p] != INPUT:
                            grad[p, lane] += grad[i, lane]
                        break
        elif o == LANE_SUM:
            # row[l'] = sum_l m[l] x[l] in every lane l': x[l] gets m[l] * sum_l' grad[l']
            a = pidx[s]
            b = pidx[s + 1]
            total = 0.0
            for lane in range(lanes):
                total += grad[i, lane]
            for lane in range(lanes - 1, -1, -1):
                m = shared[b] if op[b] == LEAF else data[b, lane]
                if m != 0.0:
                    if op[a] == LEAF:
                        shared_grad[a] += m * total
                    elif op[a] != INPUT:
                        grad[a, lane] += m * total
        # (RUNNING_STAT passes no gradient: a statistic, not a term of the loss)
        if clear:
            for lane in range(lanes):
                grad[i, lane] = 0.0


# ---------------------------------------------------------------------------
# Eager entry points: what one `.data` read and one `backward()` call
# ---------------------------------------------------------------------------
# A micrograd-sized graph (30 rows) is swept in well under a microsecond, so
# here the fixed cost of a call is what counts. These take the tape's arrays
# loose, not as a Tape: Numba's dispatcher types an array argument in C but a
# tuple in Python (0.5 to 1 us a call), and unboxing each array costs ~0.1 us,
# so the shared views are made inside from ``data`` and ``grad`` rather than
# passed. No ``nogil``: releasing and taking back the GIL costs ~0.2 us a call.
EAGER_OPTIONS = {"cache": True, "error_model": "numpy"}


@inline_kernel
def eager_tape(op, pstart, pidx, aux, data, grad):
    """The one-lane eager graph as a Tape: ``shared``/``shared_grad`` are ``data``/``grad`` flattened."""
    return (op, pstart, pidx, aux, data, grad, data.reshape(data.shape[0]), grad.reshape(grad.shape[0]))


@njit(**EAGER_OPTIONS)
def eager_evaluate(op, pstart, pidx, aux, data, grad, lo, hi):
    """Evaluate rows ``lo <= i < hi`` of the eager graph (``Graph.evaluate``)."""
    forward(eager_tape(op, pstart, pidx, aux, data, grad), lo, hi)


@njit(**EAGER_OPTIONS)
def eager_gradients(op, pstart, pidx, aux, data, grad, mark, stamp, n_eval, n, root):
    """Forward rows ``n_eval..n-1``, then reverse-mode from ``root`` (``Graph.backward``).

    The ancestors of ``root`` are stamped in ``mark`` by one descending sweep
    from the root (rows only have parents below them, so a sweep that counts
    the stamped rows it has still to reach ends at the lowest one); interior
    ones get their gradient reset. The sweep reads the tape in order and has
    no stack to chase, so it runs at memory speed. Each leaf ancestor
    collects this pass's contributions from 0 and then adds their sum to the
    gradient it held, as PyTorch does, so a second identical call adds
    exactly the same amount (doubling it) and leaves accumulate until
    zeroed. Only stamped rows are swept, so rows that are not ancestors are
    neither touched nor able to leak a 0 * inf = NaN into the result.

    The leaves are counted by the first sweep and listed by a second one,
    into arrays allocated in between: an array reassigned inside a loop
    (a growing list) makes Numba take and drop references on every pass,
    ~190 ns a row.
    """
    tape = eager_tape(op, pstart, pidx, aux, data, grad)
    shared_grad = tape[7]
    if n_eval < n:  # a call passes the tape's eight arrays (~0.1 us): only when there is work
        forward(tape, n_eval, n)
    if op[root] == LEAF:
        shared_grad[root] += 1.0
        return
    mark[root] = stamp
    n_leaves = 0
    pending = 1  # stamped rows (not leaves) that the sweep has still to reach
    i = root
    while pending > 0:
        if mark[i] == stamp and op[i] != LEAF:
            pending -= 1
            grad[i, 0] = 0.0
            for k in range(pstart[i], pstart[i + 1]):
                p = pidx[k]
                if mark[p] != stamp:
                    mark[p] = stamp
                    if op[p] == LEAF:
                        n_leaves += 1
                    else:
                        pending += 1
        i -= 1
    lo = i + 1
    leaves = np.empty(n_leaves, np.int64)
    held = np.empty(n_leaves)  # the gradient each leaf held before this pass
    j = 0
    for i in range(lo, root + 1):
        if mark[i] == stamp and op[i] != LEAF:
            for k in range(pstart[i], pstart[i + 1]):
                p = pidx[k]
                if op[p] == LEAF and mark[p] == stamp:
                    mark[p] = -stamp  # listed (the backward sweep skips leaves whatever their mark)
                    leaves[j] = p
                    held[j] = shared_grad[p]
                    shared_grad[p] = 0.0
                    j += 1
    grad[root, 0] = 1.0
    backward(tape, lo, root + 1, mark, stamp, np.bool_(False), np.empty(1))
    for k in range(n_leaves):
        shared_grad[leaves[k]] = held[k] + shared_grad[leaves[k]]


@kernel
def sgd_step(data, grad, rows, lr):
    """Plain SGD on parameter rows: p -= lr * grad (gradient summed over lanes)."""
    lanes = data.shape[1]
    for r in rows:
        g = 0.0
        for lane in range(lanes):
            g += grad[r, lane]
        v = data[r, 0] - lr * g
        for lane in range(lanes):
            data[r, lane] = v


# ---------------------------------------------------------------------------
# Compaction: keep rows reachable from live handles, renumber in place
# ---------------------------------------------------------------------------
@kernel
def mark_ancestors(pstart, pidx, keep, n):
    """Extend ``keep`` (bool[rows]) to every ancestor of a kept row below ``n``."""
    for i in range(n - 1, -1, -1):
        if keep[i]:
            for k in range(pstart[i], pstart[i + 1]):
                keep[pidx[k]] = True


@kernel
def compact(op, pstart, pidx, aux, data, grad, keep, n, n_eval):
    """Drop rows that no kept row depends on; returns (new n, new n_eval, new index).

    ``keep`` (bool[rows]) marks rows held by live handles on entry; their
    ancestors are added by one descending sweep. Survivors move down in
    order, so the tape stays topologically ordered. Dropped rows map to -1.
    """
    mark_ancestors(pstart, pidx, keep, n)
    new_index = np.full(n, -1, np.int64)
    lanes = data.shape[1]
    m = 0
    entries = 0
    new_eval = 0
    for i in range(n):
        if not keep[i]:
            continue
        new_index[i] = m
        if i < n_eval:
            new_eval = m + 1
        s = pstart[i]
        e = pstart[i + 1]
        op[m] = op[i]
        aux[m] = aux[i]
        for lane in range(lanes):
            data[m, lane] = data[i, lane]
            grad[m, lane] = grad[i, lane]
        pstart[m] = entries
        for k in range(s, e):
            pidx[entries] = new_index[pidx[k]]
            entries += 1
        m += 1
    pstart[m] = entries
    return m, new_eval, new_index


# ---------------------------------------------------------------------------
# Register tiles for the dense blocks. LLVM's loop vectoriser vectorises only
# innermost loops and keeps their accumulators in memory, and Numba leaves its
# SLP vectoriser off, so a matrix product written as loops runs at a fraction
# of the machine's speed (a third, measured on the digits layer). A tile is
# written in LLVM IR instead: a few rows of C held in vector registers while
# a product runs over k, each step one fused multiply-add per vector, the
# sum over k in order:
#
#     C[c + u*crs + l] = fma(A[a + u*ars + i*astep], B[b + i*bstep + l], C[...])
#         for i = 0..n-1, u < ROWS, l < COLS   (offsets into C-contiguous arrays)
#
# The fused multiply-add rounds once where the rows round twice, so blocks use
# tiles only from 8 lanes on, where they already equal the rows to rounding.
# ---------------------------------------------------------------------------
def _tile(cols: int):
    """The intrinsic ``tile(a, a0, ars, astep, b, b0, bstep, c, c0, crs, n, rows)`` of up to
    4 rows (``rows``: 1 to 4; the rows past it are computed on a copy of the last, not stored)
    by ``cols`` columns."""

    @intrinsic
    def tile(typingctx, a, a0, ars, astep, b, b0, bstep, c, c0, crs, n, rows):
        sig = types.void(a, a0, ars, astep, b, b0, bstep, c, c0, crs, n, rows)

        def codegen(context, builder, signature, args):
            a, a0, ars, astep, b, b0, bstep, c, c0, crs, n, rows = args
            ta, tb, tc = signature.args[0], signature.args[4], signature.args[7]
            pa = context.make_array(ta)(context, builder, a).data
            pb = context.make_array(tb)(context, builder, b).data
            pc = context.make_array(tc)(context, builder, c).data
            i64 = ir.IntType(64)
            vec = ir.VectorType(ir.DoubleType(), cols)
            splat = ir.Constant(ir.VectorType(ir.IntType(32), cols), [0] * cols)
            undef = ir.Constant(vec, ir.Undefined)

            def at(p, i):
                return builder.bitcast(builder.gep(p, [i]), vec.as_pointer())

            fnty = ir.FunctionType(vec, [vec, vec, vec])
            fma = cgutils.get_or_insert_function(builder.module, fnty, f"llvm.fma.v{cols}f64")
            last = builder.sub(rows, ir.Constant(i64, 1))
            slots = []
            for u in range(4):
                uc = ir.Constant(i64, u)
                row = builder.select(builder.icmp_signed("<", uc, rows), uc, last)
                slot = cgutils.alloca_once(builder, vec)  # promoted to a register by LLVM
                builder.store(builder.load(at(pc, builder.add(c0, builder.mul(crs, row))), align=8), slot)
                slots.append((slot, row))
            with cgutils.for_range(builder, n) as loop:
                x = builder.load(at(pb, builder.add(b0, builder.mul(loop.index, bstep))), align=8)
                a_i = builder.add(a0, builder.mul(loop.index, astep))
                for slot, row in slots:
                    w = builder.load(builder.gep(pa, [builder.add(a_i, builder.mul(ars, row))]))
                    one = builder.insert_element(undef, w, ir.Constant(ir.IntType(32), 0))
                    wv = builder.shuffle_vector(one, undef, splat)  # w in every element
                    builder.store(builder.call(fma, [wv, x, builder.load(slot)]), slot)
            for u, (slot, row) in enumerate(slots):
                with builder.if_then(builder.icmp_signed("<", ir.Constant(i64, u), rows)):
                    builder.store(builder.load(slot), at(pc, builder.add(c0, builder.mul(crs, row))), align=8)
            return context.get_dummy_value()

        return sig, codegen

    return tile


tile_16 = _tile(16)
tile_8 = _tile(8)
tile_1 = _tile(1)


@borrowing_kernel
def mac(a, a0, ars, astep, b, b0, bstep, c, c0, crs, rows, cols, n):
    """C += A B over ``rows`` x ``cols`` of C, by tiles: the offsets of one tile, above.

    A kernel of its own, not inlined, over 1-D arrays (views of the 2-D ones): one
    compiled signature serves the three products of the blocks, which keeps the
    tiles' share of the cold-start compile small."""
    for u in range(0, rows, 4):
        r = min(4, rows - u)
        ai = a0 + u * ars
        ci = c0 + u * crs
        col = 0
        while col + 16 <= cols:
            tile_16(a, ai, ars, astep, b, b0 + col, bstep, c, ci + col, crs, n, r)
            col += 16
        if col + 8 <= cols:
            tile_8(a, ai, ars, astep, b, b0 + col, bstep, c, ci + col, crs, n, r)
            col += 8
        while col < cols:
            tile_1(a, ai, ars, astep, b, b0 + col, bstep, c, ci + col, crs, n, r)
            col += 1


# ---------------------------------------------------------------------------
# Dense blocks (tinyml/dense.py builds the plan). A layer's NEURON (or AFFINE)
# rows over one range of input rows, with LEAF biases and weights, run as one
# block: forward as a matrix product (lanes innermost), weight gradients as
# outer products accumulated in a contiguous buffer, then added to each
# weight's shared gradient once. The row-by-row sweeps stay the definition;
# a block does each row's arithmetic in the same order (forward: bias, then
# inputs in order; input gradients: units last first; bias gradients: lanes
# last first; weight gradients: lanes last first, the order of ``lane_dot``
# up to 4 lanes), so up to 4 lanes a block's results are bit-identical to
# the rows'. From 8 lanes on (where the rows reassociate) a packed block (its
# weights and biases in the rows ``Layer`` gives them, read in place) runs
# the three products by the register tiles above, in the same orders but
# with fused multiply-adds: equal to the rows to rounding.
#
# ``dense`` = (segs int64[S, 3], blocks int64[K, 8], wrows int64[W],
#              g float64[H, lanes], gw float64[H * n], xt float64[lanes, n + 1]):
# segs are (SEG_ROWS, lo, hi): rows lo..hi-1 by the row sweeps, or
# (SEG_BLOCK, k, 0): block k; a block is (first output row, units H, first
# input row, fan-in n, activation code, offset in wrows, wb, stride), and
# wrows[offset:] holds its H bias rows, then its H * n weight rows unit by
# unit; packed, unit h's weights and then its bias are the rows wb + h *
# stride + 0..n (else wb = -1). g, gw, xt are scratch of the largest block.
# dense_forward and dense_backward are inlined into ``train_epochs``, their
# one caller: it counts no references (``borrowing_kernel``), so inlining
# costs none, and a call would push their eleven arrays' fields (about 80
# words) onto the stack per block and chunk. What they call from 8 lanes on
# (``forward_tiles``, ``backward_tiles``, ``mac``) and the cross-entropy
# blocks are kernels of their own: microseconds of work per call, and
# compiled apart they keep the training kernel's own compile from doubling.
# A cross-entropy block is (loss row, 1, first logit row, classes n,
# CROSS_ENTROPY, first scratch row of g, first target row or -1, class
# index or -1); see ``cross_entropy_forward``.
# ---------------------------------------------------------------------------
SEG_ROWS = 0
SEG_BLOCK = 1


@inline_kernel
def dense_forward(data, shared, blocks, wrows, k, g):
    """Block k's rows: data[o0 + h] = act(b_h + sum_j w_hj * data[x0 + j]), every lane;
    each unit adds its bias, then its inputs in order, as ``affine_row`` (by
    tiles when the block is packed and has 8 lanes or more). A cross-entropy
    block: ``cross_entropy_forward``, which leaves its exps in ``g`` for backward."""
    if blocks[k, 4] == CROSS_ENTROPY:
        cross_entropy_forward(data, blocks, k, g)
        return
    o0 = blocks[k, 0]
    units = blocks[k, 1]
    x0 = blocks[k, 2]
    fan = blocks[k, 3]
    at = blocks[k, 5]
    lanes = data.shape[1]
    if lanes >= 8 and blocks[k, 6] >= 0:
        forward_tiles(data, shared, blocks, k)
    else:
        for h in range(units):
            bv = shared[wrows[at + h]]
            for lane in range(lanes):
                data[o0 + h, lane] = bv
        w0 = at + units
        for h in range(units):
            r = o0 + h
            p = w0 + h * fan
            for j in range(fan):
                wv = shared[wrows[p + j]]
                xr = x0 + j
                for lane in range(lanes):
                    data[r, lane] += wv * data[xr, lane]
    activate(blocks[k, 4], data, o0, o0 + units)


@inline_kernel
def dense_backward(op, data, grad, shared, shared_grad, blocks, wrows, k, g, gw, xt):
    """Block k's backward: its rows' gradients into biases, weights and input rows;
    the rows' own gradients are left at 0 (as ``backward(..., clear=True)``)."""
    if blocks[k, 4] == CROSS_ENTROPY:
        cross_entropy_backward(data, grad, blocks, k, g)
        return
    o0 = blocks[k, 0]
    units = blocks[k, 1]
    x0 = blocks[k, 2]
    fan = blocks[k, 3]
    act = blocks[k, 4]
    at = blocks[k, 5]
    lanes = data.shape[1]
    # the gradient at each unit's pre-activation (the rule: unary_derivative from z alone)
    for h in range(units):
        r = o0 + h
        pre_activation_grad(act, grad, data, r, g[h])  # (a row view: free, NRT is off here)
        for lane in range(lanes):
            grad[r, lane] = 0.0
    inputs = 0  # how many of the input rows take a gradient (INPUT rows take none)
    for j in range(fan):
        if op[x0 + j] != INPUT:
            inputs += 1
    if lanes >= 8 and blocks[k, 6] >= 0:
        backward_tiles(data, grad, shared, shared_grad, blocks, k, g, xt, inputs == fan)
        if inputs == fan or inputs == 0:
            return
    else:
        # biases: d z_h / d b_h = 1, lanes summed last first
        for h in range(units):
            acc = 0.0
            for lane in range(lanes - 1, -1, -1):
                acc += g[h, lane]
            shared_grad[wrows[at + h]] += acc
        # weights: d z_h / d w_hj = x_j; sum over lanes (last first) of the outer products g x^T
        for j in range(fan):
            for lane in range(lanes):
                xt[lane, j] = data[x0 + j, lane]
        size = units * fan
        for t in range(size):
            gw[t] = 0.0
        for lane in range(lanes - 1, -1, -1):
            for h in range(units):
                gh = g[h, lane]
                base = h * fan
                for j in range(fan):
                    gw[base + j] += gh * xt[lane, j]
        for t in range(size):
            shared_grad[wrows[at + units + t]] += gw[t]
    # inputs: d z_h / d x_j = w_hj, units last first (the rows' descending sweep)
    w0 = at + units
    for j in range(fan):
        xr = x0 + j
        if op[xr] == INPUT:
            continue
        for h in range(units - 1, -1, -1):
            wv = shared[wrows[w0 + h * fan + j]]
            for lane in range(lanes):
                grad[xr, lane] += g[h, lane] * wv


@borrowing_kernel
def forward_tiles(data, shared, blocks, k):
    """``dense_forward``'s affine part of a packed block, by tiles: Z = b + W X.

    This, ``backward_tiles`` and the cross-entropy blocks are kernels of their own,
    called (not inlined into ``train_epochs``): a call costs tens of ns against
    microseconds of work, and compiled apart they keep the training kernel's
    cold-start compile from growing with them."""
    o0 = blocks[k, 0]
    units = blocks[k, 1]
    x0 = blocks[k, 2]
    fan = blocks[k, 3]
    wb = blocks[k, 6]
    us = blocks[k, 7]
    lanes = data.shape[1]
    for h in range(units):
        bv = shared[wb + h * us + fan]
        for lane in range(lanes):
            data[o0 + h, lane] = bv
    # Z (units x lanes) += W (units x fan, rows us apart in shared) X (fan x lanes)
    flat = data.reshape(data.size)  # (a view; one compiled mac serves every product)
    mac(shared, wb, us, 1, flat, x0 * lanes, lanes, flat, o0 * lanes, lanes, units, lanes, fan)


@borrowing_kernel
def backward_tiles(data, grad, shared, shared_grad, blocks, k, g, xt, into_inputs):
    """``dense_backward`` of a packed block, by tiles, once g holds the pre-activation
    gradients: weights and biases (a column of ones after the inputs in ``xt``
    gives the biases), then, if ``into_inputs``, every input row."""
    units = blocks[k, 1]
    x0 = blocks[k, 2]
    fan = blocks[k, 3]
    wb = blocks[k, 6]
    us = blocks[k, 7]
    lanes = data.shape[1]
    gs = g.shape[1]  # the row strides of the scratch, which is as wide as the widest block
    xs = xt.shape[1]
    for lane in range(lanes):
        for j in range(fan):
            xt[lane, j] = data[x0 + j, lane]
        xt[lane, fan] = 1.0
    # GW (units x (fan + 1), rows us apart in shared_grad) += G (units x lanes) X1^T, lanes last first
    last = lanes - 1
    g1 = g.reshape(g.size)  # views, so that one compiled mac serves every product
    mac(g1, last, gs, -1, xt.reshape(xt.size), last * xs, -xs, shared_grad, wb, us, units, fan + 1, lanes)
    if into_inputs:
        # dX (fan x lanes) += W^T (fan x units) G (units x lanes), units last first
        top = units - 1
        into = grad.reshape(grad.size)
        mac(shared, wb + top * us, 1, -us, g1, top * gs, -gs, into, x0 * lanes, lanes, fan, lanes, units)


@borrowing_kernel
def cross_entropy_forward(data, blocks, k, g):
    """A CROSS_ENTROPY row as a block (see ``forward`` for the rule): the same arithmetic
    in the same order per lane, run class by class over all lanes, so ``exp`` vectorises.

    Block k is (row i, 1, first logit row z0, classes n, CROSS_ENTROPY, first scratch
    row s, first target row t0 or -1, class index or -1). Leaves e_j = exp(z_j - m) in
    g[s + j] and their sum in g[s + n] for backward (the max m and log sum in the next two).
    """
    i = blocks[k, 0]
    z0 = blocks[k, 2]
    n = blocks[k, 3]
    s = blocks[k, 5]
    t0 = blocks[k, 6]
    label = blocks[k, 7]
    lanes = data.shape[1]
    total = s + n
    top = s + n + 1
    logs = s + n + 2
    for lane in range(lanes):
        g[top, lane] = -math.inf
        g[total, lane] = 0.0
    for j in range(n):  # m = the largest logit (NaN ones aside: they make the sum NaN)
        for lane in range(lanes):
            v = data[z0 + j, lane]
            if v > g[top, lane]:
                g[top, lane] = v
    for j in range(n):
        for lane in range(lanes):
            e = exp(data[z0 + j, lane] - g[top, lane])
            g[s + j, lane] = e
            g[total, lane] += e
    for lane in range(lanes):
        g[logs, lane] = math.log(g[total, lane])  # L = log sum exp(z - m)
        data[i, lane] = 0.0
    if label >= 0:
        for lane in range(lanes):
            data[i, lane] = (g[top, lane] - data[z0 + label, lane]) + g[logs, lane]
    else:
        for j in range(n):
            for lane in range(lanes):
                t = data[t0 + j, lane]
                data[i, lane] += t * ((g[top, lane] - data[z0 + j, lane]) + g[logs, lane])
    for lane in range(lanes):  # a NaN logit, a +inf one or all -inf: NaN, as PyTorch
        if math.isinf(g[top, lane]) or g[total, lane] != g[total, lane]:
            data[i, lane] = math.nan


@borrowing_kernel
def cross_entropy_backward(data, grad, blocks, k, g):
    """The backward of a cross-entropy block (see ``backward`` for the rule) from the exps
    its forward left in ``g``: d/dz_j = c e_j / sum - t_j, c = sum t (1 for a class index)."""
    i = blocks[k, 0]
    z0 = blocks[k, 2]
    n = blocks[k, 3]
    s = blocks[k, 5]
    t0 = blocks[k, 6]
    label = blocks[k, 7]
    lanes = data.shape[1]
    total = s + n
    top = s + n + 1  # (the max: backward needs it no more; the row c of sum t takes its place)
    for lane in range(lanes):
        g[top, lane] = 1.0
    if label < 0:
        for lane in range(lanes):
            g[top, lane] = 0.0
        for j in range(n):
            for lane in range(lanes):
                g[top, lane] += data[t0 + j, lane]
    for j in range(n):
        for lane in range(lanes):
            if label >= 0:
                t = 1.0 if j == label else 0.0
            else:
                t = data[t0 + j, lane]
            grad[z0 + j, lane] += grad[i, lane] * (g[top, lane] * (g[s + j, lane] / g[total, lane]) - t)
    for lane in range(lanes):
        grad[i, lane] = 0.0


# ---------------------------------------------------------------------------
# Compiled training: many epochs of forward + backward + update in one call
# ---------------------------------------------------------------------------
@kernel
def shuffle(order, seed, epoch):
    """Fisher-Yates shuffle of ``order`` from a splitmix64 stream keyed on (seed, epoch).

    Keyed per epoch, so the permutation sequence does not depend on how the
    epochs were split into kernel calls.
    """
    x = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(epoch)
    for i in range(order.shape[0] - 1, 0, -1):
        x += np.uint64(0x9E3779B97F4A7C15)
        z = x
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
        j = np.int64(z % np.uint64(i + 1))
        t = order[i]
        order[i] = order[j]
        order[j] = t


@inline_kernel
def load_lanes(data, in_rows, samples, order, start, width):
    """Put samples ``order[start:start+width]`` into the input rows, one per lane.

    Lanes past ``width`` repeat the first sample, so they hold finite values
    (their loss gradient is seeded with 0, and 0 * finite stays 0).
    """
    lanes = data.shape[1]
    # a transpose, by blocks of 8 lanes: each input row gets 8 contiguous values (a cache
    # line) from 8 samples read in order, rather than one value per row per sample
    for l0 in range(0, lanes, 8):
        l1 = min(l0 + 8, lanes)
        for j in range(in_rows.shape[0]):
            r = in_rows[j]
            for lane in range(l0, l1):
                s = order[start + lane] if lane < width else order[start]
                data[r, lane] = samples[s, j]


@borrowing_kernel
def fill_noise(data, noise_rows, seed, step, start):
    """Uniform [0, 1) draws into the dropout noise rows, keyed on (seed, step, sample
    offset, row, lane): reproducible whatever the split of epochs into calls."""
    lanes = data.shape[1]
    base = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(step) * np.uint64(0xD1B54A32D192ED03)
    base += np.uint64(start) * np.uint64(0x8CB92BA72F3D8DD7)
    for j in range(noise_rows.shape[0]):
        for lane in range(lanes):
            z = base + np.uint64(j * lanes + lane + 1) * np.uint64(0x9E3779B97F4A7C15)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z = z ^ (z >> np.uint64(31))
            data[noise_rows[j], lane] = np.float64(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@borrowing_kernel
def copy_matrix(dst, src):
    """dst[:, :] = src for 2-D arrays of one shape, as a loop: Numba's slice
    assignment checks shapes and compiles the error message's string formatting,
    seconds of cold-start compile time."""
    for r in range(dst.shape[0]):
        for c in range(dst.shape[1]):
            dst[r, c] = src[r, c]


@borrowing_kernel
def copy_vector(dst, src):
    """dst[:] = src for 1-D arrays of one length, as a loop (see ``copy_matrix``)."""
    for i in range(dst.shape[0]):
        dst[i] = src[i]


@inline_kernel
def all_finite(x):
    for v in x:
        if not math.isfinite(v):
            return False
    return True


@borrowing_kernel
def train_epochs(tape, feed, params, opt, run, penalty, epoch0, epoch1, steps, losses, watch, dense, work):
    """Train epochs ``epoch0..epoch1-1``; returns (epochs completed, status).

    ``tape``   (op, pstart, pidx, aux, data, grad, shared, shared_grad): the traced
               step program; parameters are LEAF rows, read from ``shared``
    ``feed``   (in_rows int64[k], samples float64[n, k], order int64[n], noise_rows int64[d]:
               rows refilled with uniform draws before each forward, for dropout,
               mask_rows int64[b]: rows set to 1 in the lanes holding a sample of the
               batch and 0 in unused lanes, which batch statistics (LANE_SUM) ignore)
    ``params`` (rows int64[P], values float64[P], grads float64[P],
               state_backup float64[P, s])
    ``opt``    (kind, state float64[P, s], hyper float64[h]): see ``tinyml.optim``
    ``run``    int64[6]: loss row, first non-leaf row, batch size, mean (1) or sum (0)
               over samples, shuffle seed (-1: keep order), dropout noise seed
    ``penalty`` float64[2]: l1 and l2 weights, adding l1*sum|p| + l2*sum(p^2) to each
               step's loss (once per step, not per sample)
    ``steps``  int64[1]: optimizer steps taken so far, advanced in place (so it is
               right even if the caller is interrupted before reading a result)
    ``losses`` float64[epoch1 - epoch0]: each epoch's loss before its updates (on
               failure, the failing step's loss at the failing epoch's slot)

    ``watch``  per-epoch extras (all arrays; empty when unused), see ``epoch_extras``:
               (lrs float64[epoch1 - epoch0]: the learning rate of each epoch, a schedule;
               val float64[m, k]: validation samples, val_aux float64[rows]: ``aux`` for
               evaluating them (dropout rows at rate 0), val_losses float64[epoch1 - epoch0]:
               the validation loss after each epoch's update; stop float64[7]: early
               stopping (on, patience, min_delta, best, epochs without improvement, best
               epoch), then the epochs this call completed; best float64[2, P]: the best
               parameters, the epoch's start values; val_op int64[rows], val_pidx int64[...]:
               ``op`` and ``pidx`` for the validation pass (eval mode: batch statistics read
               the running ones); stat_rows int64[S]: the RUNNING_STAT rows (buffers);
               best_stats float64[2, S]: their values at the best epoch, at the epoch's start)

    ``dense``  the plan of dense blocks over rows ``first..loss row`` (see "Dense blocks";
               ``tinyml/dense.py``): the forward and backward sweeps follow it
    ``work``   scratch, allocated by the caller, so that this kernel allocates nothing and
               counts no references (``borrowing_kernel``): (unmarked int64[1] = 0,
               lane float64[lanes], val_order int64[m] = 0..m-1 for the m validation samples)

    status 0: done; 1: a non-finite loss or gradient, 2: an update that would make
    a parameter non-finite; 3: early stopping ended training after ``epochs
    completed``. On status 1 or 2 the parameters and optimizer state are
    those from before the failing step and ``epochs completed`` is the failing
    epoch's offset.
    """
    op, pstart, pidx, aux, data, grad, shared, shared_grad = tape
    in_rows, samples, order, noise_rows, mask_rows = feed
    rows, values, grads, state_backup = params
    kind, state, hyper = opt
    segs, blocks, wrows, gd, gw, xt = dense
    loss_row = run[0]
    loss_shared = op[loss_row] == LEAF  # (a loss that is a parameter or a constant)
    first = run[1]
    batch = run[2]
    mean = run[3] == 1
    seed = run[4]
    noise_seed = run[5]
    n = samples.shape[0]
    lanes = data.shape[1]
    end = loss_row + 1
    unmarked, scratch, val_order = work  # unmarked[0] = 0: every program row takes part in backward
    every_row = np.int64(-1)  # backward's stamp for that, and its clear flag: as values,
    clear = np.bool_(True)  # not constants, so that backward has one compiled signature
    # only the swept rows' gradients are ever read: leaves sum theirs in shared_grad, inputs
    # take none. (Zeroing every row touched the lanes of every parameter row, 50 MB per
    # call for a 784-128-10 network at 64 lanes.)
    for r in range(first, end):
        for lane in range(lanes):
            grad[r, lane] = 0.0
    shared_grad[:] = 0.0
    lrs, val, val_aux, val_losses, stop, best, val_op, val_pidx, stat_rows, best_stats = watch
    for epoch in range(epoch0, epoch1):
        if seed >= 0:
            shuffle(order, seed, epoch)
        # -- schedule / early stopping on the training loss: before the epoch --
        if lrs.shape[0]:
            hyper[0] = lrs[epoch - epoch0]
        if stop[0] != 0.0 and val.shape[0] == 0:
            copy_vector(best[1], values)  # the parameters this epoch's training loss is measured at
            for j in range(best_stats.shape[1]):
                best_stats[1, j] = data[stat_rows[j], 0]
        total = 0.0
        for b0 in range(0, n, batch):
            m = min(batch, n - b0)
            scale = 1.0 / m if mean else 1.0
            batch_loss = 0.0
            for c0 in range(b0, b0 + m, lanes):
                width = min(lanes, b0 + m - c0)
                load_lanes(data, in_rows, samples, order, c0, width)
                if noise_rows.shape[0]:
                    fill_noise(data, noise_rows, noise_seed, steps[0], c0)
                for r in mask_rows:
                    for lane in range(lanes):
                        data[r, lane] = 1.0 if lane < width else 0.0
                # = forward(tape, first, end), by the plan's segments: rows by the row
                # sweep, blocks as blocks (written out here rather than in an inlined helper:
                # an inlined helper's arguments cost a reference count each, per chunk)
                for sg in range(segs.shape[0]):
                    if segs[sg, 0] == SEG_BLOCK:
                        dense_forward(data, shared, blocks, wrows, segs[sg, 1], gd)
                    else:
                        forward(tape, segs[sg, 1], segs[sg, 2])
                for lane in range(width):
                    batch_loss += shared[loss_row] if loss_shared else data[loss_row, lane]
                if loss_shared:  # seed the backward pass, once per sample
                    for _ in range(width):
                        shared_grad[loss_row] += scale
                else:
                    for lane in range(width):
                        grad[loss_row, lane] = scale
                # backward leaves every swept row's grad at 0 again, ready for the next
                # block; parameters (shared LEAF rows) sum their lanes into shared_grad
                # = backward(tape, first, end, unmarked, -1, True, ...), segments last first
                for sg in range(segs.shape[0] - 1, -1, -1):
                    k = segs[sg, 1]
                    if segs[sg, 0] == SEG_BLOCK:
                        dense_backward(op, data, grad, shared, shared_grad, blocks, wrows, k, gd, gw, xt)
                    else:
                        backward(tape, segs[sg, 1], segs[sg, 2], unmarked, every_row, clear, scratch)
            l1 = penalty[0]
            l2 = penalty[1]
            if kind == SGD_KIND and hyper[1] == 0.0 and hyper[2] == 0.0 and l1 == 0.0 and l2 == 0.0:
                # plain SGD, no penalty (the usual fit): gradient, step and checks in one pass
                # over the parameters rather than four; grads keeps each value from before
                # the step, to roll back to. The step is optimizer_update's SGD step.
                lr = hyper[0]
                g_probe = 0.0  # g * 0 is 0 for a finite g and NaN otherwise: one test at the end
                v_probe = 0.0
                for p in range(rows.shape[0]):
                    r = rows[p]
                    g = shared_grad[r]
                    shared_grad[r] = 0.0
                    old = values[p]
                    v = old - lr * g
                    grads[p] = old
                    values[p] = v
                    shared[r] = v
                    g_probe += g * 0.0
                    v_probe += v * 0.0
                losses[epoch - epoch0] = batch_loss * scale  # overwritten below if all is well
                status = 0
                if not (g_probe == 0.0 and math.isfinite(batch_loss)):
                    status = 1
                elif v_probe != 0.0:
                    status = 2
                if status != 0:
                    for p in range(rows.shape[0]):
                        values[p] = grads[p]
                        shared[rows[p]] = grads[p]
                    return epoch - epoch0, status
                total += batch_loss
                steps[0] += 1
                continue
            finite = True
            for p in range(rows.shape[0]):
                g = shared_grad[rows[p]]
                shared_grad[rows[p]] = 0.0
                grads[p] = g
                finite = finite and math.isfinite(g)
            if l1 != 0.0 or l2 != 0.0:
                for p in range(values.shape[0]):
                    v = values[p]
                    sign = 1.0 if v > 0.0 else (-1.0 if v < 0.0 else 0.0)
                    batch_loss += (l1 * abs(v) + l2 * v * v) / scale
                    grads[p] += l1 * sign + 2.0 * l2 * v
                finite = finite and all_finite(grads)
            losses[epoch - epoch0] = batch_loss * scale  # overwritten below if all is well
            if not (finite and math.isfinite(batch_loss)):
                return epoch - epoch0, 1
            total += batch_loss
            # the values before this step stay in the data rows until it is accepted;
            # only a stateful optimizer's state needs a copy to roll back to
            stateful = kind != SGD_KIND or hyper[2] != 0.0  # hyper[2]: SGD's momentum
            if stateful:
                copy_matrix(state_backup, state)
            optimizer_update(kind, values, grads, state, hyper, steps[0] + 1)
            if not all_finite(values):
                for p in range(rows.shape[0]):
                    values[p] = shared[rows[p]]
                if stateful:
                    copy_matrix(state, state_backup)
                return epoch - epoch0, 2
            steps[0] += 1
            for p in range(rows.shape[0]):
                shared[rows[p]] = values[p]
        losses[epoch - epoch0] = total / n if mean else total
        # -- validation and early stopping: after the epoch's updates --
        stop[6] = epoch - epoch0 + 1  # epochs completed, readable even after a Ctrl-C
        monitored = losses[epoch - epoch0]
        if val.shape[0]:
            for r in mask_rows:  # every lane holds a validation sample (a partial batch left zeros)
                data[r, :] = 1.0
            val_tape = (val_op, pstart, val_pidx, val_aux, data, grad, shared, shared_grad)
            monitored = validation_loss(val_tape, in_rows, noise_rows, val, val_order, first, end, mean)
            for p in range(values.shape[0]):  # the same penalty the training loss carries
                v = values[p]
                monitored += penalty[0] * abs(v) + penalty[1] * v * v
            val_losses[epoch - epoch0] = monitored
        if stop[0] != 0.0:
            if monitored < stop[3] - stop[2]:
                stop[3] = monitored
                stop[4] = 0.0
                stop[5] = epoch
                if val.shape[0]:
                    copy_vector(best[0], values)
                    for j in range(best_stats.shape[1]):
                        best_stats[0, j] = data[stat_rows[j], 0]
                else:
                    copy_vector(best[0], best[1])
                    copy_vector(best_stats[0], best_stats[1])
            else:
                stop[4] += 1.0
                if stop[4] >= stop[1]:
                    return epoch - epoch0 + 1, 3
    return epoch1 - epoch0, 0


@inline_kernel
def validation_loss(tape, in_rows, noise_rows, val, order, first, end, mean):
    """The loss row ``end - 1`` summed over the samples ``val`` (averaged if ``mean``),
    lanes at a time; noise rows are set to 1.0 (the tape's ``aux`` gives dropout rows rate 0)."""
    op, pstart, pidx, aux, data, grad, shared, shared_grad = tape
    lanes = data.shape[1]
    m = val.shape[0]
    loss_row = end - 1
    total = 0.0
    for c0 in range(0, m, lanes):
        width = min(lanes, m - c0)
        load_lanes(data, in_rows, val, order, c0, width)
        for r in noise_rows:
            data[r, :] = 1.0
        forward(tape, first, end)
        for lane in range(width):
            total += shared[loss_row] if op[loss_row] == LEAF else data[loss_row, lane]
    return total / m if mean else total


@borrowing_kernel
def predict_batch(tape, in_rows, out_rows, first, samples, order, out):
    """Forward every sample of ``samples`` (lanes at a time); outputs into ``out``.
    ``order`` = 0..n-1 (int64[n], from the caller: this kernel allocates nothing)."""
    op, pstart, pidx, aux, data, grad, shared, shared_grad = tape
    n = samples.shape[0]
    lanes = data.shape[1]
    end = first  # (not a constant: forward would be compiled again for a literal 0)
    for r in out_rows:
        end = max(end, r + 1)
    for c0 in range(0, n, lanes):
        width = min(lanes, n - c0)
        load_lanes(data, in_rows, samples, order, c0, width)
        forward(tape, first, end)
        for k in range(out_rows.shape[0]):
            r = out_rows[k]
            leaf = op[r] == LEAF
            for lane in range(width):
                out[c0 + lane, k] = shared[r] if leaf else data[r, lane]


# ---------------------------------------------------------------------------
# Optimizers: one update kernel for every kind (see tinyml/optim.py for the
# layout of ``hyper`` and ``state``); the training loop calls it directly
# ---------------------------------------------------------------------------
@inline_kernel
def _lerp(a, b, w):
    """a + w * (b - a), rounded as PyTorch's ``lerp`` (exact at both ends)."""
    if abs(w) < 0.5:
        return a + w * (b - a)
    return b - (b - a) * (1.0 - w)


@borrowing_kernel
def optimizer_update(kind, values, grads, state, hyper, t):
    """One optimiser step over P parameters, in place.

    Parameters
    ----------
    kind : int
        0 SGD, 1 Adam, 2 AdamW, 3 RMSprop (anything else: no change).
    values : float64[P]
        parameter values, updated in place.
    grads : float64[P]
        their gradients (read only).
    state : float64[P, k]
        the optimiser's running buffers, updated in place (layout: tinyml/optim.py).
    hyper : float64[6]
        hyperparameters (layout: the module doc of tinyml/optim.py).
    t : int
        1-based number of this step (bias corrections; SGD's first momentum step).
    """
    n = values.shape[0]
    lr = hyper[0]
    wd = hyper[1]
    if kind == SGD_KIND:
        momentum = hyper[2]
        dampening = hyper[3]
        nesterov = hyper[4] != 0.0
        for i in range(n):
            g = grads[i]
            if wd != 0.0:
                g = g + wd * values[i]
            if momentum != 0.0:
                if t <= 1:
                    b = g  # the buffer starts as the first gradient, undamped
                else:
                    b = state[i, 0] * momentum + (1.0 - dampening) * g
                state[i, 0] = b
                if nesterov:
                    g = g + momentum * b
                else:
                    g = b
            values[i] = values[i] - lr * g
    elif kind == ADAM_KIND or kind == ADAMW_KIND:
        beta1 = hyper[2]
        beta2 = hyper[3]
        eps = hyper[4]
        amsgrad = hyper[5] != 0.0
        step_size = lr / (1.0 - beta1**t)
        correction2 = math.sqrt(1.0 - beta2**t)
        for i in range(n):
            g = grads[i]
            p = values[i]
            if wd != 0.0:
                if kind == ADAMW_KIND:
                    p = p * (1.0 - lr * wd)  # AdamW: decay the weight itself
                else:
                    g = g + wd * p  # Adam: L2 penalty through the gradient
            m = _lerp(state[i, 0], g, 1.0 - beta1)
            v = state[i, 1] * beta2 + (1.0 - beta2) * g * g
            state[i, 0] = m
            state[i, 1] = v
            if amsgrad:
                if state[i, 2] >= v:  # written so that a NaN v propagates
                    v = state[i, 2]
                state[i, 2] = v
            denom = math.sqrt(v) / correction2 + eps
            values[i] = p - step_size * (m / denom)
    elif kind == RMSPROP_KIND:
        alpha = hyper[2]
        eps = hyper[3]
        momentum = hyper[4]
        centered = hyper[5] != 0.0
        for i in range(n):
            g = grads[i]
            if wd != 0.0:
                g = g + wd * values[i]
            v = state[i, 0] * alpha + (1.0 - alpha) * g * g
            state[i, 0] = v
            if centered:
                a = _lerp(state[i, 1], g, 1.0 - alpha)
                state[i, 1] = a
                v = v - a * a
            avg = math.sqrt(v) + eps
            if momentum > 0.0:
                b = state[i, 2] * momentum + g / avg
                state[i, 2] = b
                values[i] = values[i] - lr * b
            else:
                values[i] = values[i] - lr * (g / avg)


# ---------------------------------------------------------------------------
# Ensembles: lanes are the members (tinyml/ensemble.py builds the tape)
#
# An ensemble tape is one member's training program with one lane per member:
# rows 0..P-1 are the parameters, one value per lane (code MEMBER: below the
# first swept row, so forward never evaluates them, and neither LEAF nor
# INPUT, so backward adds each lane's gradient into grad[p, lane]). The sample
# inputs and targets are INPUT rows, the same sample broadcast to every lane;
# samples are looped inside the kernel, last first within a block of the solo
# fit's lanes, so each member's gradients add up in the order its solo fit
# adds them. A dropout row becomes DIV(x, d) with d the per-lane divisor
# 1 - rate (kept) or inf (dropped), which is the solo DROPOUT row's arithmetic
# with a per-member rate. ``forward`` and ``backward`` do the work, except
# for the squared error and the NEURON rows of per-member parameters, which
# ``member_forward``/``member_backward`` sweep with the same rules in the same
# order of additions (fewer passes over the lanes, no call per row).
# ``train_block`` is a borrowing kernel: it calls them per sample.
# ---------------------------------------------------------------------------
MEMBER = 255  # a per-lane parameter row of an ensemble tape; never in a graph, never swept


def _check_member_code() -> None:
    if any(int(member) == MEMBER for member in Op):
        raise ImportError(f"tinyml.kernels.MEMBER ({MEMBER}) collides with an op code of tinyml.ops")


_check_member_code()


@inline_kernel
def load_members(data, in_rows, samples, s):
    """Broadcast sample ``s`` into the input rows of every lane (member). Inlined: called
    per sample, and a call that takes arrays costs reference counts."""
    lanes = data.shape[1]
    for j in range(in_rows.shape[0]):
        v = samples[s, j]
        r = in_rows[j]
        for lane in range(lanes):
            data[r, lane] = v


@inline_kernel
def member_row(op, pstart, pidx, i):
    """1 if row i is a per-lane squared error (both parents per-lane rows), 2 if it is a
    NEURON whose bias and weights are per-lane (MEMBER) rows, else 0: the two layouts
    that ``member_forward``/``member_backward`` sweep themselves."""
    o = op[i]
    s = pstart[i]
    if o == SQDIFF:
        return 1 if op[pidx[s]] != LEAF and op[pidx[s + 1]] != LEAF else 0
    if o == NEURON:
        n = (pstart[i + 1] - s - 1) // 2
        for k in range(s, s + n + 1):
            if op[pidx[k]] != MEMBER:
                return 0
        for k in range(s + n + 1, pstart[i + 1]):
            if op[pidx[k]] == LEAF:
                return 0
        return 2
    return 0


MEMBER_GENERIC = 0  # a row the generic sweeps (``forward``/``backward``) evaluate
MEMBER_SQDIFF = 1  # a squared error of two per-lane (or INPUT) rows
MEMBER_NEURON = 2  # a NEURON row of per-lane parameters (bias and weights MEMBER rows)


@kernel
def member_kinds(op, pstart, pidx, first, end):
    """int64[end]: ``member_row`` of each row first..end-1, worked out once per kernel
    call rather than per sample (and per row) in the sweeps."""
    kinds = np.zeros(end, np.int64)
    for i in range(first, end):
        kinds[i] = member_row(op, pstart, pidx, i)
    return kinds


@inline_kernel
def member_forward(tape, kinds, lo, hi):
    """``forward`` over rows lo..hi-1 of an ensemble tape, with its squared errors swept here:
    ``forward``'s generic two-parent loop dispatches on the op in every lane, this one
    calls the same rule with the op code fixed. The rows between them go through
    ``forward``, at one call each stretch (a layer's NEURON rows are one run there;
    sweeping them here too saved about 3% and cost 2.4 s of first compile)."""
    op, pstart, pidx, aux, data, grad, shared, shared_grad = tape
    lanes = data.shape[1]
    i = lo
    while i < hi:
        if kinds[i] == MEMBER_SQDIFF:
            a = pidx[pstart[i]]
            b = pidx[pstart[i] + 1]
            c = aux[i]
            for lane in range(lanes):
                data[i, lane] = binary_value(SQDIFF, data[a, lane], data[b, lane], c)
            i += 1
        else:  # rows up to the next squared error, at one call (a layer's NEURON rows run together)
            j = i + 1
            while j < hi and kinds[j] != MEMBER_SQDIFF:
                j += 1
            forward(tape, i, j)
            i = j


@inline_kernel
def member_neuron_grad(act, grad, data, i, b, g):
    """``pre_activation_grad`` of NEURON row i (activation ``act``) into g, and in the same
    pass g added to its bias row b's gradient and row i's own gradient cleared."""
    lanes = data.shape[1]
    if act == TANH:
        for lane in range(lanes):
            z = data[i, lane]
            gl = grad[i, lane] * unary_derivative(np.uint8(TANH), z, z, 0.0)
            g[lane] = gl
            grad[b, lane] += gl
            grad[i, lane] = 0.0
    elif act == SIGMOID:
        for lane in range(lanes):
            z = data[i, lane]
            gl = grad[i, lane] * unary_derivative(np.uint8(SIGMOID), z, z, 0.0)
            g[lane] = gl
            grad[b, lane] += gl
            grad[i, lane] = 0.0
    elif act == RELU:
        for lane in range(lanes):
            z = data[i, lane]
            gl = grad[i, lane] * unary_derivative(np.uint8(RELU), z, z, 0.0)
            g[lane] = gl
            grad[b, lane] += gl
            grad[i, lane] = 0.0
    else:
        for lane in range(lanes):
            gl = grad[i, lane]
            g[lane] = gl
            grad[b, lane] += gl
            grad[i, lane] = 0.0


@inline_kernel
def member_backward(tape, kinds, lo, hi, unmarked, g):
    """``backward`` (every row, clearing) over rows hi-1..lo of an ensemble tape: the
    squared errors and NEURON rows of per-lane parameters swept here, the
    activation's derivative, the bias and the clearing in one pass, then two
    inputs per pass (each input's weight and, unless it is an INPUT, its own
    gradient); the same rules (``binary_backward``,
    ``pre_activation_grad``) and the same order of additions into each row, so
    the results are those of ``backward``. Other rows: ``backward``
    (``unmarked``: its int64[1] mark array, unused with every row swept)."""
    op, pstart, pidx, aux, data, grad, shared, shared_grad = tape
    lanes = data.shape[1]
    i = hi - 1
    while i >= lo:
        if kinds[i] == MEMBER_GENERIC:
            j = i - 1
            while j >= lo and kinds[j] == MEMBER_GENERIC:
                j -= 1
            backward(tape, j + 1, i + 1, unmarked, np.int64(-1), np.bool_(True), g)
            i = j
            continue
        s = pstart[i]
        if kinds[i] == MEMBER_SQDIFF:
            a = pidx[s]
            b = pidx[s + 1]
            c = aux[i]
            to_a = op[a] != INPUT
            to_b = op[b] != INPUT
            for lane in range(lanes):
                da, db = binary_backward(
                    SQDIFF, data[a, lane], data[b, lane], data[i, lane], c, grad[i, lane]
                )
                if to_a:
                    grad[a, lane] += da
                if to_b:
                    grad[b, lane] += db
                grad[i, lane] = 0.0
        else:
            n = (pstart[i + 1] - s - 1) // 2
            member_neuron_grad(aux[i], grad, data, i, pidx[s], g)
            k = 0
            while k < n:
                w = pidx[s + 1 + k]
                x = pidx[s + 1 + n + k]
                if k + 1 < n:  # two inputs in one pass
                    w1 = pidx[s + 2 + k]
                    x1 = pidx[s + 2 + n + k]
                    if op[x] == INPUT and op[x1] == INPUT:
                        for lane in range(lanes):
                            gl = g[lane]
                            grad[w, lane] += gl * data[x, lane]
                            grad[w1, lane] += gl * data[x1, lane]
                        k += 2
                        continue
                    if op[x] != INPUT and op[x1] != INPUT:
                        for lane in range(lanes):
                            gl = g[lane]
                            grad[w, lane] += gl * data[x, lane]
                            grad[x, lane] += gl * data[w, lane]
                            grad[w1, lane] += gl * data[x1, lane]
                            grad[x1, lane] += gl * data[w1, lane]
                        k += 2
                        continue
                if op[x] == INPUT:
                    for lane in range(lanes):
                        grad[w, lane] += g[lane] * data[x, lane]
                else:
                    for lane in range(lanes):
                        gl = g[lane]
                        grad[w, lane] += gl * data[x, lane]
                        grad[x, lane] += gl * data[w, lane]
                k += 1
        i -= 1


@inline_kernel
def any_nan(x):
    """True if float64[n] ``x`` holds a NaN: one sum (a NaN makes it NaN), which vectorises."""
    acc = 0.0
    for v in x:
        acc += v
    return acc != acc


MEMBER_BLOCK = 256  # lanes swept together: a block's rows stay in cache (128 to 512 within 3% on XOR)


@kernel
def train_members(tape, feed, members, opt, run, epoch0, epoch1, losses):
    """Train every member (lane) for epochs ``epoch0..epoch1-1``; returns epochs completed.

    ``tape``    (op, pstart, pidx, aux, data, grad, shared, shared_grad) of an ensemble
                tape (see above) with M lanes; rows 0..P-1 of ``data`` hold the members'
                parameters, in and out (the other rows are not used: the members are
                swept in blocks of MEMBER_BLOCK lanes, each block through all the epochs)
    ``feed``    (in_rows int64[k], samples float64[n, k], order int64[n], noise_rows int64[d]:
                the dropout divisors' rows, rates float64[M]: each member's dropout rate)
    ``members`` (penalty float64[2, M]: l1, l2 per member; status int64[M]: 0 training,
                1 stopped by a non-finite loss or gradient, 2 by an update that would make
                a parameter non-finite; fail int64[M, 2]: the failing epoch and the step
                count when stopped; fail_loss float64[M]; steps int64[1], the optimizer
                steps taken so far by the members still training)
    ``opt``     (kind, state float64[P * M, s] (row p * M + lane), hyper float64[G, h]
                one row per group of lanes, group_start int64[G + 1]: lanes of group g are
                group_start[g]..group_start[g + 1] - 1)
    ``run``     int64[8]: loss row, first non-leaf row, batch size, mean (1) or sum (0),
                shuffle seed (-1: keep order), dropout noise seed, the lanes of the solo
                fit (min(64, batch): its blocks of samples and dropout draws), whether any
                penalty is non-zero
    ``losses``  float64[epoch1 - epoch0, M]: each member's epoch loss; NaN once stopped

    A member that fails keeps the parameters and optimizer state from before the
    failing step; the others go on. A block returns early when all its members
    have stopped.
    """
    op, pstart, pidx, aux, data, grad, shared, shared_grad = tape
    order = feed[2]
    steps = members[4]
    state = opt[1]
    lanes = data.shape[1]
    n_params = 0
    while n_params < op.shape[0] and op[n_params] == MEMBER:
        n_params += 1
    rows = op.shape[0]
    columns = state.shape[1]
    n_noise = feed[3].shape[0]
    solo_lanes = run[6]
    kinds = member_kinds(op, pstart, pidx, run[1], run[0] + 1)
    start_order = order.copy()
    end_order = order.copy()
    start_step = steps[0]
    end_step = start_step
    done = 0
    for m0 in range(0, lanes, MEMBER_BLOCK):
        width = min(MEMBER_BLOCK, lanes - m0)
        flat = np.zeros(rows * width)
        flat_grad = np.zeros(rows * width)
        block = np.empty((n_params * width, columns))
        for p in range(n_params):
            for lane in range(width):
                flat[p * width + lane] = data[p, m0 + lane]
                for c in range(columns):
                    block[p * width + lane, c] = state[p * lanes + m0 + lane, c]
        for k in range(order.shape[0]):
            order[k] = start_order[k]
        steps[0] = start_step
        sweep = (op, pstart, pidx, aux, flat.reshape((rows, width)), flat_grad.reshape((rows, width)))
        # train_block's scratch (it allocates nothing): rows 0..P-1 of data and grad as flat
        # (p * width + lane) arrays for the optimizer, the backups, the solo fit's dropout draws
        # of one block of samples, the per-sample losses (summed in sample order), per-lane sums
        work = (
            flat[: n_params * width],
            flat_grad[: n_params * width],
            np.empty((n_params, width)),
            np.empty_like(block),
            np.zeros((n_noise, solo_lanes)),
            np.arange(n_noise),
            np.zeros((solo_lanes, width)),
            np.zeros(1, np.int64),
            kinds,
            np.empty(width),
            np.zeros(width),
            np.zeros(width),
            np.empty(width, np.bool_),  # plain SGD: the lanes still training
            np.zeros(width),  # 0 while a lane's numbers are finite, NaN (x * 0) once one is not
            np.zeros(width),  # each lane's learning rate (plain SGD)
        )
        d = train_block(
            sweep, shared, shared_grad, feed, members, opt, block, run, m0, epoch0, epoch1, losses, work
        )
        for p in range(n_params):
            for lane in range(width):
                data[p, m0 + lane] = flat[p * width + lane]
                for c in range(columns):
                    state[p * lanes + m0 + lane, c] = block[p * width + lane, c]
        if d >= done:
            done = d
            end_step = steps[0]
            for k in range(order.shape[0]):
                end_order[k] = order[k]
    for k in range(order.shape[0]):
        order[k] = end_order[k]
    steps[0] = end_step
    return done


@borrowing_kernel
def train_block(sweep, shared, shared_grad, feed, members, opt, state, run, m0, epoch0, epoch1, losses, work):
    """``train_members`` for the lanes m0.. of one block: ``sweep`` (op, pstart, pidx,
    aux, data, grad) with one lane per member of the block, ``state`` the block's
    optimizer state (row p * width + lane), ``work`` the scratch arrays ``train_members``
    allocates for it. Per-member arrays are indexed m0 + lane. A borrowing kernel (see
    ``borrowing_kernel``): it calls ``forward``/``backward`` once per sample, and with
    reference counting on, each call bracketed some thirty arrays with atomic counts."""
    op, pstart, pidx, aux, data, grad = sweep
    tape = (op, pstart, pidx, aux, data, grad, shared, shared_grad)
    in_rows, samples, order, noise_rows, rates = feed
    penalty, status, fail, fail_loss, steps = members
    kind, all_state, hyper, group_start = opt
    loss_row = run[0]
    first = run[1]
    batch = run[2]
    mean = run[3] == 1
    seed = run[4]
    noise_seed = run[5]
    solo_lanes = run[6]
    penalised = run[7] == 1
    n = samples.shape[0]
    lanes = data.shape[1]
    n_params = state.shape[0] // lanes
    values, grads, backup, state_backup, draws, draw_rows, sample_loss, unmarked, kinds = work[:9]
    scratch, batch_loss, total, go, bad, rate = work[9:]
    end = loss_row + 1
    n_noise = noise_rows.shape[0]
    for lane in range(lanes):
        go[lane] = status[m0 + lane] == 0
    stateful = kind != SGD_KIND
    for g in range(hyper.shape[0]):
        stateful = stateful or hyper[g, 2] != 0.0  # SGD's momentum
    # plain SGD (no weight decay, no momentum in any group): each lane's rate, for one update loop
    plain = kind == SGD_KIND
    for g in range(hyper.shape[0]):
        plain = plain and hyper[g, 1] == 0.0 and hyper[g, 2] == 0.0
        for lane in range(max(group_start[g] - m0, 0), min(group_start[g + 1] - m0, lanes)):
            rate[lane] = hyper[g, 0]
    for r in range(grad.shape[0]):
        for lane in range(lanes):
            grad[r, lane] = 0.0
    for r in range(shared_grad.shape[0]):
        shared_grad[r] = 0.0
    for epoch in range(epoch0, epoch1):
        live = 0
        for lane in range(lanes):
            live += status[m0 + lane] == 0
        if live == 0:
            return epoch - epoch0
        stopped = lanes - live
        if seed >= 0:
            shuffle(order, seed, epoch)
        for lane in range(lanes):
            total[lane] = 0.0
        for b0 in range(0, n, batch):
            m = min(batch, n - b0)
            scale = 1.0 / m if mean else 1.0
            for lane in range(lanes):
                batch_loss[lane] = 0.0
            for c0 in range(b0, b0 + m, solo_lanes):
                width = min(solo_lanes, b0 + m - c0)
                if n_noise:
                    fill_noise(draws, draw_rows, noise_seed, steps[0], c0)
                for q in range(width - 1, -1, -1):
                    load_members(data, in_rows, samples, order[c0 + q])
                    for j in range(n_noise):
                        u = draws[j, q]
                        r = noise_rows[j]
                        for lane in range(lanes):
                            p = rates[m0 + lane]
                            data[r, lane] = (1.0 - p) if u >= p else math.inf
                    member_forward(tape, kinds, first, end)
                    for lane in range(lanes):
                        sample_loss[q, lane] = data[loss_row, lane]
                        grad[loss_row, lane] = scale
                    member_backward(tape, kinds, first, end, unmarked, scratch)
                for q in range(width):
                    for lane in range(lanes):
                        batch_loss[lane] += sample_loss[q, lane]
            # the penalties and checks of train_epochs, per lane
            # (loops over data[p, lane] and grad[p, lane], rows 0..P-1: contiguous, they vectorise)
            if penalised:
                for p in range(n_params):
                    for lane in range(lanes):
                        v = data[p, lane]
                        l1 = penalty[0, m0 + lane]
                        l2 = penalty[1, m0 + lane]
                        sign = 1.0 if v > 0.0 else (-1.0 if v < 0.0 else 0.0)
                        batch_loss[lane] += (l1 * abs(v) + l2 * v * v) / scale
                        grad[p, lane] += l1 * sign + 2.0 * l2 * v
            if plain:
                # optimizer_update's plain SGD step, p - lr * g with each lane's own rate, in two
                # passes that store little: the checks (NaN in bad: a gradient or a stepped
                # value is not finite), then the step where the lane goes on; a stopped lane
                # keeps its values, so nothing is backed up
                for lane in range(lanes):
                    bad[lane] = batch_loss[lane] * 0.0
                    total[lane] += batch_loss[lane]
                for p in range(n_params):
                    for lane in range(lanes):
                        gp = grad[p, lane]
                        bad[lane] += gp * 0.0 + (data[p, lane] - rate[lane] * gp) * 0.0
                if any_nan(bad):
                    for lane in range(lanes):
                        i = m0 + lane
                        if status[i] == 0 and bad[lane] != 0.0:
                            bad_grad = batch_loss[lane] * 0.0
                            for p in range(n_params):
                                bad_grad += grad[p, lane] * 0.0
                            status[i] = 1 if bad_grad != 0.0 else 2
                            fail[i, 0] = epoch
                            fail[i, 1] = steps[0]
                            fail_loss[i] = batch_loss[lane] * scale
                            stopped += 1
                            go[lane] = False
                for p in range(n_params):
                    for lane in range(lanes):
                        v = data[p, lane]
                        stepped = v - rate[lane] * grad[p, lane]
                        data[p, lane] = stepped if go[lane] else v
                        grad[p, lane] = 0.0
            else:
                for lane in range(lanes):
                    bad[lane] = batch_loss[lane] * 0.0
                    total[lane] += batch_loss[lane]
                for p in range(n_params):
                    for lane in range(lanes):
                        backup[p, lane] = data[p, lane]
                        bad[lane] += grad[p, lane] * 0.0
                if any_nan(bad):
                    for lane in range(lanes):
                        i = m0 + lane
                        if status[i] == 0 and bad[lane] != 0.0:
                            status[i] = 1
                            fail[i, 0] = epoch
                            fail[i, 1] = steps[0]
                            fail_loss[i] = batch_loss[lane] * scale
                            stopped += 1
                if stateful:
                    copy_matrix(state_backup, state)
                for g in range(hyper.shape[0]):
                    lo = max(group_start[g] - m0, 0)
                    hi = min(group_start[g + 1] - m0, lanes)
                    if lo == 0 and hi == lanes:  # the whole block: one call
                        optimizer_update(kind, values, grads, state, hyper[g], steps[0] + 1)
                    elif lo < hi:
                        for p in range(n_params):
                            a = p * lanes + lo
                            b = p * lanes + hi
                            optimizer_update(
                                kind, values[a:b], grads[a:b], state[a:b], hyper[g], steps[0] + 1
                            )
                for lane in range(lanes):
                    bad[lane] = 0.0
                for p in range(n_params):
                    for lane in range(lanes):
                        bad[lane] += data[p, lane] * 0.0
                        grad[p, lane] = 0.0
                if any_nan(bad):
                    for lane in range(lanes):
                        i = m0 + lane
                        if status[i] == 0 and bad[lane] != 0.0:
                            status[i] = 2
                            fail[i, 0] = epoch
                            fail[i, 1] = steps[0]
                            fail_loss[i] = batch_loss[lane] * scale
                            stopped += 1
            if stopped and not plain:
                for lane in range(lanes):
                    if status[m0 + lane] != 0:  # stopped: back to the values from before this step
                        for p in range(n_params):
                            data[p, lane] = backup[p, lane]
                            if stateful:
                                k = p * lanes + lane
                                for c in range(state.shape[1]):
                                    state[k, c] = state_backup[k, c]
            steps[0] += 1
            for r in range(shared_grad.shape[0]):
                shared_grad[r] = 0.0
        for lane in range(lanes):
            v = total[lane] / n if mean else total[lane]
            losses[epoch - epoch0, m0 + lane] = v if status[m0 + lane] == 0 else math.nan
    return epoch1 - epoch0


@kernel
def predict_members(tape, in_rows, out_rows, first, samples, out):
    """Forward every sample for every member: ``out`` float64[M, n, len(out_rows)]."""
    op, pstart, pidx, aux, data, grad, shared, shared_grad = tape
    lanes = data.shape[1]
    end = 0
    for r in out_rows:
        end = max(end, r + 1)
    for s in range(samples.shape[0]):
        load_members(data, in_rows, samples, s)
        forward(tape, first, end)
        for k in range(out_rows.shape[0]):
            r = out_rows[k]
            for lane in range(lanes):
                out[lane, s, k] = data[r, lane]
