"""N-dimensional ``tm.Tensor`` (API.md "Tensor, N-dimensional"): shapes as NumPy's,
values and gradients against NumPy formulas and finite differences, and PyTorch
float64 where it is installed."""

from __future__ import annotations

import numpy as np
import pytest

import tinyml as tm
from tinyml import Tensor, Value


@pytest.fixture(autouse=True)
def own_graph():
    with tm.Graph() as g:
        yield g


def rng(seed=0):
    return np.random.default_rng(seed)


def test_any_rank_construction_and_shape():
    for shape in [(3,), (2, 3), (2, 3, 4), (1, 2, 1, 3)]:
        x = rng(0).normal(size=shape)
        t = Tensor(x)
        assert t.shape == shape and t.ndim == len(shape) and t.size == x.size
        np.testing.assert_array_equal(t.numpy(), x)
        np.testing.assert_array_equal(Tensor(x.tolist()).numpy(), x)


def test_indexing_follows_numpy_with_the_legacy_matrix_row():
    x = np.arange(24.0).reshape(2, 3, 4)
    t = Tensor(x)
    assert isinstance(t[1], Tensor) and t[1].shape == (3, 4)
    np.testing.assert_array_equal(t[1].numpy(), x[1])
    assert type(t[1, 2, 3]) is Value and t[1, 2, 3].data == 23.0
    for key in [
        (slice(None), 1),
        (0, slice(1, 3)),
        (Ellipsis, 2),
        (slice(None, None, -1), 0, slice(None, 2)),
    ]:
        np.testing.assert_array_equal(t[key].numpy(), x[key])
    m = Tensor(x[0])
    assert isinstance(m[1], list) and [v.data for v in m[1]] == list(x[0, 1])  # legacy rule
    assert isinstance(m[1, :], Tensor) and m[1, :].shape == (4,)
    assert [v.data for v in Tensor(x[0, 0])] == list(x[0, 0])  # iterating a 1-D Tensor gives Values
    with pytest.raises(IndexError):
        t[2]
    with pytest.raises(IndexError):
        t[0, 0, 0, 0]
    with pytest.raises(TypeError):
        t[0.5]


def test_reshape_transpose_flatten_add_no_rows(own_graph):
    x = np.arange(24.0).reshape(2, 3, 4)
    t = Tensor(x)
    n = len(own_graph)
    np.testing.assert_array_equal(t.reshape(4, -1).numpy(), x.reshape(4, -1))
    np.testing.assert_array_equal(t.reshape(2, 2, 2, 3).numpy(), x.reshape(2, 2, 2, 3))
    np.testing.assert_array_equal(t.T.numpy(), x.T)
    np.testing.assert_array_equal(t.transpose(1, 0, 2).numpy(), x.transpose(1, 0, 2))
    np.testing.assert_array_equal(t.flatten(1).numpy(), x.reshape(2, 12))
    assert len(own_graph) == n
    with pytest.raises(ValueError, match=r"\(2, 3, 4\)"):
        t.reshape(5, -1)
    with pytest.raises(ValueError):
        t.reshape(-1, -1, 2)


def test_broadcast_elementwise_against_numpy():
    r = rng(1)
    a, b, c = r.normal(size=(2, 1, 4)), r.normal(size=(3, 1)), r.normal(size=(4,))
    ta, tb = Tensor(a), Tensor(b)
    out = (ta * tb + c) / (1.5 + tb * tb)
    want = (a * b + c) / (1.5 + b * b)
    assert out.shape == (2, 3, 4)
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-14)
    w = r.normal(size=(2, 3, 4))
    (out * w).sum().backward()
    np.testing.assert_allclose(ta.grad, (w * b / (1.5 + b * b)).sum(axis=1, keepdims=True), rtol=1e-12)
    gb = w * (a * (1.5 + b * b) - (a * b + c) * 2 * b) / (1.5 + b * b) ** 2
    np.testing.assert_allclose(tb.grad, gb.sum(axis=(0, 2))[:, None], rtol=1e-12)
    with pytest.raises(ValueError, match=r"\(2, 1, 4\).*\(3,\)"):
        ta + Tensor(np.ones(3))


@pytest.mark.parametrize(
    "sa, sb",
    [
        ((3, 4), (4, 2)),
        ((2, 3, 4), (4, 5)),
        ((2, 1, 3, 4), (5, 4, 2)),
        ((4,), (4, 3)),
        ((2, 3, 4), (4,)),
        ((4,), (4,)),
    ],
)
def test_matmul_is_numpy_matmul(sa, sb):
    r = rng(2)
    a, b = r.normal(size=sa), r.normal(size=sb)
    ta, tb = Tensor(a), Tensor(b)
    out = ta @ tb
    want = a @ b
    if np.ndim(want) == 0:
        assert type(out) is Value
        np.testing.assert_allclose(out.data, want, rtol=1e-13)
        out.backward()
        np.testing.assert_allclose(ta.grad, b, rtol=1e-13)
        return
    assert out.shape == want.shape
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-13, atol=1e-14)
    w = r.normal(size=want.shape)
    (out * w).sum().backward()
    ea = np.zeros_like(a)
    eps = 1e-6
    for k in range(a.size):  # finite differences of sum(w * (a @ b)) in a (linear: exact up to rounding)
        d = np.zeros(a.size)
        d[k] = eps
        ea.flat[k] = ((((a + d.reshape(a.shape)) @ b) * w).sum() - ((a @ b) * w).sum()) / eps
    np.testing.assert_allclose(ta.grad, ea, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="matmul"):
        ta @ Tensor(np.ones((7, 2)))


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2), (1, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_sum_and_mean_over_axes(axis, keepdims):
    x = rng(3).normal(size=(2, 3, 4))
    t = Tensor(x)
    s, m = t.sum(axis, keepdims=keepdims), t.mean(axis, keepdims=keepdims)
    want_s, want_m = x.sum(axis=axis, keepdims=keepdims), x.mean(axis=axis, keepdims=keepdims)
    if axis is None and not keepdims:
        assert type(s) is Value and type(m) is Value
        np.testing.assert_allclose([s.data, m.data], [want_s, want_m], rtol=1e-13)
        return
    assert s.shape == want_s.shape and m.shape == want_m.shape
    np.testing.assert_allclose(s.numpy(), want_s, rtol=1e-13)
    np.testing.assert_allclose(m.numpy(), want_m, rtol=1e-13)
    w = rng(4).normal(size=want_m.shape)
    (m * w).sum().backward()
    count = x.size // want_m.size
    np.testing.assert_allclose(
        t.grad,
        np.broadcast_to(
            w.reshape(want_m.shape if keepdims else x.mean(axis=axis, keepdims=True).shape), x.shape
        )
        / count,
        rtol=1e-13,
    )


def test_reducing_the_last_dimension_gives_a_value():
    assert type(Tensor(np.ones(3)).sum(axis=0)) is Value
    with pytest.raises(ValueError, match="out of range"):
        Tensor(np.ones((2, 3))).sum(axis=2)


def test_softmax_and_log_softmax_against_numpy():
    x = rng(5).normal(size=(2, 3, 5)) * 10
    x[0, 0, 0] = 1000.0  # stable for large logits
    t = Tensor(x)
    ls = t.log_softmax(axis=-1)
    shifted = x - x.max(axis=-1, keepdims=True)
    want = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    np.testing.assert_allclose(ls.numpy(), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        t.softmax(axis=1).numpy(),
        np.exp(x - x.max(1, keepdims=True)) / np.exp(x - x.max(1, keepdims=True)).sum(1, keepdims=True),
        rtol=1e-12,
        atol=1e-300,
    )
    ls[1, 2, 3].backward()
    sm = np.exp(want[1, 2])
    g = -sm
    g[3] += 1
    np.testing.assert_allclose(t.grad[1, 2], g, rtol=1e-12, atol=1e-15)
    assert np.all(t.grad[0] == 0)


def test_backward_on_one_element_tensor_and_item():
    t = Tensor(np.array([[2.0, 3.0]]))
    s = (t * t).sum(axis=1, keepdims=True)
    assert s.shape == (1, 1) and s.item() == 13.0
    s.backward()
    np.testing.assert_array_equal(t.grad, [[4.0, 6.0]])
    with pytest.raises(ValueError, match="single value"):
        t.backward()


def test_elementary_functions_nd_against_torch():
    torch = pytest.importorskip("torch")
    x = rng(6).uniform(0.2, 3.0, size=(2, 2, 3))
    for name in ["exp", "log", "tanh", "relu", "sigmoid"]:
        t = Tensor(x)
        out = getattr(t, name)().log_softmax(axis=1)
        xt = torch.tensor(x, requires_grad=True)
        want = torch.log_softmax(getattr(torch, name)(xt), dim=1)
        np.testing.assert_allclose(out.numpy(), want.detach().numpy(), rtol=1e-12, atol=1e-14)
        w = rng(7).normal(size=x.shape)
        (out * w).sum().backward()
        (want * torch.tensor(w)).sum().backward()
        np.testing.assert_allclose(t.grad, xt.grad.numpy(), rtol=1e-10, atol=1e-13)
