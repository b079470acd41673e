"""Recurrent layers (API.md, the recurrent bullets): RNN, LSTM, GRU and their cells.

Outputs, final states, input, initial-state and parameter gradients against the
NumPy reference in ``tests/recurrent_reference.py`` (gradients by central
differences) and against PyTorch float64 where it is installed; compiled
``fit`` on (n, T, features) against PyTorch's training loop; a 10,000-step
sequence; divergence; the errors a user meets.
"""

from __future__ import annotations

import numpy as np
import pytest

import tinyml as tm
from tests import recurrent_reference as ref
from tinyml import Tensor


@pytest.fixture(autouse=True)
def own_graph():
    with tm.Graph() as g:
        yield g


def rng(seed=0):
    return np.random.default_rng(seed)


KINDS = {"RNN": "RNN_TANH", "LSTM": "LSTM", "GRU": "GRU"}


def make(kind, F=3, H=4, L=1, **kw):
    return getattr(tm, kind)(F, H, num_layers=L, seed=7, **kw)


def forward(m, kind, x, h0=None, c0=None):
    """tinyml forward returning (output, h_n, c_n or None)."""
    hx = None
    if h0 is not None:
        hx = (h0, c0) if kind == "LSTM" else h0
    out, st = m(x, hx)
    if kind == "LSTM":
        return out, st[0], st[1]
    return out, st, None


# ---------------------------------------------------------------------------
# Against the NumPy reference (no torch needed)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("L", [1, 2])
@pytest.mark.parametrize("init", [False, True])
def test_forward_against_numpy(kind, L, init):
    m = make(kind, L=L)
    params = m.state_dict()
    x = rng(1).normal(size=(2, 5, 3))
    h0 = rng(2).normal(size=(L, 2, 4)) if init else None
    c0 = rng(3).normal(size=(L, 2, 4)) if init else None
    out, hn, cn = forward(
        m, kind, Tensor(x), None if h0 is None else Tensor(h0), None if c0 is None else Tensor(c0)
    )
    want_out, want_h, want_c = ref.run(KINDS[kind], params, x, L, h0, c0)
    assert out.shape == (2, 5, 4) and hn.shape == (L, 2, 4)
    np.testing.assert_allclose(out.numpy(), want_out, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(hn.numpy(), want_h, rtol=1e-12, atol=1e-13)
    if kind == "LSTM":
        np.testing.assert_allclose(cn.numpy(), want_c, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_gradients_against_finite_differences(kind):
    """d(loss)/d(input, h0, every parameter) for 2 layers with an initial state."""
    L = 2
    m = make(kind, F=2, H=3, L=L)
    params = m.state_dict()
    r = rng(4)
    x = r.normal(size=(2, 4, 2))
    h0 = r.normal(size=(L, 2, 3))
    c0 = r.normal(size=(L, 2, 3))
    wo = r.normal(size=(2, 4, 3))

    def loss_np():
        out, h, c = ref.run(KINDS[kind], params, x, L, h0, c0 if kind == "LSTM" else None)
        return float((out * wo).sum() + (h * h).sum() + (0.5 * c).sum())

    tx, th, tc = Tensor(x), Tensor(h0), Tensor(c0)
    out, hn, cn = forward(m, kind, tx, th, tc)
    loss = (out * wo).sum() + (hn * hn).sum()
    if kind == "LSTM":
        loss = loss + (cn * 0.5).sum()
    m.zero_grad()
    loss.backward()
    assert loss.data == pytest.approx(loss_np(), rel=1e-12)
    np.testing.assert_allclose(tx.grad, ref.numeric_grad(loss_np, x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(th.grad, ref.numeric_grad(loss_np, h0), rtol=1e-6, atol=1e-7)
    if kind == "LSTM":
        np.testing.assert_allclose(tc.grad, ref.numeric_grad(loss_np, c0), rtol=1e-6, atol=1e-7)
    for name, p in m.named_parameters():
        np.testing.assert_allclose(
            p.grad, ref.numeric_grad(loss_np, params[name]), rtol=1e-6, atol=1e-7, err_msg=name
        )


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_unbatched_is_a_batch_of_one(kind):
    m = make(kind, L=2)
    x = rng(5).normal(size=(6, 3))
    out, hn, cn = forward(m, kind, Tensor(x))
    b_out, b_hn, b_cn = forward(m, kind, Tensor(x[None]))
    assert out.shape == (6, 4) and hn.shape == (2, 4)
    np.testing.assert_array_equal(out.numpy(), b_out.numpy()[0])
    np.testing.assert_array_equal(hn.numpy(), b_hn.numpy()[:, 0])
    if kind == "LSTM":
        assert cn.shape == (2, 4)
        np.testing.assert_array_equal(cn.numpy(), b_cn.numpy()[:, 0])


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_cells_against_numpy(kind):
    cell = getattr(tm, kind + "Cell")(3, 4, seed=2)
    p = cell.state_dict()
    assert list(p) == ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    x = rng(6).normal(size=(2, 3))
    h = rng(7).normal(size=(2, 4))
    c = rng(8).normal(size=(2, 4))
    args = (p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"])
    for state in (None, "given"):
        hh = np.zeros((2, 4)) if state is None else h
        cc = np.zeros((2, 4)) if state is None else c
        want_h, want_c = ref.cell(KINDS[kind], x, hh, cc, *args)
        if kind == "LSTM":
            got = cell(Tensor(x)) if state is None else cell(Tensor(x), (Tensor(h), Tensor(c)))
            np.testing.assert_allclose(got[0].numpy(), want_h, rtol=1e-12, atol=1e-13)
            np.testing.assert_allclose(got[1].numpy(), want_c, rtol=1e-12, atol=1e-13)
        else:
            got = cell(Tensor(x)) if state is None else cell(Tensor(x), Tensor(h))
            np.testing.assert_allclose(got.numpy(), want_h, rtol=1e-12, atol=1e-13)
    one = cell(Tensor(x[0]))  # unbatched (input_size,)
    assert (one[0] if kind == "LSTM" else one).shape == (4,)


def test_relu_rnn_and_no_bias_against_numpy():
    for m, kind in ((tm.RNN(3, 4, 2, "relu", seed=1), "RNN_RELU"), (tm.GRU(3, 4, bias=False, seed=1), "GRU")):
        x = rng(9).normal(size=(2, 5, 3))
        out, _ = m(Tensor(x))
        np.testing.assert_allclose(out.numpy(), ref.run(kind, m.state_dict(), x, m.num_layers)[0], rtol=1e-12)
    assert list(tm.LSTM(2, 3, bias=False).state_dict()) == ["weight_ih_l0", "weight_hh_l0"]


def test_parameters_shapes_and_initialisation():
    m = tm.LSTM(3, 5, num_layers=2, seed=0)
    shapes = {k: v.shape for k, v in m.state_dict().items()}
    assert shapes == {
        "weight_ih_l0": (20, 3),
        "weight_hh_l0": (20, 5),
        "bias_ih_l0": (20,),
        "bias_hh_l0": (20,),
        "weight_ih_l1": (20, 5),
        "weight_hh_l1": (20, 5),
        "bias_ih_l1": (20,),
        "bias_hh_l1": (20,),
    }
    values = np.concatenate([v.ravel() for v in m.state_dict().values()])
    bound = 1 / np.sqrt(5)
    assert np.all(np.abs(values) <= bound) and values.std() > bound / 3  # uniform in +-bound
    again = tm.LSTM(3, 5, num_layers=2, seed=0).state_dict()
    assert all(np.array_equal(again[k], v) for k, v in m.state_dict().items())
    assert len(m.parameters()) == values.size
    assert tm.GRU(2, 3).state_dict()["weight_hh_l0"].shape == (9, 3)


# ---------------------------------------------------------------------------
# Against PyTorch float64
# ---------------------------------------------------------------------------
def torch_pair(kind, L, **kw):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    cls = {"RNN": torch.nn.RNN, "LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}[kind]
    t = cls(3, 4, num_layers=L, batch_first=True, **kw).double()
    m = make(kind, L=L, **kw)
    m.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})  # one line
    return torch, t, m


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("L", [1, 2])
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("init", [False, True])
def test_against_torch(kind, L, batched, init):
    torch, t, m = torch_pair(kind, L)
    r = rng(11)
    x = r.normal(size=(2, 5, 3) if batched else (5, 3))
    hs = (L, 2, 4) if batched else (L, 4)
    h0, c0 = r.normal(size=hs), r.normal(size=hs)
    xt = torch.tensor(x, requires_grad=True)
    h0t, c0t = torch.tensor(h0, requires_grad=True), torch.tensor(c0, requires_grad=True)
    hx_t = None if not init else ((h0t, c0t) if kind == "LSTM" else h0t)
    out_t, st_t = t(xt, hx_t)
    hn_t, cn_t = st_t if kind == "LSTM" else (st_t, None)
    tx, th, tc = Tensor(x), Tensor(h0), Tensor(c0)
    out, hn, cn = forward(m, kind, tx, th if init else None, tc if init else None)
    assert out.shape == tuple(out_t.shape) and hn.shape == tuple(hn_t.shape)
    np.testing.assert_allclose(out.numpy(), out_t.detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(hn.numpy(), hn_t.detach().numpy(), rtol=1e-12, atol=1e-13)
    wo = r.normal(size=out.shape)
    loss_t = (out_t * torch.tensor(wo)).sum() + (hn_t**2).sum()
    loss = (out * wo).sum() + (hn * hn).sum()
    if kind == "LSTM":
        assert cn.shape == tuple(cn_t.shape)
        np.testing.assert_allclose(cn.numpy(), cn_t.detach().numpy(), rtol=1e-12, atol=1e-13)
        loss_t = loss_t + cn_t.sum() * 0.5
        loss = loss + cn.sum() * 0.5
    loss_t.backward()
    m.zero_grad()
    loss.backward()
    np.testing.assert_allclose(tx.grad, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    if init:
        np.testing.assert_allclose(th.grad, h0t.grad.numpy(), rtol=1e-10, atol=1e-12)
        if kind == "LSTM":
            np.testing.assert_allclose(tc.grad, c0t.grad.numpy(), rtol=1e-10, atol=1e-12)
    for name, p in t.named_parameters():
        np.testing.assert_allclose(
            getattr(m, name).grad, p.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name
        )


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_cells_against_torch_and_state_dict_both_ways(kind):
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    t = getattr(torch.nn, kind + "Cell")(3, 4).double()
    cell = getattr(tm, kind + "Cell")(3, 4, seed=0)
    # tinyml -> torch, one line
    t.load_state_dict({k: torch.tensor(v) for k, v in cell.state_dict().items()})
    x = rng(12).normal(size=(2, 3))
    h = rng(13).normal(size=(2, 4))
    c = rng(14).normal(size=(2, 4))
    xt = torch.tensor(x, requires_grad=True)
    tx = Tensor(x)
    if kind == "LSTM":
        ht, ct = t(xt, (torch.tensor(h), torch.tensor(c)))
        hh, cc = cell(tx, (Tensor(h), Tensor(c)))
        (ht.sum() + 2 * ct.sum()).backward()
        loss = hh.sum() + cc.sum() * 2.0
        np.testing.assert_allclose(cc.numpy(), ct.detach().numpy(), rtol=1e-12)
    else:
        ht = t(xt, torch.tensor(h))
        hh = cell(tx, Tensor(h))
        ht.sum().backward()
        loss = hh.sum()
    np.testing.assert_allclose(hh.numpy(), ht.detach().numpy(), rtol=1e-12)
    cell.zero_grad()
    loss.backward()
    np.testing.assert_allclose(tx.grad, xt.grad.numpy(), rtol=1e-10)
    for name, p in t.named_parameters():
        np.testing.assert_allclose(getattr(cell, name).grad, p.grad.numpy(), rtol=1e-10, err_msg=name)


class LastStep(tm.Module):
    """The usual head: a recurrent layer, then a Linear on the last step's output."""

    def __init__(self, kind, F=1, H=5, L=1, **kw):
        super().__init__()
        self.rnn = getattr(tm, kind)(F, H, num_layers=L, seed=3, **kw)
        self.head = tm.Linear(H, 1, seed=4)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1, :])


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_fit_matches_torch_training_loop(kind):
    """Compiled fit on X (n, T, features), mini-batches in order, plain SGD, against
    PyTorch's loop over the same batches from the same weights."""
    torch = pytest.importorskip("torch")
    r = rng(15)
    X = r.normal(size=(12, 6, 2))
    Y = np.tanh(X.sum(axis=(1, 2)))[:, None]
    net = LastStep(kind, F=2, L=2)
    cls = {"RNN": torch.nn.RNN, "LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}[kind]

    class TNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = cls(2, 5, num_layers=2, batch_first=True).double()
            self.head = torch.nn.Linear(5, 1).double()

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1, :])

    tnet = TNet()
    tnet.load_state_dict({k: torch.tensor(v) for k, v in net.state_dict().items()})
    opt = torch.optim.SGD(tnet.parameters(), lr=0.1)
    losses = []
    for _ in range(3):
        total = 0.0
        for b in range(0, 12, 4):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(tnet(torch.tensor(X[b : b + 4])), torch.tensor(Y[b : b + 4]))
            loss.backward()
            opt.step()
            total += loss.item() * 4
        losses.append(total / 12)
    history = net.fit(X, Y, epochs=3, batch_size=4, lr=0.1, shuffle=False, report_every=1, progress=False)
    np.testing.assert_allclose(history.loss, losses, rtol=1e-10)
    for k, v in tnet.state_dict().items():
        np.testing.assert_allclose(net.state_dict()[k], v.numpy(), rtol=1e-9, atol=1e-12, err_msg=k)
    np.testing.assert_allclose(net.predict(X), tnet(torch.tensor(X)).detach().numpy(), rtol=1e-10, atol=1e-12)


def test_fit_learns_a_sequence_task():
    """An LSTM reading the last step learns the sum of a sequence (with no torch)."""
    r = rng(16)
    X = r.uniform(-1, 1, size=(64, 8, 1))
    Y = X.sum(axis=1) / 4
    net = LastStep("LSTM", H=8)
    before = float(np.mean((net.predict(X) - Y) ** 2))
    history = net.fit(X, Y, epochs=60, batch_size=16, lr=0.1, seed=0, progress=False)
    after = float(np.mean((net.predict(X) - Y) ** 2))
    assert after < 0.2 * before
    assert history.loss[-1] < 0.3 * history.loss[0]


def test_long_sequence_trains_without_recursion_or_blow_up():
    """T = 10,000: the program is rows proportional to T, the sweeps are loops (no
    recursion), the eager graph's backward too; memory is rows x lanes."""
    T = 10_000
    r = rng(17)
    X = r.normal(size=(4, T, 1)) * 0.1
    Y = X.mean(axis=1)
    net = LastStep("LSTM", H=2)
    history = net.fit(X, Y, epochs=2, batch_size=2, lr=0.01, shuffle=False, progress=False)
    assert history.epochs_run == 2 and np.all(np.isfinite(history.loss))
    program = next(iter(net._programs.values()))[0]
    assert 7 * 2 * T <= len(program) <= 8 * 2 * T + 100  # 7 rows per unit and step, plus leaves
    # the eager graph over the same sequence: backward through 10,000 steps
    out, (h, c) = net.rnn(Tensor(X[0]))
    loss = (h * h).sum()
    net.zero_grad()
    loss.backward()
    assert np.all(np.isfinite(net.rnn.weight_hh_l0.grad)) and np.any(net.rnn.weight_hh_l0.grad != 0)


def test_exploding_gradient_is_reported_with_its_epoch():
    """A relu RNN whose recurrent weights grow with each step of training explodes;
    fit stops with TrainingDiverged at the failing epoch, parameters still finite."""
    r = rng(18)
    X = np.abs(r.normal(size=(8, 200, 1)))
    Y = np.ones((8, 1)) * 1e3
    net = LastStep("RNN", H=3, nonlinearity="relu")
    sd = net.rnn.state_dict()
    sd["weight_hh_l0"] = np.eye(3) * 0.9
    sd["weight_ih_l0"] = np.full((3, 1), 0.1)
    net.rnn.load_state_dict(sd)
    with pytest.raises(tm.TrainingDiverged) as info:
        net.fit(X, Y, epochs=200, lr=1e-3, progress=False)
    e = info.value
    assert e.epoch > 0 and len(e.history.loss) >= 1
    assert e.history.epoch[-1] < e.epoch
    assert all(np.all(np.isfinite(v)) for v in net.state_dict().values())


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------
def test_errors():
    m = tm.LSTM(3, 4, num_layers=2)
    with pytest.raises(ValueError, match=r"\(N, T, 3\).*last dimension 5"):
        m(Tensor(np.zeros((2, 6, 5))))
    with pytest.raises(ValueError, match=r"unbatched sequence.*reshape it to\s+\(N, T, 1\)"):
        tm.RNN(1, 4)(Tensor(np.zeros((8, 20))))  # (N, T) meant as 8 sequences of 20 steps
    with pytest.raises(ValueError, match=r"\(N, T, 3\).*got \(3,\)"):
        m(Tensor(np.zeros(3)))
    with pytest.raises(
        ValueError, match=r"h0 of shape \(num_layers, N, hidden_size\) = \(2, 2, 4\).*\(1, 2, 4\)"
    ):
        m(Tensor(np.zeros((2, 6, 3))), (Tensor(np.zeros((1, 2, 4))), Tensor(np.zeros((2, 2, 4)))))
    with pytest.raises(ValueError, match=r"c0 of shape \(num_layers, hidden_size\) = \(2, 4\)"):
        m(Tensor(np.zeros((6, 3))), (np.zeros((2, 4)), np.zeros((2, 1, 4))))
    with pytest.raises(TypeError, match="pair"):
        m(Tensor(np.zeros((2, 6, 3))), np.zeros((2, 2, 4)))
    with pytest.raises(ValueError, match="h0 of shape"):
        tm.GRU(3, 4)(Tensor(np.zeros((2, 6, 3))), np.zeros((2, 4)))
    assert tm.LSTM(3, 4, batch_first=True).hidden_size == 4  # PyTorch code copies over
    with pytest.raises(ValueError, match="batch first"):
        tm.GRU(3, 4, batch_first=False)
    with pytest.raises(ValueError, match="nonlinearity"):
        tm.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="hidden_size"):
        tm.GRU(3, 0)
    with pytest.raises(ValueError, match=r"\(N, 3\) or \(3,\)"):
        tm.GRUCell(3, 4)(Tensor(np.zeros((2, 4))))
    with pytest.raises(ValueError, match=r"expected h of shape \(2, 4\)"):
        tm.RNNCell(3, 4)(Tensor(np.zeros((2, 3))), Tensor(np.zeros((4,))))
    net = LastStep("GRU", F=1)
    with pytest.raises(ValueError, match=r"reshape it to\s+\(N, T, 1\) \(in fit: X of shape \(n, T, 1\)\)"):
        net.fit(np.zeros((4, 10)), np.zeros((4, 1)), epochs=1, progress=False)


def test_validation_loss_with_a_partial_last_batch():
    """fit's validation pass sees the constant one of the b_hh terms in every lane,
    also after a partial last batch left the lane mask at 0 in some lanes."""
    r = rng(19)
    X, Xv = r.normal(size=(10, 5, 1)), r.normal(size=(7, 5, 1))
    Y, Yv = X.sum(axis=1) / 3, Xv.sum(axis=1) / 3
    net = LastStep("LSTM", H=3)
    history = net.fit(X, Y, epochs=2, batch_size=4, lr=0.1, validation_data=(Xv, Yv), progress=False)
    assert history.val_loss[-1] == pytest.approx(float(np.mean((net.predict(Xv) - Yv) ** 2)), rel=1e-12)


def test_save_and_load_parameters_round_trip(tmp_path):
    net = LastStep("GRU", F=2, L=2)
    path = tmp_path / "gru.npz"
    net.save(path)
    other = LastStep("GRU", F=2, L=2)
    other.rnn.load_state_dict({k: v + 1.0 for k, v in other.rnn.state_dict().items()})
    other.load_parameters(path)
    x = rng(20).normal(size=(3, 4, 2))
    np.testing.assert_array_equal(other.predict(x), net.predict(x))
    assert repr(tm.LSTM(3, 4, num_layers=2)) == "LSTM(3, 4, num_layers=2)"
    assert repr(tm.RNN(3, 4, nonlinearity="relu")) == "RNN(3, 4, nonlinearity='relu')"
