"""``tm.Tensor`` (API.md "Tensor"): construction, access, arithmetic, matmul, batch forward.

Values and gradients are checked against NumPy formulas and finite differences,
and against PyTorch float64 where it is installed.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyml as tm
from tinyml import Op, Tensor, Value


@pytest.fixture(autouse=True)
def own_graph():
    with tm.Graph() as g:
        yield g


def rng(seed=0):
    return np.random.default_rng(seed)


def weighted_sum(t: Tensor, w: np.ndarray) -> Value:
    """sum(t * w): a scalar whose gradient w.r.t. t is w, to test backward with unequal weights."""
    return (t * w).sum()


# ---------------------------------------------------------------------------
# Construction
# ---------------------------------------------------------------------------
def test_from_nested_lists_and_numpy():
    t = Tensor([[1, 2, 3], [4, 5, 6]])
    assert t.shape == (2, 3) and len(t) == 2 and t.size == 6 and t.ndim == 2
    np.testing.assert_array_equal(t.numpy(), [[1, 2, 3], [4, 5, 6]])
    a = np.arange(6, dtype=np.int32).reshape(3, 2)
    u = Tensor(a)
    assert u.shape == (3, 2)
    out = u.numpy()
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, a)
    assert Tensor(np.array([[True, False]])).numpy().tolist() == [[1.0, 0.0]]


def test_from_values_keeps_the_values():
    a, b = Value(1.5), Value(-2.0)
    t = Tensor([[a, 3.0], [4, b]])
    assert t[0, 0] is a and t[1, 1] is b
    assert t[0, 1].is_leaf and t[0, 1].data == 3.0
    t.sum().backward()
    assert a.grad == 1.0 and b.grad == 1.0


def test_copy_constructor_shares_values():
    t = Tensor([[1.0, 2.0]])
    u = Tensor(t)
    assert u.shape == t.shape and u[0, 1] is t[0, 1]


def test_object_array_of_values():
    vs = np.empty((1, 2), dtype=object)
    vs[0, 0], vs[0, 1] = Value(1.0), Value(2.0)
    t = Tensor(vs)
    assert t[0, 1] is vs[0, 1]


@pytest.mark.parametrize(
    "bad",
    [
        [[1, 2], [3]],  # ragged
        [[1, 2], 3],
        [[[1, 2]], [[3, 4, 5]]],  # ragged at depth 3
        [],
        [[]],
        np.zeros((2, 0)),
        np.array(5.0),
    ],
)
def test_bad_shapes_are_value_errors(bad):
    # 1-D and 3-D data are Tensors since the second part of the API (N-D Tensor)
    with pytest.raises(ValueError):
        Tensor(bad)


@pytest.mark.parametrize(
    "bad", ["ab", 3.0, Value(1.0), None, [["a", 1]], np.array([["x"]]), np.ones((1, 1)) * 1j]
)
def test_bad_types_are_type_errors(bad):
    with pytest.raises(TypeError):
        Tensor(bad)


def test_values_of_two_graphs_are_rejected():
    other = tm.Graph()
    with other:
        foreign = Value(1.0)
    with pytest.raises(ValueError, match="graph"):
        Tensor([[Value(1.0), foreign]])


# ---------------------------------------------------------------------------
# Access, transpose, reshape
# ---------------------------------------------------------------------------
def test_indexing():
    t = Tensor(np.arange(12.0).reshape(3, 4))
    assert t[1, 2].data == 6.0 and t[-1, -1].data == 11.0
    assert [v.data for v in t[1]] == [4, 5, 6, 7]
    assert [v.data for v in t[1, 1:3]] == [5, 6]
    assert [v.data for v in t[:, 2]] == [2, 6, 10]
    np.testing.assert_array_equal(t[1:].numpy(), np.arange(4.0, 12).reshape(2, 4))
    np.testing.assert_array_equal(t[::2, 1:3].numpy(), [[1, 2], [9, 10]])
    assert [[v.data for v in row] for row in t] == np.arange(12.0).reshape(3, 4).tolist()
    assert t.rows[2][0] is t[2, 0]
    assert [v.data for v in t.flat_values()] == list(range(12))
    with pytest.raises(IndexError):
        t[3, 0]
    with pytest.raises(IndexError):
        t[0, -5]
    with pytest.raises(TypeError):
        t[0.5]
    with pytest.raises(IndexError):
        t[0, 0, 0]


def test_transpose_and_reshape_are_row_major_and_add_no_rows(own_graph):
    a = np.arange(6.0).reshape(2, 3)
    t = Tensor(a)
    n = len(own_graph)
    np.testing.assert_array_equal(t.T.numpy(), a.T)
    assert t.T[2, 1] is t[1, 2]
    np.testing.assert_array_equal(t.reshape(3, 2).numpy(), a.reshape(3, 2))
    np.testing.assert_array_equal(t.reshape((1, 6)).numpy(), a.reshape(1, 6))
    np.testing.assert_array_equal(t.reshape(-1, 1).numpy(), a.reshape(-1, 1))
    np.testing.assert_array_equal(t.T.reshape(2, 3).numpy(), a.T.reshape(2, 3))
    assert len(own_graph) == n
    for bad in [(4, 2), (5, -1), (-1, -1), (0, 6)]:
        with pytest.raises(ValueError, match=r"\(2, 3\)"):
            t.reshape(*bad)
    with pytest.raises(ValueError):
        t.reshape(1, 2, 4)
    with pytest.raises(TypeError):
        t.reshape(2.0, 3)


def test_repr_len_and_numpy_is_a_copy():
    t = Tensor([[1.0, 2.0]])
    assert repr(t).startswith("Tensor([[1., 2.]")
    arr = t.numpy()
    arr[0, 0] = 99.0
    assert t[0, 0].data == 1.0
    assert len(Tensor(np.zeros((4, 1)))) == 4


def test_cleared_graph_is_a_clear_error(own_graph):
    t = Tensor([[1.0]])
    own_graph.clear()
    assert "freed" in repr(t)
    with pytest.raises(RuntimeError, match="freed"):
        t.numpy()
    with pytest.raises(RuntimeError, match="freed"):
        t + 1


# ---------------------------------------------------------------------------
# Elementwise arithmetic and activations
# ---------------------------------------------------------------------------
BINARY = {
    "add": (lambda x, y: x + y, lambda x, y: (np.ones_like(x), np.ones_like(y))),
    "sub": (lambda x, y: x - y, lambda x, y: (np.ones_like(x), -np.ones_like(y))),
    "mul": (lambda x, y: x * y, lambda x, y: (y, x)),
    "div": (lambda x, y: x / y, lambda x, y: (1 / y, -x / y**2)),
}


@pytest.mark.parametrize("name", list(BINARY))
def test_elementwise_tensor_tensor_against_numpy(name):
    f, df = BINARY[name]
    r = rng(1)
    x, y = r.uniform(0.5, 2, (3, 4)), r.uniform(0.5, 2, (3, 4)) * r.choice([-1, 1], (3, 4))
    w = r.normal(size=(3, 4))
    a, b = Tensor(x), Tensor(y)
    out = f(a, b)
    assert isinstance(out, Tensor) and out.shape == (3, 4)
    np.testing.assert_allclose(out.numpy(), f(x, y), rtol=1e-15)
    weighted_sum(out, w).backward()
    gx, gy = df(x, y)
    np.testing.assert_allclose(a.grad, w * gx, rtol=1e-13)
    np.testing.assert_allclose(b.grad, w * gy, rtol=1e-13)


@pytest.mark.parametrize(
    "c", [2.5, -3, np.float64(0.5), np.array([[1.0, -2.0, 4.0]]), np.array([2.0, 3.0, -1.0])]
)
def test_elementwise_with_numbers_on_either_side(c):
    x = rng(2).uniform(0.5, 2.0, (2, 3))
    t = Tensor(x)
    for got, want in [
        (t + c, x + c),
        (c + t, c + x),
        (t - c, x - c),
        (c - t, c - x),
        (t * c, x * c),
        (c * t, c * x),
        (t / c, x / c),
        (c / t, c / x),
        (t**c, x**c),
        (-t, -x),
        (abs(-t), x),
    ]:
        assert isinstance(got, Tensor)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-15)


def test_reflected_constant_gradients():
    x = np.array([[0.5, 2.0]])
    t = Tensor(x)
    ((3.0 - t) + (4.0 / t) + 2 * t).sum().backward()
    np.testing.assert_allclose(t.grad, -1 - 4 / x**2 + 2, rtol=1e-15)


def test_broadcasting_rows_columns_and_scalar_values():
    r = rng(3)
    x, row, col = r.normal(size=(3, 2)), r.normal(size=(1, 2)), r.normal(size=(3, 1))
    a, b, c = Tensor(x), Tensor(row), Tensor(col)
    s = Value(1.5)
    out = (a + b) * c * s
    np.testing.assert_allclose(out.numpy(), (x + row) * col * 1.5, rtol=1e-14)
    w = r.normal(size=(3, 2))
    weighted_sum(out, w).backward()
    np.testing.assert_allclose(a.grad, w * col * 1.5, rtol=1e-13)
    np.testing.assert_allclose(b.grad, (w * col * 1.5).sum(axis=0, keepdims=True), rtol=1e-13)
    np.testing.assert_allclose(c.grad, (w * (x + row) * 1.5).sum(axis=1, keepdims=True), rtol=1e-13)
    np.testing.assert_allclose(s.grad, (w * (x + row) * col).sum(), rtol=1e-13)


@pytest.mark.parametrize("op", ["__add__", "__sub__", "__mul__", "__truediv__"])
def test_shape_mismatch_names_both_shapes(op):
    a, b = Tensor(np.ones((2, 3))), Tensor(np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        getattr(a, op)(b)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2,\)"):  # the array's own shape
        getattr(a, op)(np.ones(2))


def test_bad_operands():
    t = Tensor([[1.0]])
    with pytest.raises(TypeError):
        t + "a"
    with pytest.raises(TypeError):
        t ** Tensor([[2.0]])
    other = tm.Graph()
    with other:
        u = Tensor([[1.0]])
    with pytest.raises(ValueError, match="graph"):
        t + u


ACTIVATIONS = {
    "tanh": (lambda t: t.tanh(), np.tanh),
    "relu": (lambda t: t.relu(), lambda x: np.maximum(x, 0)),
    "sigmoid": (lambda t: t.sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
    "sigm": (lambda t: t.sigm(), lambda x: 1 / (1 + np.exp(-x))),
    "leaky_relu": (lambda t: t.leaky_relu(0.1), lambda x: np.where(x > 0, x, 0.1 * x)),
    "silu": (lambda t: t.silu(), lambda x: x / (1 + np.exp(-x))),
    "softplus": (lambda t: t.softplus(), lambda x: np.log1p(np.exp(x))),
    "abs": (lambda t: t.abs(), np.abs),
    "exp": (lambda t: t.exp(), np.exp),
    "log": (lambda t: t.abs().log(), lambda x: np.log(np.abs(x))),
    "gelu_tanh": (
        lambda t: t.gelu(approximate="tanh"),
        lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))),
    ),
    "sqrt": (lambda t: t.abs().sqrt(), lambda x: np.sqrt(np.abs(x))),
}


def finite_difference(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = h
        g[idx] = (f(x + e) - f(x - e)) / (2 * h)
    return g


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activations_against_numpy_and_finite_differences(name):
    method, ref = ACTIVATIONS[name]
    x = rng(4).uniform(-2, 2, (3, 3))
    x[np.abs(x) < 0.05] = 0.3  # keep away from kinks
    w = rng(5).normal(size=(3, 3))
    t = Tensor(x)
    out = method(t)
    assert isinstance(out, Tensor) and out.shape == (3, 3)
    np.testing.assert_allclose(out.numpy(), ref(x), rtol=1e-13, atol=1e-15)
    weighted_sum(out, w).backward()
    np.testing.assert_allclose(
        t.grad, finite_difference(lambda z: (ref(z) * w).sum(), x), rtol=1e-6, atol=1e-8
    )


def test_gelu_rejects_unknown_approximation():
    with pytest.raises(ValueError):
        Tensor([[1.0]]).gelu(approximate="fast")


def test_activations_against_torch():
    torch = pytest.importorskip("torch")
    x = rng(6).uniform(-3, 3, (4, 5))
    w = rng(7).normal(size=(4, 5))
    cases = [
        (lambda t: t.tanh(), torch.tanh),
        (lambda t: t.relu(), torch.relu),
        (lambda t: t.sigmoid(), torch.sigmoid),
        (lambda t: t.leaky_relu(0.2), lambda z: torch.nn.functional.leaky_relu(z, 0.2)),
        (lambda t: t.gelu(), lambda z: torch.nn.functional.gelu(z)),
        (lambda t: t.gelu("tanh"), lambda z: torch.nn.functional.gelu(z, approximate="tanh")),
        (lambda t: t.silu(), torch.nn.functional.silu),
        (lambda t: t.softplus(), torch.nn.functional.softplus),
        (lambda t: t.abs(), torch.abs),
        (lambda t: t.exp(), torch.exp),
        (lambda t: t.abs().log(), lambda z: z.abs().log()),
    ]
    for ours, theirs in cases:
        t = Tensor(x)
        weighted_sum(ours(t), w).backward()
        z = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        out = theirs(z)
        (out * torch.tensor(w)).sum().backward()
        np.testing.assert_allclose(ours(Tensor(x)).numpy(), out.detach().numpy(), rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(t.grad, z.grad.numpy(), rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------------------
# Reductions, gradients
# ---------------------------------------------------------------------------
def test_sum_and_mean(own_graph):
    x = rng(8).normal(size=(3, 4))
    t = Tensor(x)
    n = len(own_graph)
    s = t.sum()
    assert isinstance(s, Value) and len(own_graph) == n + 1
    assert own_graph.op[s._row] == Op.SUM
    assert s.data == pytest.approx(x.sum(), rel=1e-14)
    assert t.mean().data == pytest.approx(x.mean(), rel=1e-14)
    # reductions over an axis drop it, as NumPy (API.md "Clarifications of the second part")
    np.testing.assert_allclose(t.sum(axis=0).numpy(), x.sum(axis=0), rtol=1e-14)
    np.testing.assert_allclose(t.sum(axis=1).numpy(), x.sum(axis=1), rtol=1e-14)
    np.testing.assert_allclose(t.mean(axis=0).numpy(), x.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(t.mean(axis=-1).numpy(), x.mean(axis=1), rtol=1e-14)
    np.testing.assert_allclose(t.sum(axis=0, keepdims=True).numpy(), x.sum(axis=0, keepdims=True))
    t.mean().backward()
    np.testing.assert_allclose(t.grad, np.full((3, 4), 1 / 12), rtol=1e-15)
    with pytest.raises(ValueError):
        t.sum(axis=2)


def test_grad_accumulates_and_zero_grad():
    t = Tensor([[1.0, 2.0], [3.0, 4.0]])
    loss = (t * t).sum()
    loss.backward()
    loss.backward()
    np.testing.assert_array_equal(t.grad, 4 * t.numpy())
    t.zero_grad()
    np.testing.assert_array_equal(t.grad, np.zeros((2, 2)))
    assert t.grad.dtype == np.float64


# ---------------------------------------------------------------------------
# Matrix product
# ---------------------------------------------------------------------------
def test_matmul_values_and_gradients_against_numpy():
    r = rng(9)
    x, y, w = r.normal(size=(3, 5)), r.normal(size=(5, 2)), r.normal(size=(3, 2))
    a, b = Tensor(x), Tensor(y)
    out = a @ b
    assert out.shape == (3, 2)
    np.testing.assert_allclose(out.numpy(), x @ y, rtol=1e-13)
    weighted_sum(out, w).backward()
    np.testing.assert_allclose(a.grad, w @ y.T, rtol=1e-13)
    np.testing.assert_allclose(b.grad, x.T @ w, rtol=1e-13)


def test_matmul_is_one_affine_row_per_output():
    with tm.Graph(capacity=1 << 14) as g:  # room enough: no compaction renumbers rows
        a = Tensor(np.ones((4, 7)))
        b = Tensor(np.ones((7, 3)))
        before = len(g)
        out = a @ b
        # one AFFINE row per output element, plus the one zero leaf they share as bias
        assert len(g) - before == 4 * 3 + 1
        rows = [v._row for v in out.flat_values()]
        assert all(g.op[r] == Op.AFFINE for r in rows)
        assert all(g.pstart[r + 1] - g.pstart[r] == 2 * 7 + 1 for r in rows)
        assert len({int(g.pidx[g.pstart[r]]) for r in rows}) == 1
        np.testing.assert_array_equal(out.numpy(), np.full((4, 3), 7.0))


def test_matmul_with_arrays_and_values():
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    t = Tensor(x)
    np.testing.assert_allclose((t @ np.eye(2)).numpy(), x)
    np.testing.assert_allclose((np.eye(2) @ t).numpy(), x)
    np.testing.assert_allclose((t @ [[1], [1]]).numpy(), [[3], [7]])
    v = [[Value(2.0)], [Value(-1.0)]]
    out = t @ Tensor(v)
    out.sum().backward()
    assert v[0][0].grad == 4.0 and v[1][0].grad == 6.0


def test_matmul_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 3\)"):
        Tensor(np.ones((2, 3))) @ Tensor(np.ones((2, 3)))
    with pytest.raises(TypeError):
        Tensor(np.ones((2, 3))) @ 2.0


def test_matmul_against_torch():
    torch = pytest.importorskip("torch")
    r = rng(10)
    x, y, w = r.normal(size=(4, 6)), r.normal(size=(6, 3)), r.normal(size=(4, 3))
    a, b = Tensor(x), Tensor(y)
    ((a @ b).tanh() * w).sum().backward()
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.tensor(y, requires_grad=True)
    out = torch.tanh(xt @ yt)
    (out * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose((Tensor(x) @ Tensor(y)).tanh().numpy(), out.detach().numpy(), rtol=1e-13)
    np.testing.assert_allclose(a.grad, xt.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(b.grad, yt.grad.numpy(), rtol=1e-12)


@settings(max_examples=25, deadline=None)
@given(
    m=st.integers(1, 4),
    n=st.integers(1, 4),
    p=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
)
def test_matmul_chain_property(m, n, p, seed):
    """(x @ y + x2 @ y) * c matches NumPy in value and gradient for random shapes."""
    r = np.random.default_rng(seed)
    x, x2, y = r.normal(size=(m, n)), r.normal(size=(m, n)), r.normal(size=(n, p))
    c = r.normal(size=(1, p))
    with tm.Graph():
        a, a2, b = Tensor(x), Tensor(x2), Tensor(y)
        out = (a @ b + a2 @ b) * c
        np.testing.assert_allclose(out.numpy(), (x @ y + x2 @ y) * c, rtol=1e-12, atol=1e-12)
        out.sum().backward()
        g = np.ones((m, p)) * c
        np.testing.assert_allclose(b.grad, (x + x2).T @ g, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(a.grad, g @ y.T, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------
# Batch forward: model(tensor)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [
        lambda: tm.MLP(3, [5, 4, 2], 0.1, "tanh", seed=1),
        lambda: tm.MLP(3, [4, 1], 0.1, "relu", seed=2, output_activation="sigmoid"),
        lambda: tm.Layer(3, 4, "gelu", seed=3),
        lambda: tm.Neuron(3, "linear", seed=4),
    ],
)
def test_batch_forward_equals_row_by_row(make):
    model = make()
    x = rng(11).normal(size=(6, 3))
    w = rng(12).normal(size=(6, 4))
    xt = Tensor(x)
    out = model(xt)
    assert isinstance(out, Tensor)
    k = out.shape[1]
    assert out.shape == (6, k)
    weighted_sum(out, w[:, :k]).backward()
    batch_values = out.numpy()
    batch_param_grads = np.array([p.grad for p in model.parameters()])
    batch_input_grads = xt.grad
    model.zero_grad()

    xv = [[Value(v) for v in row] for row in x]
    outs = []
    for row in xv:
        o = model(row)
        outs.append(o if isinstance(o, list) else [o])
    np.testing.assert_array_equal(batch_values, [[o.data for o in row] for row in outs])
    total = sum((o * float(w[i, j]) for i, row in enumerate(outs) for j, o in enumerate(row)), Value(0.0))
    total.backward()
    np.testing.assert_allclose(
        batch_param_grads, [p.grad for p in model.parameters()], rtol=1e-13, atol=1e-15
    )
    np.testing.assert_allclose(
        batch_input_grads, [[v.grad for v in row] for row in xv], rtol=1e-13, atol=1e-15
    )


def test_batch_forward_adds_the_rows_of_row_by_row_calls(own_graph):
    model = tm.MLP(2, [3, 1], seed=0)
    x = rng(14).normal(size=(5, 2))
    xt = Tensor(x)
    xv = [[Value(v) for v in row] for row in x]
    n = len(own_graph)
    model(xt)
    batch_rows = len(own_graph) - n
    n = len(own_graph)
    for row in xv:
        model(row)
    assert batch_rows == len(own_graph) - n


def test_batch_forward_wrong_width_names_expected_and_actual():
    model = tm.MLP(3, [2], seed=0)
    with pytest.raises(ValueError, match=r"expected 3.*\(4, 2\)"):
        model(Tensor(np.ones((4, 2))))
    with pytest.raises(ValueError, match="expected 3"):
        tm.Layer(3, 2)(Tensor(np.ones((1, 5))))


def test_batch_forward_other_graph_is_rejected():
    with tm.Graph():
        model = tm.MLP(2, [1], seed=0)
    with pytest.raises(ValueError, match="graph"):
        model(Tensor(np.ones((1, 2))))


def test_batch_forward_survives_compaction():
    """A small tape compacts while the batch is built; results still match NumPy."""
    with tm.Graph(capacity=64):
        model = tm.MLP(2, [3, 1], 0.1, "tanh", seed=5)
        x = rng(13).normal(size=(20, 2))
        ws = [[n.bias.data] + [w.data for w in n.weights] for layer in model.layers for n in layer.neurons]
        for _ in range(3):
            out = model(Tensor(x))
        h = np.tanh(x @ np.array([w[1:] for w in ws[:3]]).T + np.array([w[0] for w in ws[:3]]))
        want = np.tanh(h @ np.array(ws[3][1:]) + ws[3][0])[:, None]
        np.testing.assert_allclose(out.numpy(), want, rtol=1e-13)


def test_complex_arrays_are_refused_not_truncated():
    with tm.Graph():
        t = tm.Tensor([[1.0, 2.0]])
        with pytest.raises(TypeError, match="complex"):
            t + np.array([[1j, 1j]])
        with pytest.raises(TypeError, match="real numbers"):
            tm.Tensor(np.array([[1j, 2.0]]))
