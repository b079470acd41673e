"""PyTorch-style modules (API.md "Modules, PyTorch-style"): Module, Sequential, Linear,
activations, Flatten, Dropout, state_dict, fit/predict/save for any module.

Outputs and gradients are checked against NumPy formulas written here, and
against PyTorch float64 where it is installed (those tests skip without it).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import tinyml as tm
from tinyml import Op, Tensor


@pytest.fixture(autouse=True)
def own_graph():
    with tm.Graph() as g:
        yield g


def rng(seed=0):
    return np.random.default_rng(seed)


class Net(tm.Module):
    """A subclass with a sub-module, a list of sub-modules and a Value of its own."""

    def __init__(self):
        super().__init__()
        self.scale = tm.Value(0.5)
        self.first = tm.Linear(3, 4, seed=1)
        self.blocks = [tm.Linear(4, 4, seed=2), tm.Linear(4, 2, seed=3)]

    def forward(self, x):
        x = self.first(x).tanh()
        x = self.blocks[0](x).relu()
        return self.blocks[1](x) * self.scale


# ---------------------------------------------------------------------------
# Module tree, parameters, state_dict
# ---------------------------------------------------------------------------
def test_parameters_and_state_dict_follow_attribute_order():
    net = Net()
    sd = net.state_dict()
    assert list(sd) == [
        "scale",
        "first.weight",
        "first.bias",
        "blocks.0.weight",
        "blocks.0.bias",
        "blocks.1.weight",
        "blocks.1.bias",
    ]
    assert (
        sd["first.weight"].shape == (4, 3) and sd["blocks.1.bias"].shape == (2,) and sd["scale"].shape == ()
    )
    params = net.parameters()
    assert len(params) == 1 + 16 + 20 + 10
    assert params[0] is net.scale and params[1] is net.first.weight[0, 0]
    assert [n for n, _ in net.named_parameters()] == list(sd)


def test_linear_init_bounds_and_seed():
    lin = tm.Linear(25, 40, seed=7)
    w, b = lin.weight.numpy(), lin.bias.numpy()
    assert np.abs(w).max() <= 0.2 and np.abs(b).max() <= 0.2
    assert np.abs(w).max() > 0.19  # uniform over the whole +-1/sqrt(25) range
    np.testing.assert_array_equal(w, tm.Linear(25, 40, seed=7).weight.numpy())
    assert not np.array_equal(w, tm.Linear(25, 40, seed=8).weight.numpy())
    assert "bias" not in tm.Linear(3, 2, bias=False).state_dict()


def test_linear_on_n_star_in_against_numpy():
    lin = tm.Linear(3, 2, seed=0)
    x = rng(1).normal(size=(2, 4, 3))
    t = Tensor(x)
    out = lin(t)
    w, b = lin.weight.numpy(), lin.bias.numpy()
    assert out.shape == (2, 4, 2)
    np.testing.assert_allclose(out.numpy(), x @ w.T + b, rtol=1e-14)
    g = rng(2).normal(size=(2, 4, 2))
    (out * g).sum().backward()
    np.testing.assert_allclose(lin.weight.grad, np.einsum("abo,abi->oi", g, x), rtol=1e-12)
    np.testing.assert_allclose(lin.bias.grad, g.sum(axis=(0, 1)), rtol=1e-12)
    np.testing.assert_allclose(t.grad, g @ w, rtol=1e-12)
    no_bias = tm.Linear(3, 2, bias=False, seed=0)
    np.testing.assert_allclose(no_bias(Tensor(x)).numpy(), x @ no_bias.weight.numpy().T, rtol=1e-14)


def test_linear_wrong_width_names_layer_and_shapes():
    with pytest.raises(ValueError, match=r"Linear\(3, 2\).*\(5, 4\)"):
        tm.Linear(3, 2)(Tensor(np.ones((5, 4))))
    with pytest.raises(TypeError, match="Linear"):
        tm.Linear(3, 2)("x")


def test_load_state_dict_strict_and_changes_nothing_on_error():
    net = Net()
    before = net.state_dict()
    good = {k: v + 1.0 for k, v in before.items()}
    for bad, message in [
        ({k: v for k, v in good.items() if k != "first.bias"}, "missing keys 'first.bias'"),
        ({**good, "extra.weight": np.zeros(2)}, "unexpected keys 'extra.weight'"),
        ({**good, "blocks.0.weight": np.zeros((4, 3))}, r"'blocks.0.weight' has shape \(4, 3\).*\(4, 4\)"),
    ]:
        with pytest.raises(ValueError, match=message):
            net.load_state_dict(bad)
        for k, v in net.state_dict().items():
            np.testing.assert_array_equal(v, before[k])
    with pytest.raises(TypeError):
        net.load_state_dict({**good, "scale": np.array("a")})
    net.load_state_dict(good)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[k] + 1.0)
    missing, unexpected = net.load_state_dict({"scale": 2.0, "nope": 1.0}, strict=False)
    assert "first.bias" in missing and unexpected == ["nope"] and net.scale.data == 2.0


def test_mlp_is_a_module_with_pytorch_keys():
    mlp = tm.MLP(3, [4, 2], 0.1, "tanh", seed=0)
    sd = mlp.state_dict()
    assert list(sd) == ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"]
    n = mlp.layers[0].neurons[1]
    np.testing.assert_array_equal(sd["layers.0.weight"][1], [w.data for w in n.weights])
    assert sd["layers.0.bias"][1] == n.bias.data
    other = tm.MLP(3, [4, 2], 0.1, "tanh", seed=1)
    other.load_state_dict(sd)
    x = rng(3).normal(size=(5, 3))
    np.testing.assert_array_equal(other.predict(x), mlp.predict(x))
    assert mlp.train() is mlp and mlp.training and not mlp.eval().training


def test_train_eval_flag_reaches_every_submodule():
    net = tm.Sequential(tm.Linear(2, 2), tm.Dropout(0.3), tm.Sequential(tm.ReLU()))
    assert net.training and all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())


def test_sequential_indexing_len_iteration():
    a, b, c = tm.Linear(2, 3), tm.Tanh(), tm.Linear(3, 1)
    seq = tm.Sequential(a, b, c)
    assert len(seq) == 3 and seq[0] is a and seq[-1] is c and list(seq) == [a, b, c]
    assert isinstance(seq[1:], tm.Sequential) and list(seq[1:]) == [b, c]
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    with pytest.raises(TypeError, match="argument 1"):
        tm.Sequential(a, "tanh")


# ---------------------------------------------------------------------------
# Activations, Flatten, Dropout
# ---------------------------------------------------------------------------
def _erf(x):
    return np.vectorize(math.erf)(x)


ACTIVATIONS = {
    "ReLU": (tm.ReLU(), lambda x: np.maximum(x, 0)),
    "Tanh": (tm.Tanh(), np.tanh),
    "Sigmoid": (tm.Sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
    "GELU": (tm.GELU(), lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2)))),
    "SiLU": (tm.SiLU(), lambda x: x / (1 + np.exp(-x))),
    "LeakyReLU": (tm.LeakyReLU(0.2), lambda x: np.where(x > 0, x, 0.2 * x)),
    "Softplus": (tm.Softplus(), lambda x: np.log1p(np.exp(x))),
    "Identity": (tm.Identity(), lambda x: x),
}


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_modules_against_numpy(name):
    module, ref = ACTIVATIONS[name]
    x = rng(4).normal(size=(2, 3, 2)) * 3
    out = module(Tensor(x))
    np.testing.assert_allclose(out.numpy(), ref(x), rtol=1e-13, atol=1e-15)


def test_flatten_keeps_the_batch():
    x = Tensor(np.arange(24.0).reshape(2, 3, 4))
    assert tm.Flatten()(x).shape == (2, 12)
    assert tm.Flatten(0)(x).shape == (24,)
    np.testing.assert_array_equal(tm.Flatten()(x).numpy(), np.arange(24.0).reshape(2, 12))


def test_dropout_train_and_eval():
    d = tm.Dropout(0.25, seed=0)
    x = Tensor(np.ones((50, 40)))
    out = d(x).numpy()
    kept = out != 0
    assert 0.7 < kept.mean() < 0.8
    np.testing.assert_allclose(out[kept], 1 / 0.75)
    assert d.eval()(x) is x
    with pytest.raises(ValueError, match="Dropout"):
        tm.Dropout(1.0)


# ---------------------------------------------------------------------------
# fit / predict / save for any module; the same speed whichever way it is written
# ---------------------------------------------------------------------------
def _xor_like(n=40, seed=0):
    x = rng(seed).normal(size=(n, 2))
    return x, np.tanh(x[:, :1] * x[:, 1:])


@pytest.mark.parametrize("act", ["tanh", "relu", "sigmoid"])
def test_sequential_trains_exactly_as_the_same_mlp(act):
    x, y = _xor_like()
    mlp = tm.MLP(2, [5, 1], 0.05, act, seed=3, output_activation="linear")
    mods = {"tanh": tm.Tanh, "relu": tm.ReLU, "sigmoid": tm.Sigmoid}
    seq = tm.Sequential(tm.Linear(2, 5), mods[act](), tm.Linear(5, 1))
    seq.load_state_dict(
        {k.replace("layers.0", "0").replace("layers.1", "2"): v for k, v in mlp.state_dict().items()}
    )
    h1 = mlp.fit(x, y, epochs=30, batch_size=8, seed=1, progress=False)
    h2 = seq.fit(x, y, epochs=30, batch_size=8, seed=1, lr=0.05, progress=False)
    np.testing.assert_allclose(h2.loss, h1.loss, rtol=1e-12)
    np.testing.assert_allclose(seq.predict(x), mlp.predict(x), rtol=1e-12)
    # the compiled step has the same rows: Linear + activation fuse into one NEURON row
    p_mlp = mlp._programs[("mse", 0.0)][0]
    p_seq = seq._programs[("mse", (2,), True, None)][0]
    assert len(p_seq) == len(p_mlp)
    np.testing.assert_array_equal(
        np.bincount(p_seq._op), np.bincount(p_mlp._op)
    )  # (inputs may be ordered apart)
    np.testing.assert_array_equal(p_seq._aux[p_seq._op == Op.NEURON], p_mlp._aux[p_mlp._op == Op.NEURON])


def test_subclass_fit_cross_entropy_and_predict():
    x = rng(5).normal(size=(60, 3))
    labels = (x[:, 0] + x[:, 1] > 0).astype(int)
    net = Net()
    adam = tm.optim.Adam(net.parameters(), lr=0.05)
    h = net.fit(x, labels, epochs=60, loss="cross_entropy", optimizer=adam, progress=False)
    assert h.loss[-1] < 0.5 * h.loss[0]
    eager = net(Tensor(x)).numpy()
    np.testing.assert_allclose(net.predict(x), eager, rtol=1e-12)
    assert (net.predict(x).argmax(1) == labels).mean() > 0.85


def test_fit_with_dropout_is_reproducible_and_predict_does_not_drop():
    x, y = _xor_like()

    def build():
        return tm.Sequential(tm.Linear(2, 16, seed=0), tm.Tanh(), tm.Dropout(0.5), tm.Linear(16, 1, seed=1))

    a, b = build(), build()
    ha = a.fit(x, y, epochs=20, seed=4, lr=0.1, progress=False)
    hb = b.fit(x, y, epochs=20, seed=4, lr=0.1, progress=False)
    np.testing.assert_array_equal(ha.loss, hb.loss)
    c = build()
    hc = c.fit(x, y, epochs=20, seed=5, lr=0.1, progress=False)
    assert not np.array_equal(ha.loss, hc.loss)
    assert a.training  # fit leaves the mode as it found it
    a.eval()
    np.testing.assert_allclose(a.predict(x), a(Tensor(x)).numpy(), rtol=1e-12)


def test_save_and_load_any_module(tmp_path):
    x = rng(6).normal(size=(4, 3))
    net = Net()
    path = tmp_path / "net.npz"
    net.save(path)
    other = Net()
    other.scale.data = 3.0
    other.load_parameters(path)
    np.testing.assert_array_equal(other.predict(x), net.predict(x))
    with pytest.raises(tm.ModelFileError, match="holds no architecture"):
        tm.Sequential.load(path)
    seq = tm.Sequential(
        tm.Linear(3, 4), tm.GELU(), tm.Dropout(0.1), tm.Linear(4, 2, bias=False), tm.LeakyReLU(0.3)
    )
    seq.save(tmp_path / "seq.npz")
    back = tm.Sequential.load(tmp_path / "seq.npz")
    assert repr(back) == repr(seq)
    np.testing.assert_array_equal(back.eval().predict(x), seq.eval().predict(x))
    with pytest.raises(tm.ModelFileError, match="does not fit"):
        tm.Sequential(tm.Linear(3, 5)).load_parameters(tmp_path / "seq.npz")


# ---------------------------------------------------------------------------
# PyTorch float64
# ---------------------------------------------------------------------------
def test_state_dict_round_trips_with_torch_both_ways():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tnet = torch.nn.Sequential(
        torch.nn.Linear(3, 5), torch.nn.GELU(), torch.nn.Linear(5, 4), torch.nn.SiLU(), torch.nn.Linear(4, 2)
    ).double()
    ours = tm.Sequential(tm.Linear(3, 5), tm.GELU(), tm.Linear(5, 4), tm.SiLU(), tm.Linear(4, 2))
    ours.load_state_dict({k: v.numpy() for k, v in tnet.state_dict().items()})
    x = rng(7).normal(size=(6, 3))
    xt = torch.tensor(x, requires_grad=True)
    want = tnet(xt)
    t = Tensor(x)
    got = ours(t)
    np.testing.assert_allclose(got.numpy(), want.detach().numpy(), rtol=1e-12, atol=1e-14)
    w = rng(8).normal(size=(6, 2))
    (want * torch.tensor(w)).sum().backward()
    (got * w).sum().backward()
    np.testing.assert_allclose(t.grad, xt.grad.numpy(), rtol=1e-11, atol=1e-14)
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(
            p.grad, dict(tnet.named_parameters())[name].grad.numpy(), rtol=1e-11, atol=1e-14
        )
    # and back: our weights into a fresh torch module
    ours2 = tm.Sequential(tm.Linear(3, 5, seed=9), tm.GELU(), tm.Linear(5, 4), tm.SiLU(), tm.Linear(4, 2))
    tnet.load_state_dict({k: torch.tensor(v) for k, v in ours2.state_dict().items()})
    np.testing.assert_allclose(
        tnet(torch.tensor(x)).detach().numpy(), ours2.predict(x), rtol=1e-12, atol=1e-14
    )


def test_mlp_state_dict_loads_into_torch():
    torch = pytest.importorskip("torch")
    mlp = tm.MLP(3, [4, 2], 0.1, "tanh", seed=0, output_activation="linear")

    class TorchMLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList([torch.nn.Linear(3, 4), torch.nn.Linear(4, 2)])

        def forward(self, x):
            return self.layers[1](torch.tanh(self.layers[0](x)))

    t = TorchMLP().double()
    t.load_state_dict({k: torch.tensor(v) for k, v in mlp.state_dict().items()})
    x = rng(9).normal(size=(5, 3))
    np.testing.assert_allclose(t(torch.tensor(x)).detach().numpy(), mlp.predict(x), rtol=1e-12)


def test_activation_modules_against_torch():
    torch = pytest.importorskip("torch")
    pairs = [
        (tm.ReLU(), torch.nn.ReLU()),
        (tm.Tanh(), torch.nn.Tanh()),
        (tm.Sigmoid(), torch.nn.Sigmoid()),
        (tm.GELU(), torch.nn.GELU()),
        (tm.GELU("tanh"), torch.nn.GELU(approximate="tanh")),
        (tm.SiLU(), torch.nn.SiLU()),
        (tm.LeakyReLU(0.1), torch.nn.LeakyReLU(0.1)),
        (tm.Softplus(), torch.nn.Softplus()),
    ]
    x = np.concatenate([rng(10).normal(size=20) * 4, [0.0, -1e-3, 1e-3, 15.0, -15.0]])
    for ours, theirs in pairs:
        t = Tensor(x)
        out = ours(t)
        xt = torch.tensor(x, requires_grad=True)
        want = theirs(xt)
        np.testing.assert_allclose(
            out.numpy(), want.detach().numpy(), rtol=1e-12, atol=1e-14, err_msg=repr(ours)
        )
        out.sum().backward()
        want.sum().backward()
        np.testing.assert_allclose(t.grad, xt.grad.numpy(), rtol=1e-10, atol=1e-13, err_msg=repr(ours))


def test_module_fit_takes_validation_data_early_stopping_and_a_scheduler():
    x, y = _xor_like(60, seed=3)
    xv, yv = _xor_like(20, seed=4)
    seq = tm.Sequential(tm.Linear(2, 8, seed=0), tm.Tanh(), tm.Linear(8, 1, seed=1))
    opt = tm.optim.SGD(seq.parameters(), lr=0.2)
    sched = tm.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)
    stop = tm.EarlyStopping(patience=3, restore_best=False)
    h = seq.fit(x, y, epochs=40, batch_size=10, seed=0, validation_data=(xv, yv), early_stopping=stop,
                scheduler=sched, report_every=1, progress=False)  # fmt: skip
    assert len(h.val_loss) == len(h.loss)
    # the validation loss is the mean squared error at the parameters after that epoch's update
    np.testing.assert_allclose(h.val_loss[-1], ((seq.predict(xv) - yv) ** 2).mean(), rtol=1e-10)
    with pytest.raises(ValueError, match="samples of shape"):
        seq.fit(x, y, epochs=1, validation_data=(np.ones((3, 3)), yv[:3]), progress=False)
