"""``Tensor``: an N-dimensional array of Values, the batch front door of the library.

A Tensor is a shape plus a row-major list of ``Value`` handles; the numbers
live in the tape. Every operation appends all of its rows at once: one
``reserve``, row numbers read from the handles after it (it may renumber),
bulk writes into the tape arrays (:meth:`Graph.push_many`), then one handle per
result. Shapes follow NumPy: elementwise ops broadcast, ``@`` is
``numpy.matmul`` (one n-ary ``AFFINE`` row per output element, not 2n scalar
rows), reductions drop the axis unless ``keepdims``. Indexing is NumPy's, except
the legacy rule of the first part of the API: a single integer into a 2-D
Tensor gives the row as a list of Values.
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


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """NumPy's broadcast of two shapes (a dimension of 1 stretches), or a ValueError naming both."""
    try:
        return tuple(int(d) for d in np.broadcast_shapes(a, b))
    except ValueError:
        raise ValueError(f"shape mismatch: cannot combine Tensors of shapes {a} and {b}") from None


def _constants(x) -> np.ndarray | None:
    """A number or a numeric ndarray as a float64 array; None if ``x`` is something else."""
    if isinstance(x, np.ndarray):
        if np.iscomplexobj(x):
            raise TypeError("cannot combine a Tensor with complex numbers")
        if not real_dtype(x.dtype):
            return None
        return np.asarray(x, np.float64)
    if isinstance(x, numbers.Real) and type(x) is not Value:
        return np.asarray(float(x))
    return None


def _nested_shape(data, depth: int = 0) -> tuple[int, ...]:
    """Shape of nested lists/tuples/1-D arrays of scalars, or a ValueError for ragged data."""
    if isinstance(data, np.ndarray) and data.dtype != object:
        return data.shape
    if isinstance(data, (list, tuple, np.ndarray)):
        if len(data) == 0:
            raise ValueError("Tensor expects non-empty data; got an empty list")
        shapes = [_nested_shape(x, depth + 1) for x in data]
        for i, s in enumerate(shapes):
            if s != shapes[0]:
                raise ValueError(f"ragged input: entry 0 has shape {shapes[0]} but entry {i} has shape {s}")
        return (len(data), *shapes[0])
    return ()


def _flatten(data, out: list) -> None:
    if isinstance(data, np.ndarray) and data.dtype != object:
        out.extend(data.reshape(-1).tolist())
    elif isinstance(data, (list, tuple, np.ndarray)):
        for x in data:
            _flatten(x, out)
    else:
        out.append(data)


def _axes(axis, ndim: int) -> tuple[int, ...]:
    """``axis`` (None, an int or a tuple of ints, negatives from the end) as sorted axes."""
    if axis is None:
        return tuple(range(ndim))
    items = axis if isinstance(axis, tuple) else (axis,)
    out = []
    for a in items:
        if isinstance(a, bool) or not isinstance(a, _INDEX_TYPES):
            raise TypeError(f"axis must be None, an int or a tuple of ints, got {axis!r}")
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a} is out of range for a Tensor of {ndim} dimensions")
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"axis {axis!r} names a dimension twice")
    return tuple(sorted(out))


class Tensor:
    """An N-D array of Values: ``tm.Tensor([[1, 2], [3, 4]])`` or ``tm.Tensor(numpy_array)``.

    Entries may be numbers (new leaves) or existing Values (kept, so gradients
    reach them). ``+ - * /`` are elementwise with NumPy broadcasting against
    Tensors, Values, numbers and arrays; ``@`` is ``numpy.matmul``.
    ``numpy()`` and ``grad`` read values and gradients as float64 arrays.
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
        if isinstance(data, (Value, str, bytes)) or not isinstance(data, (list, tuple, np.ndarray)):
            raise TypeError(
                f"Tensor expects (nested lists of) numbers/Values or a numpy array, got {type(data).__name__}"
            )
        self._from_nested(data, graph)

    def _from_array(self, data: np.ndarray, graph: Graph | None) -> None:
        if not real_dtype(data.dtype):
            raise TypeError(f"Tensor expects an array of real numbers, got dtype {data.dtype}")
        if data.ndim == 0 or data.size == 0:
            raise ValueError(
                f"Tensor expects an array of at least 1 dimension and 1 value, got shape {data.shape}"
            )
        g = current_graph() if graph is None else graph
        flat = np.ascontiguousarray(data, np.float64).reshape(-1)
        g.reserve(flat.shape[0], 0)
        self._graph = g
        self._values = [wrap(g, r) for r in g.push_leaves(flat)]
        self._shape = tuple(int(d) for d in data.shape)

    def _from_nested(self, data, graph: Graph | None) -> None:
        shape = _nested_shape(data)
        if not shape or 0 in shape:
            raise ValueError(f"Tensor expects at least 1 dimension and 1 value, got shape {shape}")
        flat: list = []
        _flatten(data, flat)
        values = []
        numbers_at = []
        for k, x in enumerate(flat):
            if type(x) is Value:
                values.append(x)
            else:
                _number(x, f"Tensor entry {np.unravel_index(k, shape)}")
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
        self._shape = shape

    @classmethod
    def _make(cls, graph: Graph, values: list[Value], shape: tuple[int, ...]) -> Tensor:
        t = cls.__new__(cls)
        t._graph = graph
        t._values = values
        t._shape = tuple(shape)
        return t

    @classmethod
    def _wrap_rows(cls, graph: Graph, rows, shape: tuple[int, ...]) -> Tensor:
        return cls._make(graph, [wrap(graph, r) for r in rows], shape)

    def _take(self, positions: np.ndarray) -> Tensor | Value:
        """The Values at flat ``positions`` (an int array) with its shape; a Value for 0-d."""
        if positions.ndim == 0:
            return self._values[int(positions)]
        v = self._values
        return Tensor._make(self._graph, [v[k] for k in positions.reshape(-1).tolist()], positions.shape)

    def _positions(self) -> np.ndarray:
        return np.arange(self.size).reshape(self._shape)

    # -- shape and access --------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def ndim(self) -> int:
        return len(self._shape)

    @property
    def size(self) -> int:
        return len(self._values)

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
        """The rows of a 2-D Tensor, each a list of its Values."""
        if self.ndim != 2:
            raise ValueError(f"rows: a 2-D Tensor has rows; this one has shape {self._shape}")
        r, c = self._shape
        v = self._values
        return [v[i * c : (i + 1) * c] for i in range(r)]

    def __iter__(self):
        """Over the first axis: Values (1-D), row lists (2-D, as ``t[i]``), Tensors (3-D and more)."""
        if self.ndim == 2:
            return iter(self.rows)
        if self.ndim == 1:
            return iter(list(self._values))
        return (self[i] for i in range(self._shape[0]))

    def __getitem__(self, key):
        """NumPy indexing: all integer indices give a Value, slices give Tensors. A single
        integer into a 2-D Tensor gives the row as a list of Values (the first part's rule)."""
        keys = key if isinstance(key, tuple) else (key,)
        for k in keys:
            if isinstance(k, bool) or not (
                isinstance(k, (slice, *_INDEX_TYPES)) or k is Ellipsis or k is None
            ):
                raise TypeError(f"Tensor indices must be ints, slices, None or ..., got {type(k).__name__}")
        if sum(1 for k in keys if k is not None and k is not Ellipsis) > self.ndim:
            raise IndexError(f"too many indices ({len(keys)}) for a Tensor of shape {self._shape}")
        try:
            positions = self._positions()[key]
        except IndexError as e:
            raise IndexError(f"{e} (a Tensor of shape {self._shape})") from None
        if positions.size == 0:
            raise IndexError(f"index {key!r} selects no entries of a Tensor of shape {self._shape}")
        out = self._take(np.asarray(positions))
        if self.ndim == 2 and isinstance(key, _INDEX_TYPES) and not isinstance(key, bool):
            return out.flat_values()  # legacy: t[i] of a matrix is its row as a list
        return out

    @property
    def T(self) -> Tensor:
        """The axes reversed, as ``numpy.ndarray.T`` (the same Values, no new rows)."""
        return self._take(self._positions().T.copy())

    def transpose(self, *axes) -> Tensor:
        """The axes permuted as ``numpy.transpose`` (the same Values, no new rows)."""
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return self._take(np.transpose(self._positions(), axes or None).copy())

    def reshape(self, *shape) -> Tensor:
        """The same Values in row-major order with a new shape; one dimension may be -1."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        if not shape:
            raise ValueError("reshape needs at least one dimension")
        for d in shape:
            if isinstance(d, bool) or not isinstance(d, _INDEX_TYPES):
                raise TypeError(f"reshape dimensions must be ints, got {type(d).__name__}")
        dims = [int(d) for d in shape]
        n = self.size
        if dims.count(-1) == 1:
            rest = 1
            for d in dims:
                if d != -1:
                    rest *= d
            if rest > 0 and n % rest == 0:
                dims[dims.index(-1)] = n // rest
        if any(d < 1 for d in dims) or int(np.prod(dims)) != n:
            raise ValueError(f"cannot reshape a Tensor of shape {self._shape} ({n} values) into {shape}")
        return Tensor._make(self._graph, list(self._values), tuple(dims))

    def flatten(self, start_dim: int = 0) -> Tensor:
        """Dimensions from ``start_dim`` on merged into one (``torch.flatten``)."""
        s = _axes(start_dim, self.ndim)[0]
        return self.reshape(*self._shape[:s], -1)

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

    def item(self) -> float:
        """The number of a one-element Tensor."""
        return self._single("item").data

    def backward(self) -> None:
        """Backpropagate from a Tensor of ONE element, as PyTorch; anything larger must be
        reduced to a scalar first, as a gradient is defined for a scalar output only."""
        if self.size != 1:
            raise ValueError(
                f"backward() needs a single value, but this Tensor has shape {self._shape} "
                f"({self.size} elements); reduce it first, e.g. t.sum().backward(), t.mean().backward() "
                "or a loss from tm.losses"
            )
        self._values[0].backward()

    def _single(self, what: str) -> Value:
        if self.size != 1:
            raise ValueError(f"{what}: needs a Tensor of one element, got shape {self._shape}")
        return self._values[0]

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
            t = Tensor._make(other._graph, [other], ())
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
        m = int(np.prod(shape))
        g = self._graph
        g.reserve(m, 2 * m)
        pa = np.broadcast_to(a._rows_array().reshape(a._shape), shape).reshape(-1)
        pb = np.broadcast_to(b._rows_array().reshape(b._shape), shape).reshape(-1)
        return Tensor._wrap_rows(g, g.push_many(op, np.stack([pa, pb], axis=1)), shape)

    def _with_constants(self, op: int, c: np.ndarray) -> Tensor:
        shape = _broadcast(self._shape, c.shape)
        m = int(np.prod(shape))
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
            raise TypeError("@ needs an array operand (a Tensor or a matrix), not a scalar; use * to scale")
        return self._coerce(other)

    # -- reductions ------------------------------------------------------------------
    def _groups(self, axis, keepdims: bool) -> tuple[np.ndarray, tuple[int, ...]]:
        """Rows grouped for a reduction over ``axis``: (groups (m, k), result shape)."""
        axes = _axes(axis, self.ndim)
        keep = [a for a in range(self.ndim) if a not in axes]
        rows = self._rows_array().reshape(self._shape).transpose(keep + list(axes))
        out_shape = tuple(self._shape[a] for a in keep)
        if keepdims:
            out_shape = tuple(1 if a in axes else d for a, d in enumerate(self._shape))
        return rows.reshape(-1, int(np.prod([self._shape[a] for a in axes]))), out_shape

    def _reduce(self, op: int, axis, keepdims: bool, aux: float = 0.0):
        groups, shape = self._groups(axis, keepdims)
        g = self._graph
        g.reserve(groups.shape[0], groups.size)
        groups, shape = self._groups(axis, keepdims)  # rows again, after any compaction
        rows = g.push_many(op, groups, aux)
        if not shape:
            return wrap(g, rows[0])
        return Tensor._wrap_rows(g, rows, shape)

    def sum(self, axis=None, keepdims: bool = False):
        """The sum over ``axis`` (None: all entries) as one SUM row per result; a Value
        when nothing remains, else a Tensor without the reduced axes (unless ``keepdims``)."""
        return self._reduce(Op.SUM, axis, keepdims)

    def mean(self, axis=None, keepdims: bool = False):
        """The mean over ``axis`` (a SUM row, then a division); shapes as in ``sum``."""
        count = int(np.prod([self._shape[a] for a in _axes(axis, self.ndim)]))
        return self.sum(axis, keepdims) / float(count)

    def max(self, axis=None, keepdims: bool = False):
        """The largest entry over ``axis`` (one MAX row per result; its gradient goes to
        the first largest parent, as PyTorch's ``max_pool2d``); shapes as in ``sum``."""
        return self._reduce(Op.MAX, axis, keepdims)

    def logsumexp(self, axis=None, keepdims: bool = False):
        """``log(sum(exp(x)))`` over ``axis``, computed stably (one LOGSUMEXP row per result)."""
        return self._reduce(Op.LOGSUMEXP, axis, keepdims)

    def log_softmax(self, axis: int = -1) -> Tensor:
        """``x - logsumexp(x)`` along ``axis``."""
        return self - self.logsumexp(axis, keepdims=True)

    def softmax(self, axis: int = -1) -> Tensor:
        """``exp(log_softmax(x))`` along ``axis``: stable for large logits."""
        return self.log_softmax(axis).exp()

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
    """``numpy.matmul`` of two Tensors: one AFFINE row [zero, a[..., i, :], b[..., :, j]] per
    output element. 1-D operands are a row (left) or a column (right) dropped from the result."""
    sa, sb = a._shape, b._shape
    if not sa or not sb:
        raise TypeError("@ needs array operands, not scalars; use * to scale")
    a2 = sa if len(sa) > 1 else (1, *sa)
    b2 = sb if len(sb) > 1 else (*sb, 1)
    (m, n), (n2, p) = a2[-2:], b2[-2:]
    if n != n2:
        raise ValueError(f"matmul shape mismatch: {sa} @ {sb} (inner dimensions {n} and {n2} differ)")
    try:
        batch = tuple(int(d) for d in np.broadcast_shapes(a2[:-2], b2[:-2]))
    except ValueError:
        raise ValueError(f"matmul shape mismatch: {sa} @ {sb} (batch dimensions do not broadcast)") from None
    g = a._graph
    k = 2 * n + 1
    nb = int(np.prod(batch))
    g.reserve(nb * m * p + 1, nb * m * p * k)
    ra = np.broadcast_to(a._rows_array().reshape(a2), (*batch, m, n)).reshape(nb, m, n)
    rb = np.broadcast_to(b._rows_array().reshape(b2), (*batch, n, p)).reshape(nb, n, p)
    zero = g.push_leaf(0.0)  # the shared bias of every AFFINE row; kept alive by its children
    parents = np.empty((nb, m, p, k), np.int64)
    parents[..., 0] = zero
    parents[..., 1 : n + 1] = ra[:, :, None, :]
    parents[..., n + 1 :] = np.swapaxes(rb, 1, 2)[:, None, :, :]
    shape = (*batch, m, p)
    if len(sa) == 1:
        shape = shape[:-2] + shape[-1:]
    if len(sb) == 1:
        shape = shape[:-1]
    rows = g.push_many(Op.AFFINE, parents.reshape(nb * m * p, k))
    if not shape:
        return wrap(g, rows[0])
    return Tensor._wrap_rows(g, rows, shape)


def stack(tensors, axis: int = 0) -> Tensor:
    """Tensors of one shape joined along a new ``axis`` (``numpy.stack``), no new rows."""
    tensors = list(tensors)
    if not tensors or not all(isinstance(t, Tensor) for t in tensors):
        raise TypeError("stack takes a non-empty sequence of Tensors")
    shape = tensors[0].shape
    for i, t in enumerate(tensors):
        if t.shape != shape:
            raise ValueError(f"stack: Tensor 0 has shape {shape} but Tensor {i} has shape {t.shape}")
        if t.graph is not tensors[0].graph:
            raise ValueError("stack: the Tensors belong to different graphs")
    values = np.empty((len(tensors), len(tensors[0]._values)), object)
    for i, t in enumerate(tensors):
        values[i, :] = t._values
    out = values.reshape((len(tensors), *shape))
    out = np.moveaxis(out, 0, _axes(axis, len(shape) + 1)[0])
    return Tensor._make(tensors[0].graph, out.reshape(-1).tolist(), out.shape)
