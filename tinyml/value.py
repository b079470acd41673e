"""``Value``: a scalar in the tape, with micrograd's operators and methods.

A Value is only a handle ``(graph, row)``; its number lives in
``graph.data[row]``. Operators append rows; nothing is computed until a value
or gradient is needed (then one kernel call evaluates every pending row).
"""

from __future__ import annotations

import numbers
import weakref
from collections.abc import Iterable

import numpy as np

from .graph import Graph, current_graph
from .ops import Op

_LEAF = int(Op.LEAF)


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
    """A new handle on ``row``, tracked (weakly) so compaction keeps and renumbers it."""
    v = Value.__new__(Value)
    v._graph = graph
    v._row = row
    graph._handles.append(weakref.ref(v))
    return v


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


def _unary(op: int, a: Value, aux: float = 0.0) -> Value:
    g = a._graph
    if a._row < 0:
        raise _stale(a)
    g.reserve(1, 1)
    return wrap(g, g.push(op, (a._row,), aux))


def _binary(op: int, a: Value, b: Value) -> Value:
    g = a._graph
    if b._graph is not g:
        same_graph((a, b))
    if a._row < 0 or b._row < 0:
        raise _stale(a if a._row < 0 else b)
    g.reserve(1, 2)
    return wrap(g, g.push(op, (a._row, b._row)))


class Value:
    """A scalar node of the autograd graph.

    ``Value(2.0)`` makes a leaf (ints and numpy scalars are stored as float64).
    ``.data`` is readable everywhere and writable on leaves; ``.grad`` holds the
    gradient from ``backward()``: leaves accumulate it across calls until
    zeroed (as PyTorch does); interior nodes hold that of the latest backward
    pass that reached them.
    """

    __slots__ = ("_graph", "_row", "__weakref__")
    __array_ufunc__ = None  # make numpy scalars defer to our reflected operators

    def __init__(self, data: float, graph: Graph | None = None) -> None:
        value = _number(data, "Value(data)")
        if graph is not None and not isinstance(graph, Graph):
            raise TypeError(f"Value(graph=...): expected a tm.Graph, got {type(graph).__name__}")
        g = current_graph() if graph is None else graph
        g.reserve(1, 0)
        self._graph = g
        self._row = g.push_leaf(value)
        g._handles.append(weakref.ref(self))

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
        return g.data.item(r)

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
        if self._row < 0:
            raise _stale(self)
        return self._graph.grad.item(self._row)

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
    def __add__(self, other: Value | float) -> Value:
        if type(other) is Value:
            return _binary(Op.ADD, self, other)
        c = _operand(other)
        return NotImplemented if c is None else _unary(Op.ADD_C, self, c)

    def __radd__(self, other: float) -> Value:
        c = _operand(other)
        return NotImplemented if c is None else _unary(Op.ADD_C, self, c)

    def __sub__(self, other: Value | float) -> Value:
        if type(other) is Value:
            return _binary(Op.SUB, self, other)
        c = _operand(other)
        return NotImplemented if c is None else _unary(Op.ADD_C, self, -c)  # x - c == x + (-c)

    def __rsub__(self, other: float) -> Value:
        c = _operand(other)
        return NotImplemented if c is None else _unary(Op.RSUB_C, self, c)

    def __mul__(self, other: Value | float) -> Value:
        if type(other) is Value:
            return _binary(Op.MUL, self, other)
        c = _operand(other)
        return NotImplemented if c is None else _unary(Op.MUL_C, self, c)

    def __rmul__(self, other: float) -> Value:
        c = _operand(other)
        return NotImplemented if c is None else _unary(Op.MUL_C, self, c)

    def __truediv__(self, other: Value | float) -> Value:
        if type(other) is Value:
            return _binary(Op.DIV, self, other)
        c = _operand(other)
        return NotImplemented if c is None else _unary(Op.DIV_C, self, c)

    def __rtruediv__(self, other: float) -> Value:
        c = _operand(other)
        return NotImplemented if c is None else _unary(Op.RDIV_C, self, c)

    def __pow__(self, other: Value | float) -> Value:
        if type(other) is Value:
            return _binary(Op.POW, self, other)
        c = _operand(other)
        return NotImplemented if c is None else _unary(Op.POW_C, self, c)

    def __rpow__(self, other: float) -> Value:
        c = _operand(other)
        return NotImplemented if c is None else _binary(Op.POW, Value(c, self._graph), self)

    def __neg__(self) -> Value:
        return _unary(Op.NEG, self)

    def __pos__(self) -> Value:
        return self

    def __abs__(self) -> Value:
        return _unary(Op.ABS, self)

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
        return _unary(Op.RELU, self)

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
