"""Convolution, pooling and batch norm (API.md "Modules, PyTorch-style"): outputs, input
and parameter gradients and running statistics against slow NumPy references kept
here, and against PyTorch float64 where it is installed; compiled training
(``fit``) against PyTorch's eager loop over the same batches."""

from __future__ import annotations

import numpy as np
import pytest

import tinyml as tm
from tinyml import Tensor


@pytest.fixture(autouse=True)
def own_graph():
    with tm.Graph() as g:
        yield g


def rng(seed=0):
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------------
# NumPy references: loops that say what each layer computes
# ---------------------------------------------------------------------------
def conv2d_ref(x, w, b, stride, padding):
    n, c, h, wd = x.shape
    co, _, kh, kw = w.shape
    (sh, sw), (ph, pw) = stride, padding
    xp = np.zeros((n, c, h + 2 * ph, wd + 2 * pw))
    xp[:, :, ph : ph + h, pw : pw + wd] = x
    ho, wo = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    out = np.zeros((n, co, ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, i * sh : i * sh + kh, j * sw : j * sw + kw]
            out[:, :, i, j] = np.einsum("nckl,ockl->no", patch, w) + (0 if b is None else b)
    return out


def pool_ref(x, k, s, reduce):
    n, c, h, w = x.shape
    ho, wo = (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1
    out = np.zeros((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            out[:, :, i, j] = reduce(
                x[:, :, i * s[0] : i * s[0] + k[0], j * s[1] : j * s[1] + k[1]], axis=(2, 3)
            )
    return out


def batchnorm_ref(x, gamma, beta, eps):
    axes = (0, *range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma.reshape(shape) + beta.reshape(shape), mean, var


# ---------------------------------------------------------------------------
# Conv2d
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        dict(kernel_size=3),
        dict(kernel_size=(2, 3), stride=(2, 1)),
        dict(kernel_size=3, stride=2, padding=1),
        dict(kernel_size=(3, 1), padding=(1, 2), bias=False),
    ],
)
def test_conv2d_against_numpy(args):
    conv = tm.Conv2d(2, 3, seed=1, **args)
    x = rng(2).normal(size=(2, 2, 6, 5))
    t = Tensor(x)
    out = conv(t)
    w = conv.weight.numpy()
    b = None if conv.bias is None else conv.bias.numpy()
    want = conv2d_ref(x, w, b, conv.stride, conv.padding)
    assert out.shape == want.shape
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-12, atol=1e-14)
    g = rng(3).normal(size=want.shape)
    (out * g).sum().backward()
    eps = 1e-6  # the output is linear in x and w: one-sided differences are exact up to rounding
    gx = np.zeros_like(x)
    for k in range(x.size):
        d = np.zeros(x.size)
        d[k] = eps
        gx.flat[k] = (
            (conv2d_ref(x + d.reshape(x.shape), w, b, conv.stride, conv.padding) - want) * g
        ).sum() / eps
    np.testing.assert_allclose(t.grad, gx, rtol=1e-5, atol=1e-7)


def test_conv2d_init_and_unbatched_input():
    conv = tm.Conv2d(3, 4, (2, 2), seed=0)
    bound = 1 / np.sqrt(3 * 2 * 2)
    assert conv.weight.shape == (4, 3, 2, 2) and np.abs(conv.weight.numpy()).max() <= bound
    x = rng(4).normal(size=(3, 5, 5))
    np.testing.assert_allclose(conv(Tensor(x)).numpy(), conv(Tensor(x[None])).numpy()[0], rtol=1e-15)


def test_conv2d_and_pool_errors_name_layer_and_shapes():
    conv = tm.Conv2d(2, 3, 3)
    with pytest.raises(ValueError, match=r"Conv2d\(2, 3.*2 input channels.*\(1, 3, 5, 5\)"):
        conv(Tensor(np.ones((1, 3, 5, 5))))
    with pytest.raises(ValueError, match=r"kernel size \(3, 3\) is larger than the padded input \(2, 5\)"):
        conv(Tensor(np.ones((1, 2, 2, 5))))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        conv(Tensor(np.ones((2, 5))))
    with pytest.raises(ValueError, match=r"MaxPool2d.*larger"):
        tm.MaxPool2d(3)(Tensor(np.ones((1, 1, 2, 2))))
    with pytest.raises(TypeError):
        tm.Conv2d(2, 3, 2.5)


# ---------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("k, s", [(2, None), (3, 1), ((2, 3), (1, 2))])
def test_pools_against_numpy(k, s):
    x = rng(5).normal(size=(2, 3, 6, 7))
    for layer, reduce in [(tm.MaxPool2d(k, s), np.max), (tm.AvgPool2d(k, s), np.mean)]:
        t = Tensor(x)
        out = layer(t)
        want = pool_ref(x, layer.kernel_size, layer.stride, reduce)
        np.testing.assert_allclose(out.numpy(), want, rtol=1e-14)


def test_max_gradient_goes_to_the_first_largest_input():
    x = np.array([[[[1.0, 3.0, 0.0, 0.0], [3.0, 2.0, 0.0, 0.0]]]])  # ties in both windows
    t = Tensor(x)
    tm.MaxPool2d(2)(t).sum().backward()
    np.testing.assert_array_equal(t.grad, [[[[0, 1, 1, 0], [0, 0, 0, 0]]]])  # the first of each tie
    u = Tensor(np.array([[2.0, 5.0, 5.0], [-1.0, -1.0, -3.0]]))
    m = u.max(axis=1)
    np.testing.assert_array_equal(m.numpy(), [5.0, -1.0])
    m.sum().backward()
    np.testing.assert_array_equal(u.grad, [[0, 1, 0], [1, 0, 0]])
    assert Tensor(np.array([1.0, np.nan, 2.0])).max().data != Tensor(np.array([1.0, np.nan, 2.0])).max().data


def test_pools_against_torch_with_ties():
    torch = pytest.importorskip("torch")
    x = rng(6).integers(0, 3, size=(2, 2, 6, 6)).astype(float)  # many ties
    for ours, theirs in [
        (tm.MaxPool2d(2), torch.nn.MaxPool2d(2)),
        (tm.MaxPool2d(3, 2), torch.nn.MaxPool2d(3, 2)),
        (tm.AvgPool2d(2), torch.nn.AvgPool2d(2)),
        (tm.AvgPool2d((3, 2), 1), torch.nn.AvgPool2d((3, 2), 1)),
    ]:
        t = Tensor(x)
        out = ours(t)
        xt = torch.tensor(x, requires_grad=True)
        want = theirs(xt)
        np.testing.assert_allclose(out.numpy(), want.detach().numpy(), rtol=1e-15)
        g = rng(7).normal(size=out.shape)
        (out * g).sum().backward()
        (want * torch.tensor(g)).sum().backward()
        np.testing.assert_allclose(t.grad, xt.grad.numpy(), rtol=1e-14, atol=1e-15, err_msg=repr(ours))


def test_conv2d_against_torch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    theirs = torch.nn.Conv2d(3, 4, (3, 2), stride=(1, 2), padding=1).double()
    ours = tm.Conv2d(3, 4, (3, 2), stride=(1, 2), padding=1)
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    x = rng(8).normal(size=(2, 3, 5, 6))
    t, xt = Tensor(x), torch.tensor(x, requires_grad=True)
    out, want = ours(t), theirs(xt)
    np.testing.assert_allclose(out.numpy(), want.detach().numpy(), rtol=1e-12, atol=1e-14)
    g = rng(9).normal(size=out.shape)
    (out * g).sum().backward()
    (want * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(t.grad, xt.grad.numpy(), rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(ours.bias.grad, theirs.bias.grad.numpy(), rtol=1e-11, atol=1e-13)


# ---------------------------------------------------------------------------
# Batch norm
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, shape", [(tm.BatchNorm1d, (6, 3)), (tm.BatchNorm1d, (4, 3, 5)), (tm.BatchNorm2d, (3, 3, 4, 2))]
)
def test_batchnorm_training_and_eval_against_numpy(make, shape):
    bn = make(3, eps=1e-3, momentum=0.2)
    assert list(bn.state_dict()) == ["weight", "bias", "running_mean", "running_var"]
    assert len(bn.parameters()) == 6  # running statistics are buffers, not parameters
    gamma, beta = rng(10).normal(size=3), rng(11).normal(size=3)
    bn.load_state_dict(
        {"weight": gamma, "bias": beta, "running_mean": np.zeros(3), "running_var": np.ones(3)}
    )
    x = rng(12).normal(size=shape) * 2 + 1
    want, mean, var = batchnorm_ref(x, gamma, beta, 1e-3)
    np.testing.assert_allclose(bn(Tensor(x)).numpy(), want, rtol=1e-12, atol=1e-13)
    n = x.size // 3
    np.testing.assert_allclose(bn.running_mean, 0.2 * mean.reshape(3), rtol=1e-13)
    np.testing.assert_allclose(bn.running_var, 0.8 + 0.2 * var.reshape(3) * n / (n - 1), rtol=1e-13)
    rm, rv = bn.running_mean.copy(), bn.running_var.copy()
    bn.eval()
    shape3 = (1, 3) + (1,) * (x.ndim - 2)
    want_eval = (x - rm.reshape(shape3)) / np.sqrt(rv.reshape(shape3) + 1e-3) * gamma.reshape(shape3)
    np.testing.assert_allclose(
        bn(Tensor(x)).numpy(), want_eval + beta.reshape(shape3), rtol=1e-12, atol=1e-13
    )
    np.testing.assert_array_equal(bn.running_mean, rm)  # eval mode leaves them


def test_batchnorm_errors_and_num_batches_tracked():
    bn = tm.BatchNorm2d(3)
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3\).*\(N, C, H, W\).*\(2, 3\)"):
        bn(Tensor(np.ones((2, 3))))
    with pytest.raises(ValueError, match=r"BatchNorm1d\(3\).*3 channels.*\(2, 4\)"):
        tm.BatchNorm1d(3)(Tensor(np.ones((2, 4))))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        tm.BatchNorm1d(3)(Tensor(np.ones((1, 3))))
    sd = bn.state_dict()
    bn.load_state_dict({**sd, "num_batches_tracked": np.array(5)})
    bn.load_state_dict(sd)
    with pytest.raises(ValueError, match=r"'running_var' has shape \(4,\)"):
        bn.load_state_dict({**sd, "running_var": np.ones(4)})
    with pytest.raises(ValueError, match="momentum=None"):
        tm.BatchNorm1d(3, momentum=None)


def test_batchnorm_against_torch_train_and_eval():
    torch = pytest.importorskip("torch")
    for ours, theirs, shape in [
        (tm.BatchNorm1d(4), torch.nn.BatchNorm1d(4), (5, 4)),
        (tm.BatchNorm1d(4, momentum=0.3), torch.nn.BatchNorm1d(4, momentum=0.3), (3, 4, 6)),
        (tm.BatchNorm2d(4, eps=1e-4), torch.nn.BatchNorm2d(4, eps=1e-4), (2, 4, 3, 5)),
    ]:
        theirs = theirs.double()
        with torch.no_grad():
            theirs.weight.uniform_(0.5, 1.5)
            theirs.bias.uniform_(-0.5, 0.5)
        ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
        for step in range(2):
            x = rng(13 + step).normal(size=shape) * 3
            t, xt = Tensor(x), torch.tensor(x, requires_grad=True)
            out, want = ours(t), theirs(xt)
            np.testing.assert_allclose(out.numpy(), want.detach().numpy(), rtol=1e-11, atol=1e-12)
            g = rng(20 + step).normal(size=shape)
            ours.zero_grad()
            (out * g).sum().backward()
            (want * torch.tensor(g)).sum().backward()
            np.testing.assert_allclose(t.grad, xt.grad.numpy(), rtol=1e-9, atol=1e-11)
            np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=1e-10, atol=1e-11)
            theirs.weight.grad = None
        for key in ("running_mean", "running_var"):
            np.testing.assert_allclose(ours.state_dict()[key], theirs.state_dict()[key].numpy(), rtol=1e-13)
        ours.eval(), theirs.eval()
        x = rng(30).normal(size=shape)
        np.testing.assert_allclose(
            ours(Tensor(x)).numpy(), theirs(torch.tensor(x)).detach().numpy(), rtol=1e-12
        )


# ---------------------------------------------------------------------------
# Compiled training: the batch in lanes, batch statistics across them
# ---------------------------------------------------------------------------
def _torch_epochs(torch, net, x, y, epochs, batch, lr, loss):
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    for _ in range(epochs):
        for b in range(0, len(x), batch):
            opt.zero_grad()
            out = net(torch.tensor(x[b : b + batch]))
            target = torch.tensor(y[b : b + batch])
            value = torch.nn.functional.cross_entropy(out, target) if loss == "cross_entropy" else (
                torch.nn.functional.mse_loss(out, target))  # fmt: skip
            value.backward()
            opt.step()


def _compare_states(ours, theirs):
    tsd = theirs.state_dict()
    for k, v in ours.state_dict().items():
        np.testing.assert_allclose(v, tsd[k].numpy(), rtol=1e-9, atol=1e-12, err_msg=k)


def test_fit_batchnorm_mlp_matches_torch_including_running_stats():
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    x = rng(40).normal(size=(50, 4)) * 2
    y = rng(41).integers(0, 3, 50)
    theirs = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 3)
    ).double()
    ours = tm.Sequential(tm.Linear(4, 8), tm.BatchNorm1d(8), tm.ReLU(), tm.Linear(8, 3))
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    _torch_epochs(torch, theirs, x, y, 3, 16, 0.1, "cross_entropy")  # the last batch has 2 samples
    ours.fit(x, y, epochs=3, loss="cross_entropy", batch_size=16, shuffle=False, lr=0.1, progress=False)
    _compare_states(ours, theirs)
    assert ours.training
    ours.eval(), theirs.eval()
    np.testing.assert_allclose(
        ours.predict(x), theirs(torch.tensor(x)).detach().numpy(), rtol=1e-9, atol=1e-12
    )


def test_fit_cnn_with_batchnorm2d_matches_torch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(2)
    x = rng(42).normal(size=(12, 1, 6, 6))
    y = rng(43).normal(size=(12, 2))
    theirs = torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.BatchNorm2d(3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.AvgPool2d(3), torch.nn.Flatten(), torch.nn.Linear(3, 2),
    ).double()  # fmt: skip
    ours = tm.Sequential(
        tm.Conv2d(1, 3, 3, padding=1), tm.BatchNorm2d(3), tm.ReLU(), tm.MaxPool2d(2),
        tm.AvgPool2d(3), tm.Flatten(), tm.Linear(3, 2),
    )  # fmt: skip
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    _torch_epochs(torch, theirs, x, y, 2, 5, 0.05, "mse")
    ours.fit(x, y, epochs=2, loss="mse", batch_size=5, shuffle=False, lr=0.05, progress=False)
    _compare_states(ours, theirs)


def test_fit_batchnorm_refuses_a_batch_of_one():
    net = tm.Sequential(tm.Linear(2, 3), tm.BatchNorm1d(3), tm.Linear(3, 1))
    x = rng(44).normal(size=(9, 2))
    with pytest.raises(ValueError, match="at least 2 samples per batch.*has 1"):
        net.fit(x, x[:, :1], epochs=1, batch_size=4, progress=False)


def test_fit_batchnorm_runs_running_stats_once_per_step_numpy():
    """Without torch: after one full-batch step the running statistics are those of the batch."""
    net = tm.Sequential(tm.BatchNorm1d(2, momentum=0.5), tm.Linear(2, 1, seed=0))
    x = rng(45).normal(size=(7, 2)) * 3 + 1
    net.fit(x, x[:, :1], epochs=1, lr=0.0, progress=False)
    np.testing.assert_allclose(net[0].running_mean, 0.5 * x.mean(0), rtol=1e-13)
    np.testing.assert_allclose(net[0].running_var, 0.5 + 0.5 * x.var(0, ddof=1), rtol=1e-13)
    net.fit(x, x[:, :1], epochs=2, batch_size=7, lr=0.0, progress=False)  # two more steps
    np.testing.assert_allclose(net[0].running_mean, 0.5**3 * 0 + (1 - 0.5**3) * x.mean(0), rtol=1e-13)


def _torch_eval_loss(torch, net, x, y, loss):
    net.eval()
    with torch.no_grad():
        out = net(torch.tensor(x))
        target = torch.tensor(y)
        value = torch.nn.functional.cross_entropy(out, target) if loss == "cross_entropy" else (
            torch.nn.functional.mse_loss(out, target))  # fmt: skip
    net.train()
    return float(value)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_fit_batchnorm_validation_loss_is_eval_mode_and_restore_best_restores_buffers(loss):
    """validation_data with batch norm: each epoch's val loss in eval mode (running statistics,
    dropout off) at that epoch's parameters, as PyTorch's loop with model.eval() validation;
    early stopping with restore_best gives the best epoch's parameters AND running statistics."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(3)
    x = rng(50).normal(size=(40, 4)) * 2 + 1
    xv = rng(51).normal(size=(15, 4)) * 2 + 1
    if loss == "cross_entropy":
        y, yv = rng(52).integers(0, 3, 40), rng(53).integers(0, 3, 15)
    else:
        y, yv = rng(52).normal(size=(40, 3)), rng(53).normal(size=(15, 3))
    theirs = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8, momentum=0.3), torch.nn.Dropout(0.5), torch.nn.ReLU(),
        torch.nn.Linear(8, 3),
    ).double()  # fmt: skip
    theirs[2].p = 0.0  # (torch's dropout draws differ from ours; the eval pass must switch ours off)
    ours = tm.Sequential(
        tm.Linear(4, 8), tm.BatchNorm1d(8, momentum=0.3), tm.Dropout(0.5), tm.ReLU(), tm.Linear(8, 3)
    )
    start = {k: v.numpy().copy() for k, v in theirs.state_dict().items()}
    ours.load_state_dict(start)
    ours[2].p = 0.0
    epochs, batch, lr = 6, 16, 0.2
    expected, states = [], []
    for _ in range(epochs):
        _torch_epochs(torch, theirs, x, y, 1, batch, lr, loss)
        expected.append(_torch_eval_loss(torch, theirs, xv, yv, loss))
        states.append({k: v.numpy().copy() for k, v in theirs.state_dict().items()})
    fit = dict(loss=loss, batch_size=batch, shuffle=False, lr=lr, progress=False, validation_data=(xv, yv))
    h = ours.fit(x, y, epochs=epochs, report_every=1, **fit)
    np.testing.assert_allclose(h.val_loss, expected, rtol=1e-10)
    _compare_states(ours, theirs)

    # early stopping on the validation loss: the best epoch's parameters and running statistics
    best = int(np.argmin(expected))
    assert best < epochs - 1  # (the data make the validation loss rise again: a real restore)
    ours.load_state_dict(start)
    stop = tm.EarlyStopping(patience=epochs, restore_best=True)
    h = ours.fit(x, y, epochs=epochs, early_stopping=stop, **fit)
    assert h.best_epoch == best
    for k, v in ours.state_dict().items():
        np.testing.assert_allclose(v, states[best][k], rtol=1e-9, atol=1e-12, err_msg=k)


def test_fit_batchnorm_validation_loss_numpy():
    """Without torch: lr=0 keeps the parameters, so the val loss after each full-batch step is
    the eval-mode loss with the running statistics after that many steps."""
    net = tm.Sequential(tm.BatchNorm1d(2, momentum=0.5), tm.Linear(2, 1, seed=0))
    x = rng(54).normal(size=(7, 2)) * 3 + 1
    xv = rng(55).normal(size=(5, 2)) * 3 + 1
    yv = rng(56).normal(size=(5, 1))
    w, b = net[1].weight.numpy(), net[1].bias.numpy()
    h = net.fit(x, x[:, :1], epochs=3, lr=0.0, progress=False, report_every=1, validation_data=(xv, yv))
    expected = []
    for steps in (1, 2, 3):
        rm = (1 - 0.5**steps) * x.mean(0)
        rv = 0.5**steps + (1 - 0.5**steps) * x.var(0, ddof=1)
        out = ((xv - rm) / np.sqrt(rv + 1e-5)) @ w.T + b
        expected.append(((out - yv) ** 2).mean())
    np.testing.assert_allclose(h.val_loss, expected, rtol=1e-12)


def test_fit_batchnorm_early_stopping_on_the_training_loss_restores_the_buffers():
    """restore_best on the training loss: the parameters and running statistics from the start
    of the best epoch. lr=0: the loss never improves after epoch 0, whose start is the initial state."""
    net = tm.Sequential(tm.BatchNorm1d(2, momentum=0.5), tm.Linear(2, 1, seed=0))
    x = rng(57).normal(size=(7, 2)) * 3 + 1
    h = net.fit(x, x[:, :1], epochs=10, lr=0.0, progress=False, early_stopping=tm.EarlyStopping(patience=2))
    assert h.best_epoch == 0 and h.epochs_run == 3
    np.testing.assert_array_equal(net[0].running_mean, np.zeros(2))
    np.testing.assert_array_equal(net[0].running_var, np.ones(2))
    net.fit(x, x[:, :1], epochs=1, lr=0.0, progress=False)  # and training goes on from them
    np.testing.assert_allclose(net[0].running_mean, 0.5 * x.mean(0), rtol=1e-13)


def test_save_and_sequential_load_of_conv_pool_and_batchnorm(tmp_path):
    net = tm.Sequential(
        tm.Conv2d(1, 3, (3, 2), stride=(1, 2), padding=1, seed=0), tm.BatchNorm2d(3, momentum=0.3),
        tm.ReLU(), tm.MaxPool2d(2, 1), tm.AvgPool2d((2, 1)), tm.Flatten(), tm.Linear(18, 2, seed=1),
    )  # fmt: skip
    x = rng(50).normal(size=(4, 1, 6, 6))
    net(Tensor(x))  # a training-mode forward: the running statistics move
    path = tmp_path / "cnn.npz"
    net.save(path)
    back = tm.Sequential.load(path)
    assert repr(back) == repr(net)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[k], v)
    np.testing.assert_array_equal(back.eval().predict(x), net.eval().predict(x))
    other = tm.Sequential(*[type(m)(**m._config()) for m in net])
    other.load_parameters(path)
    np.testing.assert_array_equal(other[1].running_var, net[1].running_var)
