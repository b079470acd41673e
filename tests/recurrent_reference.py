"""Slow, obviously-correct NumPy references for the recurrent layers (PyTorch's formulas,
``batch_first=True``), used by ``tests/test_recurrent.py`` with or without torch.

``params`` is a state_dict: ``weight_ih_l<k>`` (G*H, F), ``weight_hh_l<k>`` (G*H, H),
``bias_ih_l<k>``, ``bias_hh_l<k>`` (G*H,), gates stacked in PyTorch's order.
"""

from __future__ import annotations

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def cell(kind, x, h, c, w_ih, w_hh, b_ih, b_hh):
    """One step for a batch: x (N, F), h and c (N, H); returns (h', c')."""
    H = h.shape[1]
    gi = x @ w_ih.T + b_ih
    gh = h @ w_hh.T + b_hh
    if kind == "RNN_TANH":
        return np.tanh(gi + gh), c
    if kind == "RNN_RELU":
        return np.maximum(gi + gh, 0.0), c
    if kind == "LSTM":
        a = gi + gh
        i, f, g, o = (
            sigmoid(a[:, :H]),
            sigmoid(a[:, H : 2 * H]),
            np.tanh(a[:, 2 * H : 3 * H]),
            sigmoid(a[:, 3 * H :]),
        )
        c_new = f * c + i * g
        return o * np.tanh(c_new), c_new
    # GRU
    r = sigmoid(gi[:, :H] + gh[:, :H])
    z = sigmoid(gi[:, H : 2 * H] + gh[:, H : 2 * H])
    n = np.tanh(gi[:, 2 * H :] + r * gh[:, 2 * H :])
    return (1.0 - z) * n + z * h, c


def run(kind, params, x, num_layers, h0=None, c0=None):
    """(output (N, T, H), h_n (L, N, H), c_n (L, N, H)) for x (N, T, F)."""
    n, steps, _ = x.shape
    H = params["weight_hh_l0"].shape[1]
    seq = x
    hs, cs = [], []
    for k in range(num_layers):
        h = np.zeros((n, H)) if h0 is None else h0[k]
        c = np.zeros((n, H)) if c0 is None else c0[k]
        w_ih, w_hh = params[f"weight_ih_l{k}"], params[f"weight_hh_l{k}"]
        b_ih = params.get(f"bias_ih_l{k}", np.zeros(w_ih.shape[0]))
        b_hh = params.get(f"bias_hh_l{k}", np.zeros(w_ih.shape[0]))
        out = np.empty((n, steps, H))
        for t in range(steps):
            h, c = cell(kind, seq[:, t], h, c, w_ih, w_hh, b_ih, b_hh)
            out[:, t] = h
        seq = out
        hs.append(h)
        cs.append(c)
    return seq, np.stack(hs), np.stack(cs)


def numeric_grad(f, a, eps=1e-6):
    """Central differences of the scalar f() with respect to every entry of array ``a`` (in place)."""
    g = np.zeros_like(a)
    it = np.nditer(a, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = a[i]
        a[i] = old + eps
        up = f()
        a[i] = old - eps
        down = f()
        a[i] = old
        g[i] = (up - down) / (2 * eps)
    return g
