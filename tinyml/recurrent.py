"""PyTorch's recurrent layers over the tape: ``RNN``, ``LSTM``, ``GRU`` and their cells.

A sequence is unrolled on the tape: step t appends its rows after step t-1's,
every step's rows reading the same parameter rows (weights shared across
time), so a sequence of T steps costs rows proportional to T and the
compiled ``fit`` replays them with no Python per step. Each gate is one
``NEURON`` row with its activation fused,

    gate_j = act(b_ih_j + sum_i W_ih[j, i] x_i + sum_k W_hh[j, k] h_k + b_hh_j * 1),

where ``b_hh`` enters as a weight on a constant-one input so both biases stay
plain parameters of the one row (in ``fit`` the one is the lane mask, so the
row keeps the layout the fast sweeps handle). The rest of a step is a few
more NEURON rows per unit, which the sweeps evaluate inline rather than one
generic row at a time: the LSTM's ``c' = 0 + f*c + i*g``, ``tanh(0 + 1*c')``
(a constant weight of 1) and ``h' = 0 + o * tanh(c')``; the GRU's
``n = tanh(b_in + W_in x + r * (W_hn h + b_hn))`` (one row, r a per-lane
weight), ``d = h - n`` and ``h' = n + z*d``.
A missing initial state is zeros, which simply leaves the W_hh terms out of
the first step.

Shapes, parameter names (``weight_ih_l0`` ...), gate order (LSTM i, f, g, o;
GRU r, z, n) and initialisation (uniform in +-1/sqrt(hidden_size)) are
PyTorch's with ``batch_first=True``, so ``load_state_dict`` copies weights
between the two in one line.
"""

from __future__ import annotations

import math

import numpy as np

from .graph import Graph, current_graph
from .layers import _param_tensor
from .module import Module, as_tensor
from .nn import _positive_int, _rng
from .ops import Op
from .tensor import Tensor
from .train import tracing
from .value import wrap

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


class _Weights:
    """One layer's (or cell's) parameter rows, read after the forward's ``reserve``:
    w_ih (G*H, F), w_hh (G*H, H), b_ih and b_hh (G*H,) or None without biases."""

    def __init__(self, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None) -> None:
        self.w_ih = w_ih._rows_array().reshape(w_ih.shape)
        self.w_hh = w_hh._rows_array().reshape(w_hh.shape)
        self.b_ih = None if b_ih is None else b_ih._rows_array()
        self.b_hh = None if b_hh is None else b_hh._rows_array()


class _Builder:
    """Appends the rows of recurrent steps; works on row numbers (int arrays), not handles.

    The caller reserves room for everything first, so no compaction renumbers the
    rows in between; only the rows it returns to the user get handles.
    """

    def __init__(self, g: Graph, kind: str, hidden: int, one: int, zero: int) -> None:
        self.g, self.kind, self.hidden, self.one, self.zero = g, kind, hidden, one, zero
        self.unit = g.push_leaf(1.0)  # constant weights of 1 and -1 (room for them is in _room)
        self.minus_one = g.push_leaf(-1.0)

    def gates(self, w: _Weights, blocks, acts, x: np.ndarray, h: np.ndarray | None) -> np.ndarray:
        """NEURON rows act(b_ih + W_ih x + W_hh h + b_hh * 1) for the gate ``blocks`` (indices
        into PyTorch's stacked weights), ``acts`` their activation codes; x (N, F), h (N, H)
        or None (a zero state: no W_hh terms). Returns rows (len(blocks), N, H)."""
        H = self.hidden
        n = x.shape[0]
        idx = np.concatenate([np.arange(k * H, (k + 1) * H) for k in blocks])
        weights, inputs = [w.w_ih[idx]], [x]
        if h is not None:
            weights.append(w.w_hh[idx])
            inputs.append(h)
        if w.b_hh is not None:
            weights.append(w.b_hh[idx][:, None])
            inputs.append(np.full((n, 1), self.one, np.int64))
        W = np.concatenate(weights, axis=1)  # (M, K)
        X = np.concatenate(inputs, axis=1)  # (N, K)
        m, k = W.shape
        b = w.b_ih[idx] if w.b_ih is not None else np.full(m, self.zero, np.int64)
        parents = np.empty((len(blocks), n, H, 2 * k + 1), np.int64)
        parents[..., 0] = b.reshape(len(blocks), 1, H)
        parents[..., 1 : k + 1] = W.reshape(len(blocks), 1, H, k)
        parents[..., k + 1 :] = X[None, :, None, :]
        aux = np.broadcast_to(np.asarray(acts, np.float64)[:, None, None], (len(blocks), n, H))
        rows = self.g.push_many(Op.NEURON, parents.reshape(-1, 2 * k + 1), aux.reshape(-1))
        return np.asarray(rows, np.int64).reshape(len(blocks), n, H)

    def rows(self, op: int, *parents: np.ndarray, aux: float = 0.0) -> np.ndarray:
        """One ``op`` row per element of the parent row arrays (broadcast together)."""
        shape = np.broadcast_shapes(*(np.shape(p) for p in parents))
        stacked = np.stack([np.broadcast_to(p, shape).reshape(-1) for p in parents], axis=1)
        return np.asarray(self.g.push_many(op, stacked, aux), np.int64).reshape(shape)

    def step(self, w: _Weights, x: np.ndarray, h, c):
        """One time step for N samples: x (N, F), h and c (N, H) or None; returns (h', c')."""
        kind = self.kind
        zero = np.int64(self.zero)
        if kind == "RNN_TANH" or kind == "RNN_RELU":
            act = Op.TANH if kind == "RNN_TANH" else Op.RELU
            return self.gates(w, [0], [act], x, h)[0], None
        if kind == "LSTM":
            # gate blocks i, f, g, o in PyTorch's order; the three sigmoids first, so the
            # forward sweep evaluates them as one run of rows with one activation
            i, f, o, gg = self.gates(w, [0, 1, 3, 2], [Op.SIGMOID] * 3 + [Op.TANH], x, h)
            # NEURON rows throughout, which the sweeps evaluate inline: c' = 0 + f*c + i*g,
            # tanh(c') = tanh(0 + 1 * c') (a constant-one weight), h' = 0 + o * tanh(c')
            if c is None:
                c_new = self.rows(Op.NEURON, zero, i, gg)  # c' = i*g
            else:
                c_new = self.rows(Op.NEURON, zero, f, i, c, gg)  # c' = f*c + i*g
            tc = self.rows(Op.NEURON, zero, np.int64(self.unit), c_new, aux=float(Op.TANH))
            return self.rows(Op.NEURON, zero, o, tc), c_new
        # GRU: r, z = sigmoid(...); n = tanh(W_in x + b_in + r * (W_hn h + b_hn)); h' = n + z*(h - n)
        H = self.hidden
        r, z = self.gates(w, [0, 1], [Op.SIGMOID, Op.SIGMOID], x, h)
        n = x.shape[0]
        hb = w.b_hh[2 * H :] if w.b_hh is not None else np.full(H, self.zero, np.int64)
        if h is None:
            hn = np.broadcast_to(hb, (n, H))  # W_hn h + b_hn with h = 0: the bias rows themselves
        else:
            k = H
            parents = np.empty((n, H, 2 * k + 1), np.int64)
            parents[..., 0] = hb
            parents[..., 1 : k + 1] = w.w_hh[2 * H :]
            parents[..., k + 1 :] = h[:, None, :]
            hn = np.asarray(self.g.push_many(Op.NEURON, parents.reshape(-1, 2 * k + 1)), np.int64)
            hn = hn.reshape(n, H)
        f = x.shape[1]
        k = f + 1
        ib = w.b_ih[2 * H :] if w.b_ih is not None else np.full(H, self.zero, np.int64)
        parents = np.empty((n, H, 2 * k + 1), np.int64)
        parents[..., 0] = ib
        parents[..., 1 : f + 1] = w.w_ih[2 * H :]
        parents[..., f + 1] = r
        parents[..., f + 2 : 2 * f + 2] = x[:, None, :]
        parents[..., 2 * f + 2] = hn
        aux = float(Op.TANH)
        cand = np.asarray(self.g.push_many(Op.NEURON, parents.reshape(-1, 2 * k + 1), aux), np.int64)
        cand = cand.reshape(n, H)
        # d = h - n as 0 + 1*h + (-1)*n (constant weights), h' = n + z*d: NEURON rows, inline
        minus = np.int64(self.minus_one)
        if h is None:
            d = self.rows(Op.NEURON, zero, minus, cand)
        else:
            d = self.rows(Op.NEURON, zero, np.int64(self.unit), minus, h, cand)
        return self.rows(Op.NEURON, cand, z, d), None


def _room(kind: str, n: int, steps: int, sizes: list[int], hidden: int) -> tuple[int, int]:
    """An upper bound on the rows and parent entries of ``steps`` steps of N samples,
    for layers with input sizes ``sizes``."""
    g = _GATES[kind]
    rows, entries = 8, 8
    for f in sizes:
        k = f + hidden + 1
        per_unit_rows = g + 4
        per_unit_entries = g * (2 * k + 1) + 2 * (2 * hidden + 3) + 12
        rows += steps * n * hidden * per_unit_rows
        entries += steps * n * hidden * per_unit_entries
    return rows, entries


def _lane_ones(g: Graph) -> int:
    """The row of a constant 1 for the b_hh terms. While ``fit`` traces a training step it
    is the lane mask (1 in every lane holding a sample; the same mask batch norm uses,
    made the same way), a per-lane row, so the gate rows keep the layout of a layer's
    neuron that the fast sweeps handle; otherwise a plain constant leaf."""
    state = tracing.stats
    if state is None:
        g.reserve(1, 0)
        return wrap(g, g.push_leaf(1.0))
    if state["mask"] is None:
        g.reserve(2, 2)
        mask = wrap(g, g.push_leaf(1.0))
        state["mask"] = mask
        state["lanes"] = wrap(g, g.push(Op.LANE_SUM, (mask._row, mask._row)))
    return state["mask"]


def _check_kind(nonlinearity) -> str:
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    return "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"


def _check_bias(bias, who: str) -> bool:
    if not isinstance(bias, bool):
        raise TypeError(f"{who}: bias must be a bool, got {type(bias).__name__}")
    return bias


class _RNNBase(Module):
    """The multi-layer recurrent layers: x (N, T, input_size) or (T, input_size)."""

    kind = ""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = True,
        *,
        seed: int | np.random.Generator | None = None,
        graph: Graph | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if batch_first is not True:
            raise ValueError(
                f"{name}: tinyml's recurrent layers are batch first (x of shape (N, T, input_size)); "
                f"got batch_first={batch_first!r}. Transpose the input to (N, T, input_size) instead"
            )
        self.input_size = _positive_int(input_size, f"{name}: input_size")
        self.hidden_size = _positive_int(hidden_size, f"{name}: hidden_size")
        self.num_layers = _positive_int(num_layers, f"{name}: num_layers")
        self.bias = _check_bias(bias, name)
        rng = _rng(seed)
        g = current_graph() if graph is None else graph
        H = self.hidden_size
        gh = _GATES[self.kind] * H
        bound = 1.0 / math.sqrt(H)
        for k in range(self.num_layers):
            f = self.input_size if k == 0 else H
            # in PyTorch's order: weight_ih, weight_hh, bias_ih, bias_hh, layer by layer
            setattr(self, f"weight_ih_l{k}", _param_tensor(rng.uniform(-bound, bound, (gh, f)), g))
            setattr(self, f"weight_hh_l{k}", _param_tensor(rng.uniform(-bound, bound, (gh, H)), g))
            if self.bias:
                setattr(self, f"bias_ih_l{k}", _param_tensor(rng.uniform(-bound, bound, (gh,)), g))
                setattr(self, f"bias_hh_l{k}", _param_tensor(rng.uniform(-bound, bound, (gh,)), g))

    def _config(self) -> dict:
        return {
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "bias": self.bias,
        }

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        return s

    def _who(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def _layer(self, k: int) -> tuple:
        get = self.__dict__.get
        return (get(f"weight_ih_l{k}"), get(f"weight_hh_l{k}"), get(f"bias_ih_l{k}"), get(f"bias_hh_l{k}"))

    def forward(self, input, hx=None):
        """``(output, h_n)`` (LSTM: ``(output, (h_n, c_n))``): output (N, T, hidden) holds
        the last layer's h at every step, h_n (and c_n) (num_layers, N, hidden); without
        the batch dimension for an unbatched (T, input_size) input."""
        g = self.weight_ih_l0.graph
        who = self._who()
        x = as_tensor(input, g, who)
        F = self.input_size
        if x.ndim == 2:
            if x.shape[1] != F:
                raise ValueError(
                    f"{who}: a 2-D input is taken as one unbatched sequence of shape (T, input_size) = "
                    f"(T, {F}), but its last dimension is {x.shape[1]} (input shape {x.shape}). "
                    f"If it holds N sequences of T steps with one feature each, reshape it to "
                    f"(N, T, 1) (in fit: X of shape (n, T, 1)); otherwise give input_size={x.shape[1]}"
                )
            unbatched = True
            x = x.reshape(1, *x.shape)
        elif x.ndim == 3:
            if x.shape[2] != F:
                raise ValueError(
                    f"{who}: expected an input of shape (N, T, {F}) (batch first), got {x.shape} "
                    f"(last dimension {x.shape[2]}, not input_size {F})"
                )
            unbatched = False
        else:
            raise ValueError(
                f"{who}: expected an input of shape (N, T, {F}) (batch first) or (T, {F}) "
                f"(one unbatched sequence), got {x.shape}"
            )
        n, steps = x.shape[0], x.shape[1]
        states = self._initial_states(hx, g, n, unbatched)
        ones = _lane_ones(g) if self.bias else None
        L, H = self.num_layers, self.hidden_size
        g.reserve(*_room(self.kind, n, steps, [F] + [H] * (L - 1), H))
        # row numbers from here on: nothing compacts until every row is appended
        zero = g.push_leaf(0.0)
        build = _Builder(g, self.kind, H, -1 if ones is None else ones._row, zero)
        seq = x._rows_array().reshape(n, steps, F)
        last_h, last_c = [], []
        for k in range(L):
            w = _Weights(*self._layer(k))
            h = None if states[0] is None else states[0]._rows_array().reshape(L, n, H)[k]
            c = None if states[1] is None else states[1]._rows_array().reshape(L, n, H)[k]
            out = np.empty((n, steps, H), np.int64)
            for t in range(steps):
                h, c = build.step(w, seq[:, t], h, c)
                out[:, t] = h
            seq = out
            last_h.append(h)
            last_c.append(c)
        output = Tensor._wrap_rows(g, seq.reshape(-1).tolist(), (n, steps, H))
        h_n = _state_tensor(g, last_h, L, n, H)
        if unbatched:
            output, h_n = output.reshape(steps, H), h_n.reshape(L, H)
        if self.kind != "LSTM":
            return output, h_n
        c_n = _state_tensor(g, last_c, L, n, H)
        return output, (h_n, c_n.reshape(L, H) if unbatched else c_n)

    def _initial_states(self, hx, g: Graph, n: int, unbatched: bool):
        """(h0, c0) as Tensors of shape (num_layers, N, hidden) or None for zeros."""
        if hx is None:
            return None, None
        who = self._who()
        L, H = self.num_layers, self.hidden_size
        if self.kind == "LSTM":
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"{who}: the initial state must be a pair (h0, c0), got {type(hx).__name__}")
            parts = [("h0", hx[0]), ("c0", hx[1])]
        else:
            parts = [("h0", hx)]
        want = (L, H) if unbatched else (L, n, H)
        out = []
        for name, v in parts:
            t = as_tensor(v, g, f"{who} {name}")
            if t.shape != want:
                layout = "(num_layers, hidden_size)" if unbatched else "(num_layers, N, hidden_size)"
                raise ValueError(
                    f"{who}: expected {name} of shape {layout} = {want} for an input of "
                    f"{'one unbatched sequence' if unbatched else f'{n} sequences'}, got {t.shape}"
                )
            out.append(t.reshape(L, n, H))
        return out[0], (out[1] if len(out) > 1 else None)


def _state_tensor(g: Graph, last: list, L: int, n: int, H: int) -> Tensor:
    """The final states of every layer, rows (N, H) each, as a Tensor (L, N, H)."""
    rows = np.stack(last).reshape(-1)
    return Tensor._wrap_rows(g, rows.tolist(), (L, n, H))


class RNN(_RNNBase):
    """Elman RNN, ``h' = act(W_ih x + b_ih + W_hh h + b_hh)`` with act tanh or relu, as
    ``torch.nn.RNN(..., batch_first=True)``; returns ``(output, h_n)``."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = True,
        *,
        seed: int | np.random.Generator | None = None,
        graph: Graph | None = None,
    ) -> None:
        self.kind = _check_kind(nonlinearity)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, seed=seed, graph=graph)
        self.nonlinearity = nonlinearity

    def _config(self) -> dict:
        return {**super()._config(), "nonlinearity": self.nonlinearity}

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s if self.nonlinearity == "tanh" else s + ", nonlinearity='relu'"


class LSTM(_RNNBase):
    """Long short-term memory, as ``torch.nn.LSTM(..., batch_first=True)``: gates i, f, g, o
    stacked in that order in ``weight_ih_l<k>`` (4*hidden, in); returns ``(output, (h_n, c_n))``."""

    kind = "LSTM"


class GRU(_RNNBase):
    """Gated recurrent unit, as ``torch.nn.GRU(..., batch_first=True)``: gates r, z, n with
    ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``; returns ``(output, h_n)``."""

    kind = "GRU"


# ---------------------------------------------------------------------------
# Cells: one step, x (N, input_size) or (input_size,)
# ---------------------------------------------------------------------------
class _CellBase(Module):
    kind = ""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        seed: int | np.random.Generator | None = None,
        graph: Graph | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.input_size = _positive_int(input_size, f"{name}: input_size")
        self.hidden_size = _positive_int(hidden_size, f"{name}: hidden_size")
        self.bias = _check_bias(bias, name)
        rng = _rng(seed)
        g = current_graph() if graph is None else graph
        H = self.hidden_size
        gh = _GATES[self.kind] * H
        bound = 1.0 / math.sqrt(H)
        self.weight_ih = _param_tensor(rng.uniform(-bound, bound, (gh, self.input_size)), g)
        self.weight_hh = _param_tensor(rng.uniform(-bound, bound, (gh, H)), g)
        if self.bias:
            self.bias_ih = _param_tensor(rng.uniform(-bound, bound, (gh,)), g)
            self.bias_hh = _param_tensor(rng.uniform(-bound, bound, (gh,)), g)

    def _config(self) -> dict:
        return {"input_size": self.input_size, "hidden_size": self.hidden_size, "bias": self.bias}

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")

    def forward(self, input, hx=None):
        """The new state: h' (N, hidden) (LSTMCell: ``(h', c')``); (hidden,) unbatched."""
        g = self.weight_ih.graph
        who = f"{type(self).__name__}({self.extra_repr()})"
        x = as_tensor(input, g, who)
        F, H = self.input_size, self.hidden_size
        if x.ndim not in (1, 2) or x.shape[-1] != F:
            raise ValueError(f"{who}: expected an input of shape (N, {F}) or ({F},), got {x.shape}")
        unbatched = x.ndim == 1
        n = 1 if unbatched else x.shape[0]
        want = (H,) if unbatched else (n, H)
        states = []
        if hx is not None:
            if self.kind == "LSTM":
                if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                    raise TypeError(f"{who}: the state must be a pair (h, c), got {type(hx).__name__}")
                parts = [("h", hx[0]), ("c", hx[1])]
            else:
                parts = [("h", hx)]
            for name, v in parts:
                t = as_tensor(v, g, f"{who} {name}")
                if t.shape != want:
                    raise ValueError(
                        f"{who}: expected {name} of shape {want} for an input of shape {x.shape}, "
                        f"got {t.shape}"
                    )
                states.append(t)
        ones = _lane_ones(g) if self.bias else None
        g.reserve(*_room(self.kind, n, 1, [F], H))
        zero = g.push_leaf(0.0)
        build = _Builder(g, self.kind, H, -1 if ones is None else ones._row, zero)
        get = self.__dict__.get
        w = _Weights(self.weight_ih, self.weight_hh, get("bias_ih"), get("bias_hh"))
        h = states[0]._rows_array().reshape(n, H) if states else None
        c = states[1]._rows_array().reshape(n, H) if len(states) > 1 else None
        h, c = build.step(w, x._rows_array().reshape(n, F), h, c)
        h_t = Tensor._wrap_rows(g, h.reshape(-1).tolist(), want)
        if self.kind != "LSTM":
            return h_t
        return h_t, Tensor._wrap_rows(g, c.reshape(-1).tolist(), want)


class RNNCell(_CellBase):
    """One Elman step ``h' = act(W_ih x + b_ih + W_hh h + b_hh)``, as ``torch.nn.RNNCell``."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        *,
        seed: int | np.random.Generator | None = None,
        graph: Graph | None = None,
    ) -> None:
        self.kind = _check_kind(nonlinearity)
        super().__init__(input_size, hidden_size, bias, seed=seed, graph=graph)
        self.nonlinearity = nonlinearity

    def _config(self) -> dict:
        return {**super()._config(), "nonlinearity": self.nonlinearity}


class LSTMCell(_CellBase):
    """One LSTM step, as ``torch.nn.LSTMCell``: ``cell(x, (h, c))`` returns ``(h', c')``."""

    kind = "LSTM"


class GRUCell(_CellBase):
    """One GRU step, as ``torch.nn.GRUCell``: ``cell(x, h)`` returns ``h'``."""

    kind = "GRU"
