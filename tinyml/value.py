"""``Value``: a scalar in the tape, with micrograd's operators and methods.

A Value is only a handle ``(graph, row)``; its number lives in
``graph.data[row]``. Operators append rows; nothing is computed until a value
or gradient is needed (then one kernel call evaluates every pending row).

An operator is the first cost a micrograd user measures, so its path is
short: the operator method itself (made by ``_arithmetic`` or ``_unary``)
checks the operands, writes the row through the graph's memoryviews and
makes the handle, with no further Python call except every few hundred rows
(``Graph._make_room``). Constants are folded into the row (``x + 1`` is one
ADD_C row with aux 1, no leaf for 1).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable

import numpy as np

from .graph import Graph, _state, current_graph
from .ops import Op

_LEAF = int(Op.LEAF)
# plain ints: a memoryview takes them quicker than IntEnum members
_ADD, _SUB, _MUL, _DIV, _POW = int(Op.ADD), int(Op.SUB), int(Op.MUL), int(Op.DIV), int(Op.POW)
_ADD_C, _MUL_C, _DIV_C, _POW_C = int(Op.ADD_C), int(Op.MUL_C), int(Op.DIV_C), int(Op.POW_C)
_RSUB_C, _RDIV_C = int(Op.RSUB_C), int(Op.RDIV_C)
_NEG, _RELU, _ABS = int(Op.NEG), int(Op.RELU), int(Op.ABS)


def _operand(x: object) -> float | None:
    """``x`` as a float if it is a real number, else None (the operator then
    returns NotImplemented, so Python tries the other operand, e.g. a Tensor,
    and raises TypeError if neither knows the pair)."""
    t = type(x)
    if t is float or t is int:
        return float(x)
    if isinstance(x, numbers.Real) and not isinstance(x, np.timedelta64):  # see real_dtype
        return float(x)
    return None


def _number(x: object, what: str) -> float:
    """``x`` as a float if it is a real number, else a TypeError saying so."""
    c = _operand(x)
    if c is None:
        raise TypeError(f"{what}: expected a Value or a real number, got {type(x).__name__} {x!r:.60}")
    return c


def real_dtype(dtype: np.dtype) -> bool:
    """Whether an array of ``dtype`` holds real numbers: bool, integer or floating.

    Not timedelta64 (which NumPy counts as an integer type) nor datetime64: their
    numbers are ticks of a unit, so seconds and milliseconds would differ 1000x.
    """
    return dtype.kind in "biuf"


def real_array(a: object, what: str) -> np.ndarray:
    """``a`` (an array or nested lists of real numbers) as a float64 ndarray, or a
    clear TypeError/ValueError. NumPy itself would turn a complex number into
    its real part (with a mere warning) and None into NaN: both are refused."""
    try:
        arr = np.asarray(a)
    except ValueError as e:  # ragged nesting
        raise ValueError(f"{what}: expected an array of numbers ({e})") from None
    if arr.dtype == object:
        for x in arr.flat:
            if type(x) is Value or not isinstance(x, numbers.Real) or isinstance(x, np.timedelta64):
                raise TypeError(f"{what}: expected real numbers, found {type(x).__name__} {x!r:.40}")
        return arr.astype(np.float64)
    if not real_dtype(arr.dtype):
        raise TypeError(f"{what}: expected real numbers, got an array of dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def wrap(graph: Graph, row: int) -> Value:
    """A new handle on ``row``, registered so compaction keeps and renumbers it."""
    v = _new(Value)
    v._graph = graph
    v._row = row
    handles = graph._handles
    handles.append(v)
    if len(handles) > graph._handle_limit:  # handles made without rows (copies): no compaction comes
        graph._prune()
    return v


_new = object.__new__  # a handle without __init__: its two slots are set by the caller


def _stale(v: Value) -> RuntimeError:
    return RuntimeError(
        "this Value refers to a row that was freed (its graph was cleared or rewound); "
        "rebuild the expression before using it"
    )


def _two_graphs() -> ValueError:
    return ValueError(
        "Values from two different graphs cannot be combined; "
        "build them inside the same `with tm.Graph():` block"
    )


def same_graph(values: Iterable[Value]) -> Graph:
    """The one graph all ``values`` belong to, or a ValueError; also rejects freed handles."""
    graph = None
    for v in values:
        if v._row < 0:
            raise _stale(v)
        if graph is None:
            graph = v._graph
        elif v._graph is not graph:
            raise _two_graphs()
    return graph if graph is not None else current_graph()


def _operands_error(a: Value, b: Value) -> Exception:
    """The error for ``a <op> b`` when they are not two live handles of one graph."""
    if a._row < 0 or b._row < 0:
        return _stale(a if a._row < 0 else b)
    return _two_graphs()


# The operators are made by the two factories below, so that each kind of append
# (two parent rows; one parent row and a constant; one parent row) is written once
# and still runs inside the operator method itself, with no further Python call:
# at micrograd's scale an operator is a few hundred ns, and a call is 50 of them.
# (The rarer ops that take a parameter, such as leaky_relu, go through Graph.push.)
# Each append writes the free row ``n`` and the entries from ``pstart[n]``, then
# publishes the row by setting ``g.n`` in one statement with no call in it (see
# "Interrupt safety" in graph.py); an interrupt before that puts the row back to
# its free state. Every ``_PRUNE_EVERY`` rows, and when the tape is full, ``n``
# reaches ``g._limit`` and ``Graph._make_room`` runs first (it may compact: rows
# move, so they are read after it). Parent entries can run out before rows do (an
# n-ary row takes many): the memoryview write then raises IndexError before
# anything is published, and the operator makes room and starts again.
def _arithmetic(op: int, op_c: int, name: str, negate: bool = False, reflected: bool = False):
    """The operator method ``name``: a row ``op`` over two Values, or a row ``op_c``
    over this Value with the constant ``other`` (``-other`` if ``negate``) in aux;
    ``reflected``: ``other`` is the left operand."""

    def method(self, other):
        g = self._graph
        n = g.n
        if n >= g._limit:
            g._make_room()  # may compact: rows move
            n = g.n
        t = type(other)
        if t is Value:
            ra = self._row
            rb = other._row
            if other._graph is not g or ra < 0 or rb < 0:
                raise _operands_error(self, other)
            if reflected:
                ra, rb = rb, ra
            ps = g._pstart_mv
            s = ps[n]
            try:
                pidx = g._pidx_mv
                pidx[s] = ra
                pidx[s + 1] = rb
                ps[n + 1] = s + 2
                g._op_mv[n] = op
                g.n = n + 1  # publish
            except IndexError:  # parent entries full; nothing written to row n
                g.reserve(1, 2)
                return method(self, other)
            except BaseException:  # before publishing: row n back to free (no call here)
                g._op_mv[n] = _LEAF
                raise
        else:
            if t is float or t is int:  # the memoryview converts an int
                c = other
            else:
                c = _operand(other)
                if c is None:
                    return NotImplemented
            if negate:
                c = -c
            r = self._row
            if r < 0:
                raise _stale(self)
            ps = g._pstart_mv
            s = ps[n]
            try:
                g._pidx_mv[s] = r
                ps[n + 1] = s + 1
                g._aux_mv[n] = c
                g._op_mv[n] = op_c
                g.n = n + 1  # publish
            except IndexError:  # parent entries full; nothing written to row n
                g.reserve(1, 1)
                return method(self, other)
            except BaseException:  # before publishing: row n back to free (no call here)
                g._op_mv[n] = _LEAF
                g._aux_mv[n] = 0.0
                raise
        v = _new(Value)
        v._graph = g
        v._row = n
        g._handles.append(v)
        return v

    method.__name__, method.__qualname__ = name, f"Value.{name}"
    return method


def _unary(op: int, name: str):
    """The method ``name``: a row ``op`` over this Value (no constant)."""

    def method(self):
        g = self._graph
        n = g.n
        if n >= g._limit:
            g._make_room()  # may compact: rows move
            n = g.n
        r = self._row
        if r < 0:
            raise _stale(self)
        ps = g._pstart_mv
        s = ps[n]
        try:
            g._pidx_mv[s] = r
            ps[n + 1] = s + 1
            g._op_mv[n] = op
            g.n = n + 1  # publish
        except IndexError:  # parent entries full; nothing written to row n
            g.reserve(1, 1)
            return method(self)
        except BaseException:  # before publishing: row n back to free (no call here)
            g._op_mv[n] = _LEAF
            raise
        v = _new(Value)
        v._graph = g
        v._row = n
        g._handles.append(v)
        return v

    method.__name__, method.__qualname__ = name, f"Value.{name}"
    return method


def _unary_with(op: int, a: Value, aux: float) -> Value:
    """A row ``op`` over ``a`` with the constant ``aux`` (the ops that take a parameter)."""
    if a._row < 0:
        raise _stale(a)
    g = a._graph
    g.reserve(1, 1)
    return wrap(g, g.push(op, (a._row,), aux))


class Value:
    """A scalar node of the autograd graph.

    ``Value(2.0)`` makes a leaf (ints and numpy scalars are stored as float64).
    ``.data`` is readable everywhere and writable on leaves; ``.grad`` holds the
    gradient from ``backward()``: leaves accumulate it across calls until
    zeroed (as PyTorch does); interior nodes hold that of the latest backward
    pass that reached them.
    """

    __slots__ = ("_graph", "_row", "__weakref__")  # __weakref__: for users' own weak references
    __array_ufunc__ = None  # make numpy scalars defer to our reflected operators

    def __init__(self, data: float, graph: Graph | None = None) -> None:
        if type(data) is not float:
            data = _number(data, "Value(data)")
        if graph is None:
            g = _state.graph
        elif isinstance(graph, Graph):
            g = graph
        else:
            raise TypeError(f"Value(graph=...): expected a tm.Graph, got {type(graph).__name__}")
        n = g.n
        if n >= g._limit:
            g._make_room()
            n = g.n
        # Graph.push_leaf, inline: a free row's data is never read, so only the
        # counters need publishing (one statement, no call in it)
        g._data_mv[n] = data
        ps = g._pstart_mv
        ps[n + 1] = ps[n]
        if g.n_eval == n:  # a leaf needs no evaluation
            g.n, g.n_eval = n + 1, n + 1  # publish
        else:
            g.n = n + 1  # publish
        self._graph = g
        self._row = n
        g._handles.append(self)

    def __reduce__(self):
        # copy.copy, copy.deepcopy and pickle: a new handle, registered with its
        # graph (the copied graph, for a deep copy), so compaction keeps its row
        return (wrap, (self._graph, self._row))

    # -- data and gradient -------------------------------------------------
    @property
    def data(self) -> float:
        g = self._graph
        r = self._row
        if r < 0:
            raise _stale(self)
        if r >= g.n_eval:
            g.evaluate()
        return g._data_mv[r]

    @data.setter
    def data(self, value: float) -> None:
        g = self._graph
        if self._row < 0:
            raise _stale(self)
        if g.op[self._row] != _LEAF:
            raise AttributeError("data can be set only on leaf Values (created with Value(...))")
        v = _number(value, "Value.data")
        g.evaluate()  # rows built from the old value keep it, as in micrograd
        g.data[self._row] = v

    @property
    def grad(self) -> float:
        r = self._row
        if r < 0:
            raise _stale(self)
        return self._graph._grad_mv[r]

    @property
    def graph(self) -> Graph:
        return self._graph

    @property
    def is_leaf(self) -> bool:
        return self._row >= 0 and self._graph.op[self._row] == _LEAF

    def item(self) -> float:
        return self.data

    def __float__(self) -> float:
        return self.data

    def zero_grad(self) -> None:
        """Set this Value's gradient to 0."""
        if self._row < 0:
            raise _stale(self)
        self._graph.grad[self._row] = 0.0

    def backward(self) -> None:
        """Reverse-mode autodiff: add d(self)/d(leaf) into every leaf's ``grad``."""
        if self._row < 0:
            raise _stale(self)
        self._graph.backward(self._row)

    def __repr__(self) -> str:
        if self._row < 0:
            return "Value(<freed>)"
        return f"Value(data={self.data!r}, grad={self.grad!r})"

    # -- arithmetic ----------------------------------------------------------
    # A Value operand gives a two-parent row; a real number goes into the row's aux
    # (``x - c`` is ``x + (-c)``); anything else gives NotImplemented, so Python
    # tries the other operand (a Tensor, say) and raises TypeError if neither knows it.
    __add__ = _arithmetic(_ADD, _ADD_C, "__add__")
    __radd__ = _arithmetic(_ADD, _ADD_C, "__radd__", reflected=True)
    __sub__ = _arithmetic(_SUB, _ADD_C, "__sub__", negate=True)
    __rsub__ = _arithmetic(_SUB, _RSUB_C, "__rsub__", reflected=True)
    __mul__ = _arithmetic(_MUL, _MUL_C, "__mul__")
    __rmul__ = _arithmetic(_MUL, _MUL_C, "__rmul__", reflected=True)
    __truediv__ = _arithmetic(_DIV, _DIV_C, "__truediv__")
    __rtruediv__ = _arithmetic(_DIV, _RDIV_C, "__rtruediv__", reflected=True)
    __pow__ = _arithmetic(_POW, _POW_C, "__pow__")

    def __rpow__(self, other: float) -> Value:
        c = _operand(other)
        return NotImplemented if c is None else Value(c, self._graph) ** self  # c ** x: a leaf for c

    __neg__ = _unary(_NEG, "__neg__")

    def __pos__(self) -> Value:
        return self

    __abs__ = _unary(_ABS, "__abs__")

    # Seed-style names (the Rust original's API): Value.add(a, b) etc.
    def add(self, other: Value | float) -> Value:
        return self + other

    def sub(self, other: Value | float) -> Value:
        return self - other

    def mul(self, other: Value | float) -> Value:
        return self * other

    def div(self, other: Value | float) -> Value:
        return self / other

    def pow(self, exponent: Value | float) -> Value:
        return self**exponent

    def neg(self) -> Value:
        return -self

    # -- activations and elementary functions ---------------------------------
    relu = _unary(_RELU, "relu")
    tanh = _unary(int(Op.TANH), "tanh")
    sigmoid = _unary(int(Op.SIGMOID), "sigmoid")
    sigm = sigmoid  # the Rust original's name
    exp = _unary(int(Op.EXP), "exp")
    log = _unary(int(Op.LOG), "log")
    log.__doc__ = "Natural log; log(0) = -inf and log(x < 0) = nan, as IEEE and PyTorch."

    def leaky_relu(self, negative_slope: float = 0.01) -> Value:
        return _unary_with(int(Op.LEAKY_RELU), self, _number(negative_slope, "leaky_relu slope"))

    def gelu(self, approximate: str = "none") -> Value:
        """GELU; ``approximate="none"`` is the exact erf form, ``"tanh"`` the approximation."""
        if approximate == "none":
            return _gelu_erf(self)
        if approximate == "tanh":
            return _gelu_tanh(self)
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")

    silu = _unary(int(Op.SILU), "silu")
    swish = silu
    softplus = _unary(int(Op.SOFTPLUS), "softplus")
    softplus.__doc__ = "log(1 + exp(x)), finite for large |x|."
    abs = _unary(_ABS, "abs")
    sqrt = _unary(int(Op.SQRT), "sqrt")


_gelu_erf = _unary(int(Op.GELU_ERF), "gelu")
_gelu_tanh = _unary(int(Op.GELU_TANH), "gelu")
