"""Classification losses and penalties of ``tm.losses`` (API.md "Losses").

Each loss is checked in value and gradient against a NumPy formula written
here, and against PyTorch float64 where it is installed, including the
extremes the API promises (logits of +-1000, probabilities of exactly 0 and 1).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import tinyml as tm
from tinyml import Tensor, Value, losses


@pytest.fixture(autouse=True)
def own_graph():
    with tm.Graph() as g:
        yield g


def values(a) -> list[list[Value]]:
    return [[Value(float(x)) for x in row] for row in np.asarray(a, np.float64)]


def grads(rows) -> np.ndarray:
    return np.array([[v.grad for v in row] for row in rows])


def log_softmax(z: np.ndarray) -> np.ndarray:
    m = z.max(axis=1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


def softmax(z: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(z))


# ---------------------------------------------------------------------------
# cross_entropy
# ---------------------------------------------------------------------------
def test_cross_entropy_integer_labels_against_numpy():
    z = np.random.default_rng(0).normal(size=(5, 4)) * 3
    y = np.array([0, 3, 1, 1, 2])
    zv = values(z)
    loss = losses.cross_entropy(zv, y)
    want = -log_softmax(z)[np.arange(5), y].mean()
    assert loss.data == pytest.approx(want, rel=1e-13)
    loss.backward()
    onehot = np.eye(4)[y]
    np.testing.assert_allclose(grads(zv), (softmax(z) - onehot) / 5, rtol=1e-12, atol=1e-16)


def test_cross_entropy_probability_rows_against_numpy():
    r = np.random.default_rng(1)
    z = r.normal(size=(3, 4))
    t = r.dirichlet(np.ones(4), size=3)
    zv = values(z)
    loss = losses.cross_entropy(Tensor(zv), t)
    assert loss.data == pytest.approx(-(t * log_softmax(z)).sum(axis=1).mean(), rel=1e-13)
    loss.backward()
    np.testing.assert_allclose(grads(zv), (softmax(z) * t.sum(axis=1, keepdims=True) - t) / 3, rtol=1e-12)


@pytest.mark.parametrize("form", ["list", "array", "tensor", "values"])
def test_one_hot_rows_equal_integer_labels(form):
    z = np.random.default_rng(2).normal(size=(4, 3))
    y = [2, 0, 1, 2]
    onehot = np.eye(3)[y]
    targets = {
        "list": onehot.tolist(),
        "array": onehot,
        "tensor": Tensor(onehot),
        "values": values(onehot),
    }[form]
    za, zb = values(z), values(z)
    a = losses.cross_entropy(za, y)
    b = losses.cross_entropy(zb, targets)
    assert b.data == pytest.approx(a.data, rel=1e-13)
    a.backward()
    b.backward()
    np.testing.assert_allclose(grads(zb), grads(za), rtol=1e-12, atol=1e-16)


def test_cross_entropy_single_sample_forms():
    z = [0.5, -1.0, 2.0]
    want = -log_softmax(np.array([z]))[0, 2]
    for labels in (2, np.int64(2), [2], np.array([2]), [0, 0, 1], np.array([0.0, 0.0, 1.0])):
        loss = losses.cross_entropy([Value(v) for v in z], labels)
        assert loss.data == pytest.approx(want, rel=1e-13), labels
    # train.py's per-sample form: one row of outputs, one row of target Values
    loss = losses.cross_entropy([[Value(v) for v in z]], [[Value(0.0), Value(0.0), Value(1.0)]])
    assert loss.data == pytest.approx(want, rel=1e-13)


def test_cross_entropy_target_values_get_gradients():
    z = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    t = np.array([[0.2, 0.5, 0.3], [1.0, 0.0, 0.0]])
    zv, tv = values(z), values(t)
    loss = losses.cross_entropy(zv, tv)
    loss.backward()
    # d loss / d t_ij = -log_softmax(z)_ij / n
    np.testing.assert_allclose(grads(tv), -log_softmax(z) / 2, rtol=1e-12)
    np.testing.assert_allclose(grads(zv), (softmax(z) * t.sum(axis=1, keepdims=True) - t) / 2, rtol=1e-12)


@pytest.mark.parametrize("scale", [1000.0, -1000.0, 1e6])
def test_cross_entropy_is_stable_for_huge_logits(scale):
    z = np.array([[1.0, -1.0, 0.0], [0.0, 1.0, 1.0]]) * scale
    for labels in ([0, 1], np.eye(3)[[0, 1]]):
        zv = values(z)
        loss = losses.cross_entropy(zv, labels)
        loss.backward()
        assert np.isfinite(loss.data)
        g = grads(zv)
        assert np.all(np.isfinite(g))
        # rounding of lse = max + log(sum) is ulp(scale): 1e-13 at 1000, 1e-10 at 1e6
        np.testing.assert_allclose(g, (softmax(z) - np.eye(3)[[0, 1]]) / 2, rtol=1e-9, atol=1e-15)
        assert loss.data == pytest.approx(-log_softmax(z)[[0, 1], [0, 1]].mean(), rel=1e-12, abs=1e-9)


def test_cross_entropy_against_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    r = np.random.default_rng(3)
    cases = [
        (r.normal(size=(6, 5)) * 4, r.integers(0, 5, 6)),
        (np.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, 1000.0]]), np.array([1, 2])),
        (np.array([[1000.0, 999.0], [-1000.0, 1000.0]]), np.array([0, 0])),
        (r.normal(size=(4, 3)), r.dirichlet(np.ones(3), size=4)),
        (np.array([[1000.0, -1000.0, 0.0]]), np.array([[0.25, 0.25, 0.5]])),
    ]
    for z, y in cases:
        zv = values(z)
        tv = values(y) if y.ndim == 2 else None
        loss = losses.cross_entropy(Tensor(zv), y if tv is None else tv)
        loss.backward()
        zt = torch.tensor(z, requires_grad=True)
        yt = torch.tensor(y) if y.ndim == 1 else torch.tensor(y, requires_grad=True)
        lt = F.cross_entropy(zt, yt)
        lt.backward()
        assert loss.data == pytest.approx(lt.item(), rel=1e-12, abs=1e-12)
        np.testing.assert_allclose(grads(zv), zt.grad.numpy(), rtol=1e-10, atol=1e-15)
        if tv is not None:
            np.testing.assert_allclose(grads(tv), yt.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_cross_entropy_on_a_batch_forward_matches_per_sample_losses():
    model = tm.MLP(4, [6, 3], 0.1, "tanh", seed=0, output_activation="linear")
    x = np.random.default_rng(4).normal(size=(8, 4))
    y = [0, 1, 2, 2, 1, 0, 0, 1]
    batch = losses.cross_entropy(model(Tensor(x)), y)
    batch.backward()
    g_batch = [p.grad for p in model.parameters()]
    model.zero_grad()
    per_sample = sum((losses.cross_entropy(model(xi), yi) for xi, yi in zip(x, y)), Value(0.0)) / 8
    per_sample.backward()
    assert batch.data == pytest.approx(per_sample.data, rel=1e-13)
    np.testing.assert_allclose(g_batch, [p.grad for p in model.parameters()], rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize(
    "labels, error, match",
    [
        ([0, 1], ValueError, "3 samples.*2 labels"),
        ([0, 1, 3], ValueError, "out of range"),
        ([0, -1, 2], ValueError, "out of range"),
        ([0, 1.5, 2], ValueError, "whole-number"),
        ([0, True, 2], TypeError, "int"),
        (np.array([0, 1, 1], bool), TypeError, "int"),
        ([0, np.timedelta64(1, "s"), 2], TypeError, "int"),
        ([0, "1", 2], TypeError, "int"),
        ([0, None, 2], TypeError, "int"),
        (np.eye(3)[:2], ValueError, "3 samples.*2 target rows"),
        (np.ones((3, 2)), ValueError, "3 entries"),
        (np.zeros((3, 3, 1)), ValueError, "1-D or 2-D"),
        (1, ValueError, "one label given for 3 samples"),
        ([], ValueError, "no labels"),
        ([[0, 0, 1], [0, 1, 0], [1, 0, "x"]], TypeError, "target"),
    ],
)
def test_cross_entropy_bad_labels(labels, error, match):
    z = values(np.zeros((3, 3)))
    with pytest.raises(error, match=match):
        losses.cross_entropy(z, labels)


def test_cross_entropy_value_as_integer_label_is_a_type_error():
    z = values(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="one-hot"):
        losses.cross_entropy(z, [Value(0.0), Value(1.0)])
    with pytest.raises(TypeError, match="one-hot"):
        losses.cross_entropy(z[0], Value(1.0))


@pytest.mark.parametrize(
    "logits, error",
    [
        (np.zeros((2, 3)), TypeError),
        ([[1.0, 2.0]], TypeError),
        ([], ValueError),
        ([[]], ValueError),
        ("abc", TypeError),
        (Value(1.0), TypeError),
    ],
)
def test_cross_entropy_bad_logits(logits, error):
    with pytest.raises(error):
        losses.cross_entropy(logits, [0])


def test_cross_entropy_ragged_logits():
    with pytest.raises(ValueError, match="row 1"):
        losses.cross_entropy([[Value(1.0), Value(2.0)], [Value(1.0)]], [0, 0])


# ---------------------------------------------------------------------------
# binary_cross_entropy
# ---------------------------------------------------------------------------
def bce_reference(p: np.ndarray, y: np.ndarray) -> float:
    with np.errstate(divide="ignore"):
        lp = np.maximum(np.log(p), -100.0)
        l1p = np.maximum(np.log(1 - p), -100.0)
    return float(-(y * lp + (1 - y) * l1p).mean())


def test_bce_against_numpy():
    r = np.random.default_rng(5)
    p = r.uniform(0.01, 0.99, (4, 3))
    y = r.uniform(0, 1, (4, 3))
    pv = values(p)
    loss = losses.binary_cross_entropy(Tensor(pv), y)
    assert loss.data == pytest.approx(bce_reference(p, y), rel=1e-13)
    loss.backward()
    np.testing.assert_allclose(grads(pv), (p - y) / (p * (1 - p)) / 12, rtol=1e-12)


def test_bce_at_exact_zero_and_one_is_finite_and_clamped():
    p = np.array([0.0, 1.0, 0.0, 1.0, 0.5])
    y = np.array([1.0, 0.0, 0.0, 1.0, 1.0])
    pv = [Value(v) for v in p]
    loss = losses.binary_cross_entropy(pv, y)
    loss.backward()
    assert loss.data == pytest.approx(bce_reference(p, y), rel=1e-14)
    assert loss.data == pytest.approx((100 + 100 + 0 + 0 + np.log(2)) / 5, rel=1e-14)
    g = np.array([v.grad for v in pv])
    assert np.all(np.isfinite(g))
    # PyTorch's rule: (p - y) / max(p (1 - p), 1e-12)
    np.testing.assert_allclose(g, (p - y) / np.maximum(p * (1 - p), 1e-12) / 5, rtol=1e-14)


def test_bce_against_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    r = np.random.default_rng(6)
    # where p (1 - p) < 1e-12 both divide by that floor, which PyTorch rounds to float32
    for p, y, rtol in [
        (r.uniform(0.001, 0.999, 7), r.uniform(0, 1, 7), 1e-12),
        (np.array([0.0, 1.0, 0.0, 1.0, 1e-50, 1 - 1e-16]), np.array([1.0, 0.0, 0.0, 1.0, 1.0, 0.0]), 1e-8),
    ]:
        pv = [Value(v) for v in p]
        loss = losses.binary_cross_entropy(pv, y)
        loss.backward()
        pt = torch.tensor(p, requires_grad=True)
        lt = F.binary_cross_entropy(pt, torch.tensor(y))
        lt.backward()
        assert loss.data == pytest.approx(lt.item(), rel=1e-13)
        np.testing.assert_allclose([v.grad for v in pv], pt.grad.numpy(), rtol=rtol)


def test_bce_target_values_get_gradients():
    p = np.array([0.2, 0.7, 0.9])
    y = np.array([1.0, 0.0, 0.5])
    pv, yv = [Value(v) for v in p], [Value(v) for v in y]
    loss = losses.binary_cross_entropy(pv, yv)
    assert loss.data == pytest.approx(bce_reference(p, y), rel=1e-14)
    loss.backward()
    np.testing.assert_allclose([v.grad for v in yv], (np.log(1 - p) - np.log(p)) / 3, rtol=1e-13)
    np.testing.assert_allclose([v.grad for v in pv], (p - y) / (p * (1 - p)) / 3, rtol=1e-13)


def test_bce_errors():
    p = [Value(0.5), Value(0.5)]
    with pytest.raises(ValueError, match="2 predictions but 3 targets"):
        losses.binary_cross_entropy(p, [1, 0, 1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        losses.binary_cross_entropy(p, [1, 2])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        losses.binary_cross_entropy(p, [1, float("nan")])
    with pytest.raises(TypeError):
        losses.binary_cross_entropy([0.5, 0.5], [1, 0])
    with pytest.raises(TypeError):
        losses.binary_cross_entropy(p, [1, "0"])


# ---------------------------------------------------------------------------
# hinge
# ---------------------------------------------------------------------------
def test_hinge_against_numpy():
    s = np.array([2.0, 0.3, -0.5, -3.0, 0.7, -0.2])
    y = np.array([1, 1, 1, -1, -1, -1])
    sv = [Value(v) for v in s]
    loss = losses.hinge(sv, y)
    margin = 1 - y * s
    assert loss.data == pytest.approx(np.maximum(margin, 0).mean(), rel=1e-14)
    loss.backward()
    np.testing.assert_allclose([v.grad for v in sv], np.where(margin > 0, -y, 0) / 6, rtol=1e-15)


def test_hinge_with_label_values_and_tensor_scores():
    s = np.array([[0.5], [-2.0], [1.5]])
    y = np.array([-1.0, 1.0, 1.0])
    st, yv = Tensor(s), [Value(v) for v in y]
    loss = losses.hinge(st, yv)
    margin = 1 - y * s[:, 0]
    assert loss.data == pytest.approx(np.maximum(margin, 0).mean(), rel=1e-14)
    loss.backward()
    active = margin > 0
    np.testing.assert_allclose(st.grad[:, 0], np.where(active, -y, 0) / 3, rtol=1e-15)
    np.testing.assert_allclose([v.grad for v in yv], np.where(active, -s[:, 0], 0) / 3, rtol=1e-15)


def test_hinge_against_torch():
    torch = pytest.importorskip("torch")
    r = np.random.default_rng(7)
    s = r.normal(size=9) * 2
    y = r.choice([-1.0, 1.0], 9)
    sv = [Value(v) for v in s]
    loss = losses.hinge(sv, y)
    loss.backward()
    stt = torch.tensor(s, requires_grad=True)
    lt = torch.relu(1 - torch.tensor(y) * stt).mean()
    lt.backward()
    assert loss.data == pytest.approx(lt.item(), rel=1e-14)
    np.testing.assert_allclose([v.grad for v in sv], stt.grad.numpy(), rtol=1e-14)


def test_hinge_errors():
    s = [Value(0.5), Value(0.5)]
    with pytest.raises(ValueError, match=r"-1 or \+1"):
        losses.hinge(s, [1, 0])
    with pytest.raises(ValueError):
        losses.hinge(s, [1])
    with pytest.raises(TypeError):
        losses.hinge([0.5, 0.5], [1, -1])


# ---------------------------------------------------------------------------
# penalties
# ---------------------------------------------------------------------------
def test_penalties_values_and_gradients():
    p = np.array([0.5, -2.0, 0.0, 3.0])
    pv = [Value(v) for v in p]
    l1 = losses.l1_penalty(pv, 0.1)
    assert l1.data == pytest.approx(0.1 * np.abs(p).sum(), rel=1e-15)
    l1.backward()
    np.testing.assert_allclose([v.grad for v in pv], 0.1 * np.sign(p), rtol=1e-15)
    for v in pv:
        v.zero_grad()
    l2 = losses.l2_penalty(pv, 0.01)
    assert l2.data == pytest.approx(0.01 * (p**2).sum(), rel=1e-15)
    l2.backward()
    np.testing.assert_allclose([v.grad for v in pv], 0.02 * p, rtol=1e-15)


def test_penalties_accept_a_model_a_tensor_and_a_value_weight():
    model = tm.MLP(2, [3, 1], seed=0)
    params = np.array([p.data for p in model.parameters()])
    assert losses.l2_penalty(model, 0.5).data == pytest.approx(0.5 * (params**2).sum(), rel=1e-14)
    t = Tensor([[1.0, -2.0]])
    w = Value(0.3)
    pen = losses.l1_penalty(t, w)
    assert pen.data == pytest.approx(0.9)
    pen.backward()
    assert w.grad == pytest.approx(3.0)
    np.testing.assert_allclose(t.grad, [[0.3, -0.3]])


def test_penalty_added_to_a_loss_trains_toward_zero():
    """The eager regularisation loop: loss + penalty, backward, update."""
    model = tm.MLP(1, [1], 0.1, "linear", seed=0)
    before = np.abs([p.data for p in model.parameters()]).sum()
    for _ in range(20):
        loss = losses.mse(model([0.0]), [0.0]) + losses.l2_penalty(model, 1.0)
        model.zero_grad()
        loss.backward()
        model.update()
    assert np.abs([p.data for p in model.parameters()]).sum() < 0.1 * before


def test_penalty_errors():
    with pytest.raises(ValueError, match="no parameters"):
        losses.l1_penalty([], 0.1)
    with pytest.raises(TypeError, match="parameter 1"):
        losses.l2_penalty([Value(1.0), 2.0], 0.1)
    with pytest.raises(TypeError):
        losses.l2_penalty([Value(1.0)], "big")


@pytest.mark.parametrize("p", [1.5, -0.25])
def test_binary_cross_entropy_of_no_probability_is_nan(p):
    """PyTorch refuses such an input; a lazily evaluated loss cannot, so it is NaN
    (value and gradient), which training reports as divergence."""
    with tm.Graph():
        x = tm.Value(p)
        loss = tm.losses.binary_cross_entropy([x], [1.0])
        loss.backward()
        assert np.isnan(loss.data) and np.isnan(x.grad)


@pytest.mark.parametrize("s", [1e3, 1e10, 1e16])
def test_cross_entropy_keeps_its_precision_at_huge_logits(s):
    """Two equal logits cost log 2 however large they are (no lse - z_y cancellation),
    with integer labels, target rows, and in fit."""
    with tm.Graph():
        z = [tm.Value(s), tm.Value(s)]
        assert tm.losses.cross_entropy([z], [0]).data == math.log(2.0)
        assert tm.losses.cross_entropy([z], [[0.25, 0.75]]).data == math.log(2.0)
        model = tm.MLP(1, [2], 0.1, output_activation="linear", seed=0)
        for p in model.parameters():
            p.data = s  # weights and biases: both logits 2s on the input 1
        history = model.fit(np.ones((1, 1)), np.array([1]), epochs=1, loss="cross_entropy", progress=False)
        assert history.loss[0] == math.log(2.0)


def test_cross_entropy_is_one_row_per_sample():
    with tm.Graph() as g:
        z = tm.Tensor(np.zeros((100, 10)))
        before = len(g)
        tm.losses.cross_entropy(z, list(range(10)) * 10)
        assert len(g) - before == 100 + 2  # a CROSS_ENTROPY row per sample, then SUM and DIV_C
