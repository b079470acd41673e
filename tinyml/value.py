"""``Value``: a scalar in the tape, with micrograd's operators and methods.

A Value is only a handle ``(graph, row)``; its number lives in
``graph.data[row]``. Operators append rows; nothing is computed until a value
or gradient is needed (then one kernel call evaluates every pending row).

An operator is the first cost a micrograd user measures, so its path is
short: the operator method, then ``_unary`` or ``_binary``, which check
the operands, write the row through the graph's memoryviews and make the
handle, with no further Python call unless the tape is full. Constants are
folded into the row (``x + 1`` is one ADD_C row with aux 1, no leaf for 1).
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


# The appends below keep the tape's interrupt safety (see "Interrupt safety" in
# graph.py): they write the free row and entries beyond ``n``/``entries``, then
# publish both counters in one statement with no call in it; a KeyboardInterrupt
# before that puts the row back to its free state. A handle is made only after.
def _unary(op: int, a: Value, aux: float | int = 0.0) -> Value:
    """Append the row ``op(a)`` (constant ``aux``) and return its handle."""
    g = a._graph
    ra = a._row
    if ra < 0:
        raise _stale(a)
    n = g.n
    s = g.entries
    if n >= g._rows_cap or s >= g._entries_cap:
        g.reserve(1, 1)  # may compact: rows move
        n, s, ra = g.n, g.entries, a._row
    try:
        g._pidx_mv[s] = ra
        g._pstart_mv[n + 1] = s + 1
        g._op_mv[n] = op
        if aux:
            g._aux_mv[n] = aux
        g.entries, g.n = s + 1, n + 1  # publish
    except BaseException:  # before publishing: row n back to free (no call here)
        g._op_mv[n] = _LEAF
        g._aux_mv[n] = 0.0
        raise
    v = _new(Value)
    v._graph = g
    v._row = n
    g._handles.append(v)
    return v


def _binary(op: int, a: Value, b: Value) -> Value:
    """Append the row ``op(a, b)`` and return its handle."""
    g = a._graph
    if b._graph is not g:
        same_graph((a, b))  # raises
    ra = a._row
    rb = b._row
    if ra < 0 or rb < 0:
        raise _stale(a if ra < 0 else b)
    n = g.n
    s = g.entries
    if n >= g._rows_cap or s + 2 > g._entries_cap:
        g.reserve(1, 2)  # may compact: rows move
        n, s, ra, rb = g.n, g.entries, a._row, b._row
    try:
        pidx = g._pidx_mv
        pidx[s] = ra
        pidx[s + 1] = rb
        g._pstart_mv[n + 1] = s + 2
        g._op_mv[n] = op
        g.entries, g.n = s + 2, n + 1  # publish
    except BaseException:  # before publishing: row n back to free (no call here)
        g._op_mv[n] = _LEAF
        raise
    v = _new(Value)
    v._graph = g
    v._row = n
    g._handles.append(v)
    return v


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
        if n >= g._rows_cap:
            g.reserve(1, 0)
            n = g.n
        # Graph.push_leaf, inline: a free row's data is never read, so only the
        # counters need publishing (one statement, no call in it)
        g._data_mv[n] = data
        g._pstart_mv[n + 1] = g.entries
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
    # A float or int constant goes straight into the row's aux (the memoryview
    # converts an int); any other real number through _operand; anything else
    # gives NotImplemented, so Python tries the other operand.
    def __add__(self, other: Value | float) -> Value:
        t = type(other)
        if t is Value:
            return _binary(_ADD, self, other)
        if t is float or t is int:
            return _unary(_ADD_C, self, other)
        c = _operand(other)
        return NotImplemented if c is None else _unary(_ADD_C, self, c)

    def __radd__(self, other: float) -> Value:
        t = type(other)
        if t is float or t is int:
            return _unary(_ADD_C, self, other)
        c = _operand(other)
        return NotImplemented if c is None else _unary(_ADD_C, self, c)

    def __sub__(self, other: Value | float) -> Value:
        t = type(other)
        if t is Value:
            return _binary(_SUB, self, other)
        if t is float or t is int:
            return _unary(_ADD_C, self, -other)  # x - c == x + (-c)
        c = _operand(other)
        return NotImplemented if c is None else _unary(_ADD_C, self, -c)

    def __rsub__(self, other: float) -> Value:
        t = type(other)
        if t is float or t is int:
            return _unary(_RSUB_C, self, other)
        c = _operand(other)
        return NotImplemented if c is None else _unary(_RSUB_C, self, c)

    def __mul__(self, other: Value | float) -> Value:
        t = type(other)
        if t is Value:
            return _binary(_MUL, self, other)
        if t is float or t is int:
            return _unary(_MUL_C, self, other)
        c = _operand(other)
        return NotImplemented if c is None else _unary(_MUL_C, self, c)

    def __rmul__(self, other: float) -> Value:
        t = type(other)
        if t is float or t is int:
            return _unary(_MUL_C, self, other)
        c = _operand(other)
        return NotImplemented if c is None else _unary(_MUL_C, self, c)

    def __truediv__(self, other: Value | float) -> Value:
        t = type(other)
        if t is Value:
            return _binary(_DIV, self, other)
        if t is float or t is int:
            return _unary(_DIV_C, self, other)
        c = _operand(other)
        return NotImplemented if c is None else _unary(_DIV_C, self, c)

    def __rtruediv__(self, other: float) -> Value:
        t = type(other)
        if t is float or t is int:
            return _unary(_RDIV_C, self, other)
        c = _operand(other)
        return NotImplemented if c is None else _unary(_RDIV_C, self, c)

    def __pow__(self, other: Value | float) -> Value:
        t = type(other)
        if t is Value:
            return _binary(_POW, self, other)
        if t is float or t is int:
            return _unary(_POW_C, self, other)
        c = _operand(other)
        return NotImplemented if c is None else _unary(_POW_C, self, c)

    def __rpow__(self, other: float) -> Value:
        c = _operand(other)
        return NotImplemented if c is None else _binary(_POW, Value(c, self._graph), self)

    def __neg__(self) -> Value:
        return _unary(_NEG, self)

    def __pos__(self) -> Value:
        return self

    def __abs__(self) -> Value:
        return _unary(_ABS, self)

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
    def relu(self) -> Value:
        return _unary(_RELU, self)

    def tanh(self) -> Value:
        return _unary(Op.TANH, self)

    def sigmoid(self) -> Value:
        return _unary(Op.SIGMOID, self)

    sigm = sigmoid  # the Rust original's name

    def exp(self) -> Value:
        return _unary(Op.EXP, self)

    def log(self) -> Value:
        """Natural log; log(0) = -inf and log(x < 0) = nan, as IEEE and PyTorch."""
        return _unary(Op.LOG, self)

    def leaky_relu(self, negative_slope: float = 0.01) -> Value:
        return _unary(Op.LEAKY_RELU, self, _number(negative_slope, "leaky_relu slope"))

    def gelu(self, approximate: str = "none") -> Value:
        """GELU; ``approximate="none"`` is the exact erf form, ``"tanh"`` the approximation."""
        if approximate == "none":
            return _unary(Op.GELU_ERF, self)
        if approximate == "tanh":
            return _unary(Op.GELU_TANH, self)
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")

    def silu(self) -> Value:
        return _unary(Op.SILU, self)

    swish = silu

    def softplus(self) -> Value:
        """log(1 + exp(x)), finite for large |x|."""
        return _unary(Op.SOFTPLUS, self)

    def abs(self) -> Value:
        return _unary(Op.ABS, self)

    def sqrt(self) -> Value:
        return _unary(Op.SQRT, self, 0.0)
