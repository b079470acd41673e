"""XOR as the Rust tiny-ml example, implemented by tinyml and by each peer.

The network: 2 -> 4 -> 1, tanh on both layers, the sum of squared errors over
the 4 samples, one full-batch SGD step per epoch with learning rate 0.1. The
initial weights are tinyml's ``MLP(2, [4, 1], 0.1, TANH, seed=42,
init="uniform01")`` (as ``examples/xor_demo.py``), handed to every peer.

Every peer has the same shape: ``load()`` imports (or raises ``Unavailable``),
``prepare(flat)`` builds its state from the flat parameters (untimed),
``train(state, epochs)`` is the timed training loop (it returns only when the
work is done), and ``params(state)`` reads the flat parameters back.
"""

from __future__ import annotations

import ctypes
import math

import numpy as np
from numba import njit

from .core import NOT_AVAILABLE, Unavailable, require
from .mlp import Net, join, split

X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
Y = np.array([[0.0], [1.0], [1.0], [0.0]])
NET = Net(sizes=(2, 4, 1), activations=("tanh", "tanh"), loss="sse", lr=0.1, batch_size=None)
SEED = 42
EPOCHS = 300_000
REPORT_EVERY = 500  # as the Rust example and examples/xor_demo.py print


def tinyml_model():
    """A fresh tinyml model with the benchmark's initial weights, in a graph of its own."""
    import tinyml as tm

    with tm.Graph():
        return tm.MLP(2, [4, 1], NET.lr, tm.Activation.TANH, seed=SEED, init="uniform01")


def initial_params() -> np.ndarray:
    return np.array([p.data for p in tinyml_model().parameters()])


def _set_params(model, flat: np.ndarray) -> None:
    params = model.parameters()
    if len(params) != len(flat):
        raise ValueError(f"model has {len(params)} parameters, {len(flat)} given")
    for p, v in zip(params, flat):
        p.data = float(v)


class Peer:
    name = ""
    note = ""  # printed under the table
    slow = False  # measured over fewer epochs in full mode, then extrapolated
    slow_epochs = 0  # that fewer number

    def load(self) -> None:
        pass

    def prepare(self, flat: np.ndarray):
        raise NotImplementedError

    def train(self, state, epochs: int) -> None:
        raise NotImplementedError

    def params(self, state) -> np.ndarray:
        raise NotImplementedError


# ---------------------------------------------------------------------------
# tinyml
# ---------------------------------------------------------------------------
class TinymlFit(Peer):
    """The compiled path: ``model.fit(X, Y, epochs, loss="sse")``."""

    name = "tinyml fit"

    def load(self) -> None:
        import tinyml as tm

        if not hasattr(tm.MLP, "fit"):
            raise Unavailable("tm.MLP.fit is not written yet (tinyml/train.py)", NOT_AVAILABLE)

    def prepare(self, flat):
        model = tinyml_model()
        _set_params(model, flat)
        return model

    def train(self, model, epochs):
        model.fit(X, Y, epochs=epochs, loss="sse", report_every=REPORT_EVERY)

    def params(self, model):
        return np.array([p.data for p in model.parameters()])


class TinymlEager(Peer):
    """The seed-style loop: the graph is rebuilt every epoch, as in examples/xor_demo.py."""

    name = "tinyml eager"
    slow = True
    slow_epochs = 10_000

    def load(self) -> None:
        import tinyml  # noqa: F401

    prepare = TinymlFit.prepare
    params = TinymlFit.params

    def train(self, model, epochs):
        import tinyml as tm

        inputs = X.tolist()
        targets = Y[:, 0].tolist()
        for _ in range(epochs):
            outputs = [model(x)[0] for x in inputs]
            loss = tm.losses.mse(outputs, targets, reduction="sum")
            model.zero_grad()
            loss.backward()
            model.update()


# ---------------------------------------------------------------------------
# Hand-written Numba kernel: the practical lower bound
# ---------------------------------------------------------------------------
@njit(cache=True, error_model="numpy")
def _xor_kernel(w1, b1, w2, b2, x, y, lr, epochs):  # pragma: no cover - compiled
    """2 -> H -> 1 tanh/tanh, SSE, full-batch SGD, in place; returns the last epoch's loss."""
    hidden = w1.shape[0]
    h = np.empty(hidden)
    gw1 = np.empty_like(w1)
    gb1 = np.empty_like(b1)
    gw2 = np.empty_like(w2)
    loss = 0.0
    for _ in range(epochs):
        gw1[:] = 0.0
        gb1[:] = 0.0
        gw2[:] = 0.0
        gb2 = 0.0
        loss = 0.0
        for s in range(x.shape[0]):
            z2 = b2[0]
            for j in range(hidden):
                h[j] = math.tanh(b1[j] + w1[j, 0] * x[s, 0] + w1[j, 1] * x[s, 1])
                z2 += w2[j] * h[j]
            o = math.tanh(z2)
            d = o - y[s]
            loss += d * d
            dz2 = 2.0 * d * (1.0 - o * o)
            gb2 += dz2
            for j in range(hidden):
                gw2[j] += dz2 * h[j]
                dz1 = dz2 * w2[j] * (1.0 - h[j] * h[j])
                gb1[j] += dz1
                gw1[j, 0] += dz1 * x[s, 0]
                gw1[j, 1] += dz1 * x[s, 1]
        for j in range(hidden):
            w1[j, 0] -= lr * gw1[j, 0]
            w1[j, 1] -= lr * gw1[j, 1]
            b1[j] -= lr * gb1[j]
            w2[j] -= lr * gw2[j]
        b2[0] -= lr * gb2
    return loss


class NumbaXor(Peer):
    name = "numba (hand-written)"

    def prepare(self, flat):
        (w1, b1), (w2, b2) = split(flat, NET.sizes)
        return w1, b1, w2[0].copy(), b2, X.copy(), Y[:, 0].copy()

    def train(self, state, epochs):
        _xor_kernel(*state, NET.lr, epochs)

    def params(self, state):
        w1, b1, w2, b2 = state[:4]
        return join([(w1, b1), (w2[None, :], b2)])


# ---------------------------------------------------------------------------
# Hand-written C (benchmarks/xor_kernel.c), -O3 -march=native: the physical limit
# ---------------------------------------------------------------------------
class CXor(Peer):
    """The Numba kernel's arithmetic in C, built with the system's compiler and called
    through ctypes (skipped when there is no C compiler)."""

    name = "C (hand-written)"

    def load(self):
        from . import cpeer

        self.lib = lib = cpeer.load("xor_kernel.c")
        ptr = ctypes.POINTER(ctypes.c_double)
        lib.xor_train.argtypes = [ptr] * 6 + [ctypes.c_long, ctypes.c_long, ctypes.c_double, ctypes.c_long]
        lib.xor_train.restype = ctypes.c_double
        self.note = f"{cpeer.flags_note()}, libm tanh"

    def prepare(self, flat):
        (w1, b1), (w2, b2) = split(flat, NET.sizes)
        arrays = [np.ascontiguousarray(a, np.float64) for a in (w1, b1, w2[0], b2, X, Y[:, 0])]
        ptr = ctypes.POINTER(ctypes.c_double)
        return arrays, [a.ctypes.data_as(ptr) for a in arrays]

    def train(self, state, epochs):
        arrays, ptrs = state
        self.lib.xor_train(*ptrs, X.shape[0], arrays[0].shape[0], NET.lr, epochs)

    def params(self, state):
        w1, b1, w2, b2 = state[0][:4]
        return join([(w1, b1), (w2[None, :], b2)])


# ---------------------------------------------------------------------------
# NumPy with hand-written backprop
# ---------------------------------------------------------------------------
class NumpyXor(Peer):
    name = "numpy (hand-written)"

    def prepare(self, flat):
        return split(flat, NET.sizes)

    def train(self, layers, epochs):
        (w1, b1), (w2, b2) = layers
        lr = NET.lr
        for _ in range(epochs):
            h = np.tanh(X @ w1.T + b1)
            o = np.tanh(h @ w2.T + b2)
            dz2 = 2.0 * (o - Y) * (1.0 - o * o)
            dz1 = (dz2 @ w2) * (1.0 - h * h)
            w2 -= lr * (dz2.T @ h)
            b2 -= lr * dz2.sum(axis=0)
            w1 -= lr * (dz1.T @ X)
            b1 -= lr * dz1.sum(axis=0)

    def params(self, layers):
        return join(layers)


# ---------------------------------------------------------------------------
# PyTorch, CPU eager, one thread, float64
# ---------------------------------------------------------------------------
class TorchXor(Peer):
    name = "torch eager (1 thread)"
    slow = True
    slow_epochs = 5_000

    def load(self):
        self.torch = torch = require("torch")
        torch.set_num_threads(1)

    def prepare(self, flat):
        torch = self.torch
        (w1, b1), (w2, b2) = split(flat, NET.sizes)
        model = torch.nn.Sequential(
            torch.nn.Linear(2, 4, dtype=torch.float64),
            torch.nn.Tanh(),
            torch.nn.Linear(4, 1, dtype=torch.float64),
            torch.nn.Tanh(),
        )
        with torch.no_grad():
            for layer, w, b in ((model[0], w1, b1), (model[2], w2, b2)):
                layer.weight.copy_(torch.from_numpy(w))
                layer.bias.copy_(torch.from_numpy(b))
        opt = torch.optim.SGD(model.parameters(), lr=NET.lr)
        return model, opt, torch.from_numpy(X.copy()), torch.from_numpy(Y.copy())

    def train(self, state, epochs):
        model, opt, x, y = state
        for _ in range(epochs):
            opt.zero_grad()
            loss = ((model(x) - y) ** 2).sum()
            loss.backward()
            opt.step()

    def params(self, state):
        model = state[0]
        return join([(m.weight.detach().numpy(), m.bias.detach().numpy()) for m in (model[0], model[2])])


# ---------------------------------------------------------------------------
# JAX: the whole loop under jit, in lax.fori_loop, float64
# ---------------------------------------------------------------------------
class JaxXor(Peer):
    name = "jax jit (fori_loop)"

    def load(self):
        jax = require("jax")
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        lr = NET.lr

        def loss(p, x, y):
            w1, b1, w2, b2 = p
            h = jnp.tanh(x @ w1.T + b1)
            o = jnp.tanh(h @ w2.T + b2)
            return jnp.sum((o - y) ** 2)

        grad = jax.grad(loss)

        @jax.jit
        def train(p, x, y, epochs):
            def body(_, p):
                return jax.tree_util.tree_map(lambda a, g: a - lr * g, p, grad(p, x, y))

            return jax.lax.fori_loop(0, epochs, body, p)

        self.jnp = jnp
        self._train = train

    def prepare(self, flat):
        jnp = self.jnp
        (w1, b1), (w2, b2) = split(flat, NET.sizes)
        p = tuple(jnp.asarray(a) for a in (w1, b1, w2, b2))
        return [p, jnp.asarray(X), jnp.asarray(Y)]

    def train(self, state, epochs):
        p, x, y = state
        state[0] = self._train(p, x, y, epochs)
        state[0][0].block_until_ready()

    def params(self, state):
        w1, b1, w2, b2 = (np.asarray(a) for a in state[0])
        return join([(w1, b1), (w2, b2)])


# ---------------------------------------------------------------------------
# micrograd (PyPI), with a tanh op written the micrograd way
# ---------------------------------------------------------------------------
class MicrogradXor(Peer):
    """micrograd's Value has no tanh; one is added in micrograd's own style (a closure)."""

    name = "micrograd"
    note = "micrograd's Value has no tanh: one is added in micrograd's own closure style"
    slow = True
    slow_epochs = 1_000

    def load(self):
        self.Value = require("micrograd.engine").Value

    def prepare(self, flat):
        return [self.Value(float(v)) for v in flat]

    def _tanh(self, v):
        t = math.tanh(v.data)
        out = self.Value(t, (v,), "tanh")

        def _backward():
            v.grad += (1.0 - t * t) * out.grad

        out._backward = _backward
        return out

    def train(self, params, epochs):
        tanh = self._tanh
        hidden = [(params[3 * j : 3 * j + 2], params[3 * j + 2]) for j in range(4)]
        out_w, out_b = params[12:16], params[16]
        inputs = X.tolist()
        targets = Y[:, 0].tolist()
        lr = NET.lr
        for _ in range(epochs):
            outputs = []
            for x in inputs:
                h = [tanh(sum((wi * xi for wi, xi in zip(w, x)), b)) for w, b in hidden]
                outputs.append(tanh(sum((wi * hi for wi, hi in zip(out_w, h)), out_b)))
            loss = sum((o - t) ** 2 for o, t in zip(outputs, targets))
            for p in params:
                p.grad = 0.0
            loss.backward()
            for p in params:
                p.data -= lr * p.grad

    def params(self, params):
        return np.array([p.data for p in params])


PEERS: list[type[Peer]] = [TinymlFit, TinymlEager, NumbaXor, CXor, NumpyXor, JaxXor, TorchXor, MicrogradXor]
