"""Digits (scikit-learn's ``load_digits``), implemented by tinyml and by each peer.

The network: 64 -> 32 tanh -> 10 linear, softmax cross-entropy averaged over
each mini-batch of 32 (the last partial batch included), plain SGD with
learning rate 0.1, batches in data order (no shuffling, so every peer takes the
same steps). Features are the pixel values divided by 16. The initial weights
are tinyml's ``MLP(64, [32, 10], 0.1, TANH, seed=0, output_activation="linear")``.

Same peer shape as ``xor_peers``: ``load()``, ``prepare(flat, x, y)``
(untimed), ``train(state, epochs)`` (timed), ``params(state)``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .core import NOT_AVAILABLE, Unavailable, require
from .mlp import Net, batches, join, split

NET = Net(sizes=(64, 32, 10), activations=("tanh", "linear"), loss="cross_entropy", lr=0.1, batch_size=32)
SEED = 0


def load_data() -> tuple[np.ndarray, np.ndarray]:
    """(features / 16 as float64 (1797, 64), integer labels (1797,)); Unavailable without sklearn."""
    datasets = require("sklearn.datasets")
    digits = datasets.load_digits()
    return digits.data.astype(np.float64) / 16.0, digits.target.astype(np.int64)


def tinyml_model(net: Net = NET, seed: int = SEED):
    """A fresh tinyml model of ``net`` (one tanh hidden layer, linear output), in a graph of its own."""
    import tinyml as tm

    n_in, hidden, n_out = net.sizes
    with tm.Graph():
        return tm.MLP(
            n_in, [hidden, n_out], net.lr, tm.Activation.TANH, seed=seed, output_activation="linear"
        )


def initial_params(net: Net = NET, seed: int = SEED) -> np.ndarray:
    return np.array([p.data for p in tinyml_model(net, seed).parameters()])


class Peer:
    """A peer of the network ``net`` (the digits one here; ``benchmarks/wide.py`` subclasses
    every peer with a wider one), initial weights of ``tinyml_model(net, seed)``."""

    name = ""
    net = NET
    seed = SEED

    def load(self) -> None:
        pass


# ---------------------------------------------------------------------------
# tinyml: model.fit(..., loss="cross_entropy", batch_size=32, shuffle=False)
# ---------------------------------------------------------------------------
class TinymlFit(Peer):
    name = "tinyml fit"

    def load(self) -> None:
        import tinyml as tm

        if not hasattr(tm, "Tensor"):
            raise Unavailable("tm.Tensor is not written yet", NOT_AVAILABLE)
        if not hasattr(tm.MLP, "fit"):
            raise Unavailable("tm.MLP.fit is not written yet", NOT_AVAILABLE)
        probe = tinyml_model(self.net, self.seed)
        try:
            probe.fit(
                np.zeros((2, self.net.sizes[0])),
                np.array([0, 1]),
                epochs=1,
                loss="cross_entropy",
                batch_size=1,
            )
        except (ValueError, TypeError, NotImplementedError) as exc:
            raise Unavailable(
                f"fit(loss='cross_entropy') is not available yet: {exc}", NOT_AVAILABLE
            ) from None

    def prepare(self, flat, x, y):
        model = tinyml_model(self.net, self.seed)
        for p, v in zip(model.parameters(), flat):
            p.data = float(v)
        return model, x, y

    def train(self, state, epochs):
        model, x, y = state
        model.fit(
            x,
            y,
            epochs=epochs,
            loss="cross_entropy",
            batch_size=self.net.batch_size,
            shuffle=False,
            report_every=1,
        )

    def params(self, state):
        return np.array([p.data for p in state[0].parameters()])


# ---------------------------------------------------------------------------
# Hand-written Numba kernel of exactly this network
# ---------------------------------------------------------------------------
@njit(cache=True, error_model="numpy")
def _digits_kernel(w1t, b1, w2, b2, x, y, lr, batch, epochs):  # pragma: no cover - compiled
    """Tanh hidden layer, linear output, softmax cross-entropy (batch mean), SGD, in place.

    The first layer's weights are held transposed, ``w1t`` (inputs, hidden), so
    that the loops over the 32 hidden units are contiguous and vectorise without
    reassociating any sum (no fastmath: each unit still adds its inputs in order).
    """
    n, d = x.shape
    hidden = w1t.shape[1]
    k = w2.shape[0]
    h = np.empty(hidden)
    dh = np.empty(hidden)
    z = np.empty(k)
    gw1t = np.empty_like(w1t)
    gb1 = np.empty_like(b1)
    gw2 = np.empty_like(w2)
    gb2 = np.empty_like(b2)
    for _ in range(epochs):
        for start in range(0, n, batch):
            stop = min(start + batch, n)
            inv = 1.0 / (stop - start)
            gw1t[:] = 0.0
            gb1[:] = 0.0
            gw2[:] = 0.0
            gb2[:] = 0.0
            for s in range(start, stop):
                h[:] = b1
                for i in range(d):
                    xi = x[s, i]
                    for j in range(hidden):
                        h[j] += w1t[i, j] * xi
                for j in range(hidden):
                    h[j] = math.tanh(h[j])
                top = -np.inf
                for c in range(k):
                    acc = b2[c]
                    for j in range(hidden):
                        acc += w2[c, j] * h[j]
                    z[c] = acc
                    top = max(top, acc)
                total = 0.0
                for c in range(k):
                    z[c] = math.exp(z[c] - top)
                    total += z[c]
                dh[:] = 0.0
                for c in range(k):
                    g = z[c] / total
                    if c == y[s]:
                        g -= 1.0
                    g *= inv
                    gb2[c] += g
                    for j in range(hidden):
                        gw2[c, j] += g * h[j]
                        dh[j] += g * w2[c, j]
                for j in range(hidden):
                    dh[j] *= 1.0 - h[j] * h[j]
                    gb1[j] += dh[j]
                for i in range(d):
                    xi = x[s, i]
                    for j in range(hidden):
                        gw1t[i, j] += dh[j] * xi
            for i in range(d):
                for j in range(hidden):
                    w1t[i, j] -= lr * gw1t[i, j]
            for j in range(hidden):
                b1[j] -= lr * gb1[j]
            for c in range(k):
                b2[c] -= lr * gb2[c]
                for j in range(hidden):
                    w2[c, j] -= lr * gw2[c, j]


class NumbaDigits(Peer):
    name = "numba (hand-written)"

    def prepare(self, flat, x, y):
        (w1, b1), (w2, b2) = split(flat, self.net.sizes)
        w1t = np.ascontiguousarray(w1.T)
        return w1t, b1, w2, b2, np.ascontiguousarray(x), np.ascontiguousarray(y)

    def train(self, state, epochs):
        _digits_kernel(*state, self.net.lr, self.net.batch_size, epochs)

    def params(self, state):
        w1t, b1, w2, b2 = state[:4]
        return join([(w1t.T, b1), (w2, b2)])


# ---------------------------------------------------------------------------
# NumPy with hand-written backprop
# ---------------------------------------------------------------------------
class NumpyDigits(Peer):
    name = "numpy (hand-written)"

    def prepare(self, flat, x, y):
        return split(flat, self.net.sizes), x, y, batches(len(x), self.net.batch_size)

    def train(self, state, epochs):
        ((w1, b1), (w2, b2)), x, y, spans = state
        lr = self.net.lr
        for _ in range(epochs):
            for start, stop in spans:
                xb = x[start:stop]
                h = np.tanh(xb @ w1.T + b1)
                z = h @ w2.T + b2
                z -= z.max(axis=1, keepdims=True)
                p = np.exp(z)
                p /= p.sum(axis=1, keepdims=True)
                p[np.arange(stop - start), y[start:stop]] -= 1.0
                p /= stop - start
                dz1 = (p @ w2) * (1.0 - h * h)
                w2 -= lr * (p.T @ h)
                b2 -= lr * p.sum(axis=0)
                w1 -= lr * (dz1.T @ xb)
                b1 -= lr * dz1.sum(axis=0)

    def params(self, state):
        return join(state[0])


# ---------------------------------------------------------------------------
# PyTorch, CPU eager, one thread, float64
# ---------------------------------------------------------------------------
class TorchDigits(Peer):
    name = "torch eager (1 thread)"

    def load(self):
        self.torch = torch = require("torch")
        torch.set_num_threads(1)

    def prepare(self, flat, x, y):
        torch = self.torch
        (w1, b1), (w2, b2) = split(flat, self.net.sizes)
        n_in, hidden, n_out = self.net.sizes
        model = torch.nn.Sequential(
            torch.nn.Linear(n_in, hidden, dtype=torch.float64),
            torch.nn.Tanh(),
            torch.nn.Linear(hidden, n_out, dtype=torch.float64),
        )
        with torch.no_grad():
            for layer, w, b in ((model[0], w1, b1), (model[2], w2, b2)):
                layer.weight.copy_(torch.from_numpy(w))
                layer.bias.copy_(torch.from_numpy(b))
        opt = torch.optim.SGD(model.parameters(), lr=self.net.lr)
        xt, yt = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))
        data = [(xt[a:b], yt[a:b]) for a, b in batches(len(x), self.net.batch_size)]
        return model, opt, data

    def train(self, state, epochs):
        model, opt, data = state
        cross_entropy = self.torch.nn.functional.cross_entropy
        for _ in range(epochs):
            for xb, yb in data:
                opt.zero_grad()
                loss = cross_entropy(model(xb), yb)
                loss.backward()
                opt.step()

    def params(self, state):
        model = state[0]
        return join([(m.weight.detach().numpy(), m.bias.detach().numpy()) for m in (model[0], model[2])])


# ---------------------------------------------------------------------------
# JAX, float64: a jitted step per batch, or the whole epoch in one lax.scan
# ---------------------------------------------------------------------------
def _jax_step(lr: float):
    jax = require("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    def loss(p, xb, yb):
        w1, b1, w2, b2 = p
        z = jnp.tanh(xb @ w1.T + b1) @ w2.T + b2
        logp = jax.nn.log_softmax(z, axis=1)
        return -jnp.mean(jnp.take_along_axis(logp, yb[:, None], axis=1))

    grad = jax.grad(loss)

    def step(p, xb, yb):
        return jax.tree_util.tree_map(lambda a, g: a - lr * g, p, grad(p, xb, yb))

    return jax, jnp, step


class _JaxPeer(Peer):
    def params(self, state):
        w1, b1, w2, b2 = (np.asarray(a) for a in state[0])
        return join([(w1, b1), (w2, b2)])

    def _params(self, flat):
        (w1, b1), (w2, b2) = split(flat, self.net.sizes)
        return tuple(self.jnp.asarray(a) for a in (w1, b1, w2, b2))


class JaxBatchJit(_JaxPeer):
    name = "jax jit per batch"

    def load(self):
        jax, self.jnp, step = _jax_step(self.net.lr)
        self._step = jax.jit(step)

    def prepare(self, flat, x, y):
        jnp = self.jnp
        data = [(jnp.asarray(x[a:b]), jnp.asarray(y[a:b])) for a, b in batches(len(x), self.net.batch_size)]
        return [self._params(flat), data]

    def train(self, state, epochs):
        p, data = state
        step = self._step
        for _ in range(epochs):
            for xb, yb in data:
                p = step(p, xb, yb)
        p[0].block_until_ready()
        state[0] = p


class JaxScan(_JaxPeer):
    name = "jax jit epoch (lax.scan)"

    def load(self):
        jax, self.jnp, step = _jax_step(self.net.lr)

        def epoch(p, xs, ys, x_rest, y_rest):
            p, _ = jax.lax.scan(lambda p, b: (step(p, b[0], b[1]), None), p, (xs, ys))
            if x_rest.shape[0]:  # static: the last partial batch
                p = step(p, x_rest, y_rest)
            return p

        self._epoch = jax.jit(epoch)

    def prepare(self, flat, x, y):
        jnp = self.jnp
        b = self.net.batch_size
        full = len(x) // b * b
        xs = jnp.asarray(x[:full].reshape(-1, b, x.shape[1]))
        ys = jnp.asarray(y[:full].reshape(-1, b))
        return [self._params(flat), xs, ys, jnp.asarray(x[full:]), jnp.asarray(y[full:])]

    def train(self, state, epochs):
        p, *data = state
        for _ in range(epochs):
            p = self._epoch(p, *data)
        p[0].block_until_ready()
        state[0] = p


PEERS: list[type[Peer]] = [TinymlFit, NumbaDigits, NumpyDigits, JaxScan, JaxBatchJit, TorchDigits]
