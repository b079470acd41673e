"""References for the compiled-training tests (tests/test_train.py).

- a float64 NumPy MLP (forward, backward, mini-batch SGD) laid out as
  ``MLP.parameters()``: per layer, per neuron, the weights then the bias;
- an eager tinyml training loop (build the batch loss from Values, zero_grad,
  backward, step) that reports each epoch's loss the way ``fit`` does;
- a tiny "order probe" program whose single parameter records, digit by digit,
  the samples that SGD fed it, so the sample order of ``Program.fit`` can be read back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

import tinyml as tm

XOR_X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
XOR_Y = np.array([[0.0], [1.0], [1.0], [0.0]])


def params_of(model) -> np.ndarray:
    """Current parameter values in ``parameters()`` order."""
    return np.array([p.data for p in model.parameters()])


def grads_of(model) -> np.ndarray:
    return np.array([p.grad for p in model.parameters()])


# ---------------------------------------------------------------------------
# NumPy reference MLP
# ---------------------------------------------------------------------------
ACTIVATIONS: dict[str, tuple[Callable, Callable]] = {
    # name -> (f(z), f'(z) written with a = f(z))
    "tanh": (np.tanh, lambda z, a: 1.0 - a * a),
    "linear": (lambda z: z, lambda z, a: np.ones_like(z)),
    "sigmoid": (lambda z: 1.0 / (1.0 + np.exp(-z)), lambda z, a: a * (1.0 - a)),
}


class NumpyMLP:
    """A fully connected network over a flat parameter vector in tinyml's order."""

    def __init__(self, sizes: Sequence[int], activations: Sequence[str]) -> None:
        assert len(activations) == len(sizes) - 1
        self.sizes = list(sizes)
        self.activations = list(activations)

    def n_params(self) -> int:
        return sum(o * (i + 1) for i, o in zip(self.sizes[:-1], self.sizes[1:]))

    def unpack(self, flat: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        assert flat.shape == (self.n_params(),)
        layers = []
        at = 0
        for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]):
            block = flat[at : at + n_out * (n_in + 1)].reshape(n_out, n_in + 1)
            layers.append((block[:, :n_in], block[:, n_in]))
            at += n_out * (n_in + 1)
        return layers

    def forward(self, flat: np.ndarray, X: np.ndarray) -> np.ndarray:
        a = np.asarray(X, np.float64)
        for (W, b), act in zip(self.unpack(flat), self.activations):
            a = ACTIVATIONS[act][0](a @ W.T + b)
        return a

    def loss_and_grad(self, flat: np.ndarray, X: np.ndarray, Y: np.ndarray, reduction: str):
        """Squared error over the batch: "sum" (sse) or "mean" over every element (mse)."""
        layers = self.unpack(flat)
        acts = [np.asarray(X, np.float64)]
        zs = []
        for (W, b), act in zip(layers, self.activations):
            z = acts[-1] @ W.T + b
            zs.append(z)
            acts.append(ACTIVATIONS[act][0](z))
        diff = acts[-1] - Y
        scale = 1.0 if reduction == "sum" else 1.0 / diff.size
        loss = float(np.sum(diff * diff) * scale)
        delta = 2.0 * diff * scale  # dL/d(output)
        grads = []
        for i in range(len(layers) - 1, -1, -1):
            W, _ = layers[i]
            dz = delta * ACTIVATIONS[self.activations[i]][1](zs[i], acts[i + 1])
            grads.append((dz.T @ acts[i], dz.sum(axis=0)))
            delta = dz @ W
        grads.reverse()
        flat_grad = np.concatenate([np.hstack([gW, gb[:, None]]).ravel() for gW, gb in grads])
        return loss, flat_grad

    def sgd(self, flat, X, Y, epochs: int, lr: float, batch: int, reduction: str):
        """Mini-batch SGD in the given sample order; returns (epoch losses as fit reports them, params).

        An epoch's loss is the sum of its batches' losses ("sum"), or the
        sample-weighted mean of them ("mean"), each taken before its batch's step.
        """
        flat = np.array(flat, np.float64)
        n = len(X)
        history = []
        for _ in range(epochs):
            total = 0.0
            for s in range(0, n, batch):
                xb, yb = X[s : s + batch], Y[s : s + batch]
                loss, g = self.loss_and_grad(flat, xb, yb, reduction)
                total += loss if reduction == "sum" else loss * len(xb)
                flat = flat - lr * g
            history.append(total if reduction == "sum" else total / n)
        return np.array(history), flat


# ---------------------------------------------------------------------------
# Eager tinyml training loop
# ---------------------------------------------------------------------------
def eager_train(
    model,
    X,
    Y,
    epochs: int,
    batch_loss: Callable,
    *,
    batch_size: int | None = None,
    mean: bool = True,
    penalty: Callable | None = None,
    optimizer=None,
):
    """Train ``model`` eagerly on batches in order; returns (epoch losses, final parameters).

    ``batch_loss(model, Xb, Yb) -> Value`` is the loss of one batch (already
    reduced); ``penalty(model) -> Value`` is added to it. The epoch loss is
    reported as ``fit`` reports it: the batch losses summed (``mean=False``) or
    weighted by batch size and divided by n.
    """
    n = len(X)
    b = n if batch_size is None else batch_size
    history = []
    for _ in range(epochs):
        total = 0.0
        for s in range(0, n, b):
            xb, yb = X[s : s + b], Y[s : s + b]
            loss = batch_loss(model, xb, yb)
            if penalty is not None:
                loss = loss + penalty(model)
            total += loss.data * (len(xb) if mean else 1.0)
            if optimizer is None:
                model.zero_grad()
                loss.backward()
                model.update()
            else:
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        history.append(total / n if mean else total)
    return np.array(history), params_of(model)


# ---------------------------------------------------------------------------
# The order probe
# ---------------------------------------------------------------------------
def order_probe():
    """A one-parameter program whose SGD step with lr=1 on sample x is ``w <- 10 w + x``.

    The per-sample loss is ``-4.5 w^2 - x w`` (gradient ``-9 w - x``). With
    batch_size=1, samples 1..9 and w starting at 0, the digits of w after
    training are the samples in the order they were fed (exact in float64 up
    to 15 digits). A batch of m samples steps ``w <- w + m*9w + sum(x)`` under
    "sum" and ``w <- 10 w + mean(x)`` under "mean".
    """
    x = tm.placeholders(1)
    w = tm.Value(0.0)
    loss = -4.5 * (w * w) - x[0] * w
    return tm.compile(loss, inputs=x, params=[w]), w


def probe_reference(batches: Sequence[Sequence[float]], reduction: str) -> float:
    """w after SGD (lr=1, from 0) over ``batches`` of the order probe, in float64."""
    w = 0.0
    for xs in batches:
        g = sum(-9.0 * w - x for x in xs)
        if reduction == "mean":
            g = g / len(xs)
        w = w - g
    return w


def digits(w: float, n: int, epochs: int) -> list[list[int]]:
    """The per-epoch sample sequences written into the probe's w (n digits per epoch)."""
    text = str(int(w)).rjust(n * epochs, "0")
    assert len(text) == n * epochs, (w, n, epochs)
    return [[int(c) for c in text[e * n : (e + 1) * n]] for e in range(epochs)]
