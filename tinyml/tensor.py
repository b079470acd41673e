"""``Tensor``: a 2-D matrix of Values, the batch front door of the library.

A Tensor is a shape plus a row-major list of ``Value`` handles; the numbers
live in the tape. Every operation appends all of its rows at once: one
``reserve``, row numbers read from the handles after it (it may renumber),
bulk writes into the tape arrays (:meth:`Graph.push_many`), then one handle per
result. A matrix product is one n-ary ``AFFINE`` row per output element, not
2n scalar rows; ``model(tensor)`` reuses the model's own forward rows.
"""

from __future__ import annotations

import numbers

import numpy as np

from .graph import Graph, current_graph
from .ops import Op
from .value import Value, _number, real_dtype, same_graph, wrap

_INDEX_TYPES = (int, np.integer)


def _freed() -> RuntimeError:
    return RuntimeError(
        "this Tensor holds a Value whose row was freed (its graph was cleared); "
        "rebuild the expression before using it"
    )


def _index(i, size: int, axis: str) -> int | range:
    """A checked position (negative counts from the end) or the range of a slice."""
    if isinstance(i, slice):
        return range(*i.indices(size))
    if isinstance(i, bool) or not isinstance(i, _INDEX_TYPES):
        raise TypeError(f"Tensor {axis} index must be an int or a slice, got {type(i).__name__}")
    j = int(i)
    if not -size <= j < size:
        raise IndexError(f"{axis} index {j} out of range for size {size}")
    return j + size if j < 0 else j


def _broadcast(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    """NumPy's broadcast of two 2-D shapes (a dimension of 1 stretches), or a ValueError."""
    out = []
    for x, y in zip(a, b):
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            raise ValueError(f"shape mismatch: cannot combine Tensors of shapes {a} and {b}")
    return out[0], out[1]


def _constants(x) -> np.ndarray | None:
    """A number or a numeric ndarray as a 2-D float64 array; None if ``x`` is something else."""
    if isinstance(x, np.ndarray):
        if np.iscomplexobj(x):
            raise TypeError("cannot combine a Tensor with complex numbers")
        if not real_dtype(x.dtype):
            return None
        if x.ndim > 2:
            raise ValueError(f"cannot combine a Tensor with an array of shape {x.shape}")
        return np.asarray(x, np.float64).reshape((1,) * (2 - x.ndim) + x.shape)
    if isinstance(x, numbers.Real) and type(x) is not Value:
        return np.full((1, 1), float(x))
    return None


class Tensor:
    """A 2-D matrix of Values: ``tm.Tensor([[1, 2], [3, 4]])`` or ``tm.Tensor(numpy_2d_array)``.

    Entries may be numbers (new leaves) or existing Values (kept, so gradients
    reach them). ``+ - * /`` are elementwise with NumPy broadcasting (a
    dimension of 1 stretches) against Tensors, Values, numbers and arrays;
    ``@`` is the matrix product. ``numpy()`` and ``grad`` read values and
    gradients as float64 arrays.
    """

    __slots__ = ("_graph", "_values", "_shape")
    __array_ufunc__ = None  # numpy operands defer to our reflected operators

    def __init__(self, data, graph: Graph | None = None) -> None:
        if isinstance(data, Tensor):
            if graph is not None and graph is not data._graph:
                raise ValueError("the Tensor belongs to another graph than the one given")
            self._graph, self._values, self._shape = data._graph, list(data._values), data._shape
            return
        if isinstance(data, np.ndarray) and data.dtype != object:
            self._from_array(data, graph)
            return
        if isinstance(data, np.ndarray):  # dtype object, e.g. an array of Values
            if data.ndim != 2:
                raise ValueError(f"Tensor expects a 2-D array, got {data.ndim}-D with shape {data.shape}")
            data = data.tolist()
        if isinstance(data, (Value, str, bytes)) or not isinstance(data, (list, tuple, np.ndarray)):
            raise TypeError(
                f"Tensor expects a 2-D nested list of numbers/Values or a 2-D numpy array, "
                f"got {type(data).__name__}"
            )
        self._from_rows(data, graph)

    def _from_array(self, data: np.ndarray, graph: Graph | None) -> None:
        if data.ndim != 2:
            raise ValueError(f"Tensor expects a 2-D array, got {data.ndim}-D with shape {data.shape}")
        if not real_dtype(data.dtype):
            raise TypeError(f"Tensor expects an array of real numbers, got dtype {data.dtype}")
        g = current_graph() if graph is None else graph
        flat = np.ascontiguousarray(data, np.float64).reshape(-1)
        g.reserve(flat.shape[0], 0)
        self._graph = g
        self._values = [wrap(g, r) for r in g.push_leaves(flat)]
        self._shape = (int(data.shape[0]), int(data.shape[1]))

    def _from_rows(self, data, graph: Graph | None) -> None:
        if len(data) and not isinstance(data[0], (list, tuple, np.ndarray)):
            raise ValueError(
                "Tensor expects 2-D data (a list of rows); got 1-D data: "
                "wrap it as [row], or [[x] for x in data] for a column"
            )
        if len(data) == 0:
            raise ValueError("Tensor expects 2-D data (a list of rows); got an empty list")
        cols = len(data[0])
        flat = []
        for i, row in enumerate(data):
            if isinstance(row, (Value, str, bytes)) or not isinstance(row, (list, tuple, np.ndarray)):
                raise ValueError(f"Tensor expects 2-D data: row {i} is {type(row).__name__}, not a row")
            if isinstance(row, np.ndarray) and row.ndim != 1:
                raise ValueError(f"Tensor expects 2-D data: row {i} is an array of shape {row.shape}")
            if len(row) != cols:
                raise ValueError(f"ragged input: row 0 has {cols} entries but row {i} has {len(row)}")
            flat.extend(row)
        values = []
        numbers_at = []
        for k, x in enumerate(flat):
            if type(x) is Value:
                values.append(x)
            elif isinstance(x, (list, tuple, np.ndarray)):
                raise ValueError("Tensor expects 2-D data; got more than 2 levels of nesting")
            else:
                _number(x, f"Tensor entry [{k // cols}, {k % cols}]")
                numbers_at.append(k)
        g = same_graph(values) if values else (current_graph() if graph is None else graph)
        if graph is not None and g is not graph:
            raise ValueError("the Tensor's Values belong to another graph than the one given")
        if numbers_at:
            g.reserve(len(numbers_at), 0)
            rows = g.push_leaves(np.array([float(flat[k]) for k in numbers_at], np.float64))
            for k, r in zip(numbers_at, rows):
                flat[k] = wrap(g, r)
        self._graph = g
        self._values = flat
        self._shape = (len(data), cols)

    @classmethod
    def _make(cls, graph: Graph, values: list[Value], shape: tuple[int, int]) -> Tensor:
        t = cls.__new__(cls)
        t._graph = graph
        t._values = values
        t._shape = shape
        return t

    @classmethod
    def _wrap_rows(cls, graph: Graph, rows, shape: tuple[int, int]) -> Tensor:
        return cls._make(graph, [wrap(graph, r) for r in rows], shape)

    # -- shape and access --------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return self._shape

    @property
    def ndim(self) -> int:
        return 2

    @property
    def size(self) -> int:
        return self._shape[0] * self._shape[1]

    @property
    def graph(self) -> Graph:
        return self._graph

    def __len__(self) -> int:
        return self._shape[0]

    def flat_values(self) -> list[Value]:
        """Every Value, row-major (a new list)."""
        return list(self._values)

    @property
    def rows(self) -> list[list[Value]]:
        """The rows, each a list of its Values."""
        r, c = self._shape
        v = self._values
        return [v[i * c : (i + 1) * c] for i in range(r)]

    def __iter__(self):
        return iter(self.rows)

    def __getitem__(self, key):
        """``t[i, j]`` a Value, ``t[i]`` / ``t[i, a:b]`` / ``t[a:b, j]`` lists, two slices a Tensor."""
        r, c = self._shape
        if isinstance(key, tuple):
            if len(key) != 2:
                raise IndexError(f"a Tensor takes 1 or 2 indices, got {len(key)}")
            i, j = _index(key[0], r, "row"), _index(key[1], c, "column")
        else:
            i, j = _index(key, r, "row"), range(c)
        v = self._values
        if isinstance(i, int) and isinstance(j, int):
            return v[i * c + j]
        if isinstance(i, int):
            return [v[i * c + k] for k in j]
        if isinstance(j, int):
            return [v[k * c + j] for k in i]
        if isinstance(key, tuple):
            return Tensor._make(self._graph, [v[a * c + b] for a in i for b in j], (len(i), len(j)))
        return Tensor._make(self._graph, [v[a * c + b] for a in i for b in j], (len(i), c))

    @property
    def T(self) -> Tensor:
        """The transpose (the same Values, no new rows)."""
        r, c = self._shape
        v = self._values
        return Tensor._make(self._graph, [v[i * c + j] for j in range(c) for i in range(r)], (c, r))

    def reshape(self, *shape) -> Tensor:
        """The same Values in row-major order as ``(rows, cols)``; one dimension may be -1."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        if len(shape) != 2:
            raise ValueError(f"reshape takes 2 dimensions (rows, cols), got {shape}")
        for d in shape:
            if isinstance(d, bool) or not isinstance(d, _INDEX_TYPES):
                raise TypeError(f"reshape dimensions must be ints, got {type(d).__name__}")
        a, b = int(shape[0]), int(shape[1])
        n = self.size
        if a == -1 and b > 0 and n % b == 0:
            a = n // b
        elif b == -1 and a > 0 and n % a == 0:
            b = n // a
        if a < 0 or b < 0 or a * b != n:
            raise ValueError(f"cannot reshape a Tensor of shape {self._shape} ({n} values) into {shape}")
        return Tensor._make(self._graph, list(self._values), (a, b))

    # -- reading numbers back ----------------------------------------------------
    def _rows_array(self) -> np.ndarray:
        """Current tape rows of the Values (read after any ``reserve``)."""
        rows = np.fromiter((v._row for v in self._values), np.int64, len(self._values))
        if rows.size and rows.min() < 0:
            raise _freed()
        return rows

    def numpy(self) -> np.ndarray:
        """The values as a new float64 array of ``shape``."""
        rows = self._rows_array()
        self._graph.evaluate()
        return self._graph.data[rows, 0].reshape(self._shape)

    @property
    def data(self) -> np.ndarray:
        """Same as ``numpy()``."""
        return self.numpy()

    @property
    def grad(self) -> np.ndarray:
        """The gradients as a new float64 array of ``shape``."""
        return self._graph.grad[self._rows_array(), 0].reshape(self._shape)

    def zero_grad(self) -> None:
        """Set the gradient of every Value of the Tensor to 0."""
        self._graph.grad[self._rows_array()] = 0.0

    def __repr__(self) -> str:
        if any(v._row < 0 for v in self._values):
            return f"Tensor(<freed>, shape={self._shape})"
        body = np.array2string(self.numpy(), separator=", ", prefix="Tensor(")
        return f"Tensor({body})"

    # -- elementwise arithmetic ----------------------------------------------------
    def _coerce(self, other) -> Tensor:
        """``other`` (Tensor, Value, nested list) as a Tensor of this Tensor's graph."""
        if isinstance(other, Tensor):
            t = other
        elif type(other) is Value:
            t = Tensor._make(other._graph, [other], (1, 1))
        elif isinstance(other, (list, tuple, np.ndarray)):
            t = Tensor(other, self._graph)
        else:
            raise TypeError(
                f"cannot combine a Tensor with {type(other).__name__}; "
                "expected a Tensor, a Value, a number or an array"
            )
        if t._graph is not self._graph:
            raise ValueError(
                "Tensors from two different graphs cannot be combined; "
                "build them inside the same `with tm.Graph():` block"
            )
        return t

    def _pairwise(self, op: int, a: Tensor, b: Tensor) -> Tensor:
        shape = _broadcast(a._shape, b._shape)
        m = shape[0] * shape[1]
        g = self._graph
        g.reserve(m, 2 * m)
        pa = np.broadcast_to(a._rows_array().reshape(a._shape), shape).reshape(-1)
        pb = np.broadcast_to(b._rows_array().reshape(b._shape), shape).reshape(-1)
        return Tensor._wrap_rows(g, g.push_many(op, np.stack([pa, pb], axis=1)), shape)

    def _with_constants(self, op: int, c: np.ndarray) -> Tensor:
        shape = _broadcast(self._shape, c.shape)
        m = shape[0] * shape[1]
        g = self._graph
        g.reserve(m, m)
        p = np.broadcast_to(self._rows_array().reshape(self._shape), shape).reshape(m, 1)
        aux = np.broadcast_to(c, shape).reshape(-1)
        return Tensor._wrap_rows(g, g.push_many(op, p, aux), shape)

    def _binary(self, other, tensor_op: int, const_op: int, const=None, reflected: bool = False) -> Tensor:
        c = _constants(other)
        if c is not None:
            return self._with_constants(const_op, c if const is None else const(c))
        t = self._coerce(other)
        return self._pairwise(tensor_op, t, self) if reflected else self._pairwise(tensor_op, self, t)

    def __add__(self, other) -> Tensor:
        return self._binary(other, Op.ADD, Op.ADD_C)

    def __radd__(self, other) -> Tensor:
        return self._binary(other, Op.ADD, Op.ADD_C, reflected=True)

    def __sub__(self, other) -> Tensor:
        return self._binary(other, Op.SUB, Op.ADD_C, const=np.negative)  # x - c == x + (-c) exactly

    def __rsub__(self, other) -> Tensor:
        return self._binary(other, Op.SUB, Op.RSUB_C, reflected=True)

    def __mul__(self, other) -> Tensor:
        return self._binary(other, Op.MUL, Op.MUL_C)

    def __rmul__(self, other) -> Tensor:
        return self._binary(other, Op.MUL, Op.MUL_C, reflected=True)

    def __truediv__(self, other) -> Tensor:
        return self._binary(other, Op.DIV, Op.DIV_C)

    def __rtruediv__(self, other) -> Tensor:
        return self._binary(other, Op.DIV, Op.RDIV_C, reflected=True)

    def __pow__(self, exponent) -> Tensor:
        c = _constants(exponent)
        if c is None:
            raise TypeError(
                f"Tensor ** takes a number (or numeric array) exponent, got {type(exponent).__name__}"
            )
        return self._with_constants(Op.POW_C, c)

    def __neg__(self) -> Tensor:
        return self._unary(Op.NEG)

    def __pos__(self) -> Tensor:
        return self

    def __abs__(self) -> Tensor:
        return self._unary(Op.ABS)

    # -- matrix product --------------------------------------------------------------
    def __matmul__(self, other) -> Tensor:
        return _matmul(self, self._coerce_matrix(other))

    def __rmatmul__(self, other) -> Tensor:
        return _matmul(self._coerce_matrix(other), self)

    def matmul(self, other) -> Tensor:
        return self @ other

    def _coerce_matrix(self, other) -> Tensor:
        if type(other) is Value or isinstance(other, numbers.Real):
            raise TypeError("@ needs a 2-D operand (a Tensor or a matrix), not a scalar; use * to scale")
        return self._coerce(other)

    # -- reductions ------------------------------------------------------------------
    def sum(self, axis: int | None = None):
        """The sum of all entries as a Value (one SUM row); ``axis=0`` / ``1`` sums columns / rows
        into a (1, cols) / (rows, 1) Tensor."""
        r, c = self._shape
        g = self._graph
        if axis is None:
            g.reserve(1, self.size)
            row = g.push_many(Op.SUM, self._rows_array().reshape(1, -1))[0]
            return wrap(g, row)
        if axis in (0, -2):
            g.reserve(c, self.size)
            return Tensor._wrap_rows(g, g.push_many(Op.SUM, self._rows_array().reshape(r, c).T), (1, c))
        if axis in (1, -1):
            g.reserve(r, self.size)
            return Tensor._wrap_rows(g, g.push_many(Op.SUM, self._rows_array().reshape(r, c)), (r, 1))
        raise ValueError(f"axis must be None, 0 or 1, got {axis!r}")

    def backward(self) -> None:
        """Backpropagate from a Tensor of ONE element, as PyTorch; anything larger must be
        reduced to a scalar first, as a gradient is defined for a scalar output only."""
        if self.size != 1:
            raise ValueError(
                f"backward() needs a single value, but this Tensor has shape {self._shape} "
                f"({self.size} elements); reduce it first, e.g. t.sum().backward(), t.mean().backward() "
                "or a loss from tm.losses"
            )
        wrap(self._graph, int(self._rows_array().reshape(-1)[0])).backward()

    def mean(self, axis: int | None = None):
        """The mean of all entries as a Value (a SUM row, then a division); ``axis`` as in ``sum``."""
        if axis is None:
            if self.size == 0:
                raise ValueError("mean of an empty Tensor")
            return self.sum() / float(self.size)
        total = self.sum(axis)
        count = self._shape[0] if axis in (0, -2) else self._shape[1]
        if count == 0:
            raise ValueError(f"mean over an empty axis of a Tensor of shape {self._shape}")
        return total / float(count)

    # -- activations and elementary functions -------------------------------------------
    def _unary(self, op: int, aux: float = 0.0) -> Tensor:
        g = self._graph
        m = self.size
        g.reserve(m, m)
        return Tensor._wrap_rows(g, g.push_many(op, self._rows_array().reshape(m, 1), aux), self._shape)

    def relu(self) -> Tensor:
        return self._unary(Op.RELU)

    def tanh(self) -> Tensor:
        return self._unary(Op.TANH)

    def sigmoid(self) -> Tensor:
        return self._unary(Op.SIGMOID)

    sigm = sigmoid

    def exp(self) -> Tensor:
        return self._unary(Op.EXP)

    def log(self) -> Tensor:
        return self._unary(Op.LOG)

    def leaky_relu(self, negative_slope: float = 0.01) -> Tensor:
        return self._unary(Op.LEAKY_RELU, _number(negative_slope, "leaky_relu slope"))

    def gelu(self, approximate: str = "none") -> Tensor:
        """GELU; ``approximate="none"`` is the exact erf form, ``"tanh"`` the approximation."""
        if approximate == "none":
            return self._unary(Op.GELU_ERF)
        if approximate == "tanh":
            return self._unary(Op.GELU_TANH)
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")

    def silu(self) -> Tensor:
        return self._unary(Op.SILU)

    swish = silu

    def softplus(self) -> Tensor:
        return self._unary(Op.SOFTPLUS)

    def abs(self) -> Tensor:
        return self._unary(Op.ABS)

    def sqrt(self) -> Tensor:
        return self._unary(Op.SQRT)


def _matmul(a: Tensor, b: Tensor) -> Tensor:
    """(m, n) @ (n, p): one AFFINE row [zero, a[i, :], b[:, j]] per output element."""
    (m, n), (n2, p) = a._shape, b._shape
    if n != n2:
        raise ValueError(
            f"matmul shape mismatch: {a._shape} @ {b._shape} (inner dimensions {n} and {n2} differ)"
        )
    g = a._graph
    k = 2 * n + 1
    g.reserve(m * p + 1, m * p * k)
    ra = a._rows_array().reshape(m, n)
    rb = b._rows_array().reshape(n, p)
    zero = g.push_leaf(0.0)  # the shared bias of every AFFINE row; kept alive by its children
    parents = np.empty((m, p, k), np.int64)
    parents[:, :, 0] = zero
    parents[:, :, 1 : n + 1] = ra[:, None, :]
    parents[:, :, n + 1 :] = rb.T[None, :, :]
    return Tensor._wrap_rows(g, g.push_many(Op.AFFINE, parents.reshape(m * p, k)), (m, p))


def batch_forward(layers, x: Tensor) -> Tensor:
    """``layers`` applied to every row of ``x``: the rows of calling them sample by sample."""
    from .nn import forward_rows  # nn imports this module

    graph = layers[0].neurons[0].bias._graph
    n = layers[0].n_inputs
    r, c = x.shape
    if c != n:
        raise ValueError(f"expected {n} inputs per sample, got a Tensor of shape {x.shape} ({c} per sample)")
    if x._graph is not graph:
        raise ValueError("the input Tensor belongs to another graph than the model's parameters")
    rows_needed = sum(layer.room[0] for layer in layers)
    entries = sum(layer.room[1] for layer in layers)
    graph.reserve(r * rows_needed, r * entries)
    inputs = x._rows_array().reshape(r, n).tolist()
    out = []
    for sample in inputs:
        out.extend(forward_rows(graph, layers, sample))
    return Tensor._wrap_rows(graph, out, (r, len(layers[-1].neurons)))
