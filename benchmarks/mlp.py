"""The benchmarked networks, written down once so every peer trains the same thing.

Parameters travel between implementations as one flat float64 vector in
tinyml's ``model.parameters()`` order: per layer, per neuron, its weights then
its bias. ``split``/``join`` convert to per-layer ``(W, b)`` with ``W`` of
shape (outputs, inputs), the layout of PyTorch's ``nn.Linear``.

``reference_train`` is plain Python floats and ``math``, no numpy: the
independent reference the correctness checks compare every peer against.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Net:
    """An MLP trained with plain SGD: layer sizes, activation per layer, loss, batch."""

    sizes: tuple[int, ...]  # (inputs, hidden..., outputs)
    activations: tuple[str, ...]  # "tanh" or "linear", one per layer
    loss: str  # "sse" (sum over samples and outputs) or "cross_entropy" (mean over the batch)
    lr: float
    batch_size: int | None  # None: full batch

    @property
    def n_params(self) -> int:
        return sum((i + 1) * o for i, o in zip(self.sizes[:-1], self.sizes[1:]))


def split(flat: np.ndarray, sizes: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Flat tinyml-ordered parameters -> [(W (out, in), b (out,)), ...] (copies)."""
    flat = np.asarray(flat, np.float64)
    expected = sum((n_in + 1) * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))
    if flat.shape != (expected,):
        raise ValueError(f"{flat.size} parameters given, the network {tuple(sizes)} has {expected}")
    layers = []
    at = 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        block = flat[at : at + n_out * (n_in + 1)].reshape(n_out, n_in + 1)
        layers.append((block[:, :n_in].copy(), block[:, n_in].copy()))
        at += n_out * (n_in + 1)
    return layers


def join(layers: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """[(W, b), ...] -> flat tinyml-ordered parameters."""
    parts = []
    for w, b in layers:
        w = np.asarray(w, np.float64)
        b = np.asarray(b, np.float64).reshape(-1)
        parts.append(np.concatenate([w, b[:, None]], axis=1).reshape(-1))
    return np.concatenate(parts)


def batches(n: int, batch_size: int | None) -> list[tuple[int, int]]:
    """(start, stop) of each batch in order, the last partial one included."""
    size = n if batch_size is None else batch_size
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def evaluate(net: Net, flat: np.ndarray, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """The loss over the whole data set at ``flat`` (and accuracy for classification).

    "sse" is the sum of squared errors over every sample (the Rust XOR example's
    "total loss"); "cross_entropy" the mean over every sample.
    """
    a = np.asarray(x, np.float64)
    for (w, b), act in zip(split(flat, net.sizes), net.activations):
        a = a @ w.T + b
        if act == "tanh":
            a = np.tanh(a)
    if net.loss == "sse":
        return {"loss": float(np.sum((a - np.asarray(y, np.float64).reshape(a.shape)) ** 2))}
    labels = np.asarray(y, np.int64)
    z = a - a.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return {
        "loss": float(-logp[np.arange(len(labels)), labels].mean()),
        "accuracy": float((a.argmax(axis=1) == labels).mean()),
    }


# ---------------------------------------------------------------------------
# The independent reference: pure Python, one sample at a time
# ---------------------------------------------------------------------------
def reference_train(net: Net, flat: np.ndarray, x: np.ndarray, y: np.ndarray, epochs: int) -> np.ndarray:
    """SGD for ``epochs`` with lists of floats and ``math``; returns the flat parameters."""
    layers = [([list(map(float, row)) for row in w], list(map(float, b))) for w, b in split(flat, net.sizes)]
    xs = [list(map(float, row)) for row in np.asarray(x, np.float64)]
    if net.loss == "sse":
        ys = [list(map(float, row)) for row in np.asarray(y, np.float64).reshape(len(xs), -1)]
    else:
        ys = [int(v) for v in y]
    for _ in range(epochs):
        for start, stop in batches(len(xs), net.batch_size):
            grads = [([[0.0] * len(w[0]) for _ in w], [0.0] * len(b)) for w, b in layers]
            for s in range(start, stop):
                _reference_sample(net, layers, grads, xs[s], ys[s], stop - start)
            for (w, b), (gw, gb) in zip(layers, grads):
                for j in range(len(w)):
                    for i in range(len(w[j])):
                        w[j][i] -= net.lr * gw[j][i]
                    b[j] -= net.lr * gb[j]
    return join([(np.array(w), np.array(b)) for w, b in layers])


def _reference_sample(net: Net, layers, grads, x: list[float], y, batch: int) -> None:
    """Add one sample's gradient of the batch loss into ``grads``."""
    acts = [x]
    for (w, b), act in zip(layers, net.activations):
        a_in = acts[-1]
        z = [b[j] + sum(w[j][i] * a_in[i] for i in range(len(a_in))) for j in range(len(w))]
        acts.append([math.tanh(v) for v in z] if act == "tanh" else z)
    out = acts[-1]
    if net.loss == "sse":
        delta = [2.0 * (o - t) for o, t in zip(out, y)]
    else:
        m = max(out)
        e = [math.exp(v - m) for v in out]
        total = sum(e)
        delta = [(e[k] / total - (1.0 if k == y else 0.0)) / batch for k in range(len(out))]
    for layer in range(len(layers) - 1, -1, -1):
        w, _ = layers[layer]
        gw, gb = grads[layer]
        a_out = acts[layer + 1]
        a_in = acts[layer]
        if net.activations[layer] == "tanh":
            delta = [d * (1.0 - a * a) for d, a in zip(delta, a_out)]
        for j in range(len(w)):
            gb[j] += delta[j]
            for i in range(len(a_in)):
                gw[j][i] += delta[j] * a_in[i]
        delta = [sum(delta[j] * w[j][i] for j in range(len(w))) for i in range(len(a_in))]
