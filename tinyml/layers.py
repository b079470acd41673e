"""PyTorch's layers over the tape: ``Sequential``, ``Linear``, activations, ``Flatten``, ``Dropout``.

Argument names, shapes (batch first), defaults, initialisation bounds and
``state_dict`` names are PyTorch's, so weights move between the two in one
``load_state_dict``. Each layer appends rows as the rest of tinyml does: a
``Linear`` output is one ``NEURON`` row ``b_j + sum_i w_ji x_i`` whose weight
parents are the layer's parameters; the compiled training program fuses a
following tanh/sigmoid/relu into it, as ``MLP`` builds its layers.
"""

from __future__ import annotations

import math

import numpy as np

from .graph import Graph, current_graph
from .module import Module, as_tensor
from .nn import _positive_int, _rng
from .ops import Op
from .tensor import Tensor
from .train import BufferVersion, tracing
from .value import _number, wrap


def _param_tensor(values: np.ndarray, graph: Graph) -> Tensor:
    """A Tensor of new leaf Values (parameters) holding ``values``."""
    flat = np.ascontiguousarray(values, np.float64).reshape(-1)
    graph.reserve(flat.shape[0], 0)
    return Tensor._wrap_rows(graph, graph.push_leaves(flat), values.shape)


def _graph(graph: Graph | None) -> Graph:
    return current_graph() if graph is None else graph


def _probability(p, what: str) -> float:
    p = _number(p, what)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{what} must be in [0, 1), got {p}")
    return p


class Sequential(Module):
    """Modules applied in order: ``tm.Sequential(tm.Linear(2, 8), tm.Tanh(), tm.Linear(8, 1))``.

    ``seq[i]``, ``len(seq)``, iteration; state_dict keys ``"<i>.weight"``.
    """

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], (list, tuple)):
            modules = tuple(modules[0])
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential takes Modules; argument {i} is {type(m).__name__}")
            setattr(self, str(i), m)

    def _list(self) -> list[Module]:
        return [m for _, m in self.named_children()]

    def __len__(self) -> int:
        return len(self._list())

    def __iter__(self):
        return iter(self._list())

    def __getitem__(self, i):
        items = self._list()
        if isinstance(i, slice):
            return Sequential(*items[i])
        return items[i]

    @classmethod
    def load(cls, path, *, graph: Graph | None = None) -> Module:
        """A stack of built-in layers rebuilt from a file written by ``save`` (weights, buffers)."""
        from . import io

        return io.load_sequential(path, graph=graph)

    def append(self, module: Module) -> Sequential:
        if not isinstance(module, Module):
            raise TypeError(f"Sequential.append takes a Module, got {type(module).__name__}")
        setattr(self, str(len(self)), module)
        return self

    def forward(self, x):
        for m in self._list():
            x = m(x)
        return x


class Linear(Module):
    """``y = x @ weight.T + bias`` on x of shape (N, *, in_features), as ``torch.nn.Linear``.

    weight (out_features, in_features) and bias (out_features,) are drawn uniformly
    in +-1/sqrt(in_features) (PyTorch's kaiming-uniform with a = sqrt(5));
    ``seed`` (int, Generator or None) makes that reproducible.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        seed: int | np.random.Generator | None = None,
        graph: Graph | None = None,
    ) -> None:
        super().__init__()
        self.in_features = _positive_int(in_features, "Linear: in_features")
        self.out_features = _positive_int(out_features, "Linear: out_features")
        if not isinstance(bias, bool):
            raise TypeError(f"Linear: bias must be a bool, got {type(bias).__name__}")
        rng = _rng(seed)
        bound = 1.0 / math.sqrt(self.in_features)
        g = _graph(graph)
        self.weight = _param_tensor(rng.uniform(-bound, bound, (self.out_features, self.in_features)), g)
        self.bias = _param_tensor(rng.uniform(-bound, bound, (self.out_features,)), g) if bias else None

    def _config(self) -> dict:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias is not None,
        }

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self._config().items())

    def forward(self, x) -> Tensor:
        g = self.weight.graph
        x = as_tensor(x, g, f"Linear({self.in_features}, {self.out_features})")
        n = self.in_features
        if x.shape[-1] != n:
            raise ValueError(
                f"Linear({self.in_features}, {self.out_features}): expected an input of shape "
                f"(N, *, {n}), got {x.shape} (last dimension {x.shape[-1]})"
            )
        samples = x.size // n
        k = self.out_features
        g.reserve(samples * k + 1, samples * k * (2 * n + 1))
        w = self.weight._rows_array().reshape(k, n)
        b = self.bias._rows_array() if self.bias is not None else np.full(k, g.push_leaf(0.0))
        xs = x._rows_array().reshape(samples, n)
        parents = np.empty((samples, k, 2 * n + 1), np.int64)
        parents[:, :, 0] = b[None, :]
        parents[:, :, 1 : n + 1] = w[None, :, :]
        parents[:, :, n + 1 :] = xs[:, None, :]
        rows = g.push_many(Op.NEURON, parents.reshape(samples * k, 2 * n + 1), 0.0)
        return Tensor._wrap_rows(g, rows, (*x.shape[:-1], k))


# ---------------------------------------------------------------------------
# Activations, as modules
# ---------------------------------------------------------------------------
class _Elementwise(Module):
    def _config(self) -> dict:
        return {}

    def forward(self, x) -> Tensor:
        if not isinstance(x, Tensor):
            x = as_tensor(x, current_graph(), type(self).__name__)
        return self._apply(x)


class ReLU(_Elementwise):
    def _apply(self, x: Tensor) -> Tensor:
        return x.relu()


class Tanh(_Elementwise):
    def _apply(self, x: Tensor) -> Tensor:
        return x.tanh()


class Sigmoid(_Elementwise):
    def _apply(self, x: Tensor) -> Tensor:
        return x.sigmoid()


class GELU(_Elementwise):
    """``approximate="none"``: x * Phi(x) (erf); ``"tanh"``: the tanh approximation."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def _config(self) -> dict:
        return {"approximate": self.approximate}

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"

    def _apply(self, x: Tensor) -> Tensor:
        return x.gelu(self.approximate)


class SiLU(_Elementwise):
    def _apply(self, x: Tensor) -> Tensor:
        return x.silu()


class LeakyReLU(_Elementwise):
    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = _number(negative_slope, "LeakyReLU: negative_slope")

    def _config(self) -> dict:
        return {"negative_slope": self.negative_slope}

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"

    def _apply(self, x: Tensor) -> Tensor:
        return x.leaky_relu(self.negative_slope)


class Softplus(_Elementwise):
    """``log(1 + exp(x))``, computed stably (PyTorch's beta=1; above its threshold 20
    the two agree to 1e-9 relative)."""

    def _apply(self, x: Tensor) -> Tensor:
        return x.softplus()


class Identity(Module):
    def _config(self) -> dict:
        return {}

    def forward(self, x):
        return x


class Flatten(Module):
    """Every dimension from ``start_dim`` (1: all but the batch) to ``end_dim`` merged into one."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def _config(self) -> dict:
        return {"start_dim": self.start_dim, "end_dim": self.end_dim}

    def forward(self, x) -> Tensor:
        if not isinstance(x, Tensor):
            x = as_tensor(x, current_graph(), "Flatten")
        nd = x.ndim
        s, e = self.start_dim % nd, self.end_dim % nd
        if s > e:
            raise ValueError(
                f"Flatten: start_dim {self.start_dim} is after end_dim {self.end_dim} for {x.shape}"
            )
        return x.reshape(*x.shape[:s], int(np.prod(x.shape[s : e + 1])), *x.shape[e + 1 :])


class Dropout(Module):
    """In training mode each entry is zeroed with probability ``p`` and the rest scaled
    by 1/(1-p) (inverted dropout); in eval mode it is the identity. Eager masks are
    drawn from ``seed``'s generator; in ``fit`` they are fresh per sample and step
    (reproducible with ``fit(seed=...)``)."""

    def __init__(self, p: float = 0.5, *, seed: int | np.random.Generator | None = None) -> None:
        super().__init__()
        self.p = _probability(p, "Dropout: p")
        self._rng = _rng(seed)

    def _config(self) -> dict:
        return {"p": self.p}

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        if not isinstance(x, Tensor):
            x = as_tensor(x, current_graph(), "Dropout")
        g = x.graph
        m = x.size
        g.reserve(2 * m, 2 * m)
        if tracing.noise is not None:  # compiled: draws refilled per sample and step
            noise = [wrap(g, r) for r in g.push_leaves(np.zeros(m))]
            tracing.noise.extend(noise)
        else:
            noise = [wrap(g, r) for r in g.push_leaves(self._rng.random(m))]
        u = np.fromiter((v._row for v in noise), np.int64, m)
        parents = np.stack([x._rows_array(), u], axis=1)
        return Tensor._wrap_rows(g, g.push_many(Op.DROPOUT, parents, self.p), x.shape)


# ---------------------------------------------------------------------------
# Convolution and pooling: NEURON rows with weights shared across positions,
# MAX rows, SUM rows; inputs (N, C, H, W) or unbatched (C, H, W)
# ---------------------------------------------------------------------------
def _pair(v, what: str, minimum: int) -> tuple[int, int]:
    items = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    if len(items) != 2:
        raise ValueError(f"{what} must be an int or a pair of ints, got {v!r}")
    for k in items:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"{what} must be an int or a pair of ints, got {v!r}")
        if k < minimum:
            raise ValueError(f"{what} must be at least {minimum}, got {v!r}")
    return int(items[0]), int(items[1])


def _images(x, graph: Graph, who: str, channels: int | None) -> tuple[Tensor, bool]:
    """``x`` as an (N, C, H, W) Tensor (and whether it was unbatched (C, H, W))."""
    x = as_tensor(x, graph, who)
    if x.ndim == 3:
        x, unbatched = x.reshape(1, *x.shape), True
    elif x.ndim == 4:
        unbatched = False
    else:
        raise ValueError(f"{who}: expected an input of shape (N, C, H, W) or (C, H, W), got {x.shape}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{who}: expected {channels} input channels, got an input of shape {x.shape}")
    return x, unbatched


def _windows(rows: np.ndarray, kernel, stride, padding, who: str, shape) -> np.ndarray:
    """For (N, C, H, W) tape rows, the rows under each window: (N, Ho, Wo, C, kh, kw),
    -1 where the window covers padding."""
    n, c, h, w = rows.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    if kh > h + 2 * ph or kw > w + 2 * pw:
        raise ValueError(
            f"{who}: kernel size ({kh}, {kw}) is larger than the padded input "
            f"({h + 2 * ph}, {w + 2 * pw}) of an input of shape {shape}"
        )
    padded = np.full((n, c, h + 2 * ph, w + 2 * pw), -1, np.int64)
    padded[:, :, ph : ph + h, pw : pw + w] = rows
    ho = (h + 2 * ph - kh) // sh + 1
    wo = (w + 2 * pw - kw) // sw + 1
    hi = (np.arange(ho) * sh)[:, None] + np.arange(kh)[None, :]  # (ho, kh)
    wi = (np.arange(wo) * sw)[:, None] + np.arange(kw)[None, :]  # (wo, kw)
    win = padded[:, :, hi[:, None, :, None], wi[None, :, None, :]]  # (N, C, ho, wo, kh, kw)
    return win.transpose(0, 2, 3, 1, 4, 5)


class Conv2d(Module):
    """A 2-D convolution (cross-correlation, as ``torch.nn.Conv2d``) over (N, C, H, W).

    Each output is one NEURON row ``b + sum w * x`` over its window, the weight
    parents shared by every position; zero padding is simply left out of the
    sum. weight (out_channels, in_channels, kh, kw) and bias (out_channels,) are
    uniform in +-1/sqrt(in_channels * kh * kw), PyTorch's default.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        bias: bool = True,
        *,
        seed: int | np.random.Generator | None = None,
        graph: Graph | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = _positive_int(in_channels, "Conv2d: in_channels")
        self.out_channels = _positive_int(out_channels, "Conv2d: out_channels")
        self.kernel_size = _pair(kernel_size, "Conv2d: kernel_size", 1)
        self.stride = _pair(stride, "Conv2d: stride", 1)
        self.padding = _pair(padding, "Conv2d: padding", 0)
        if not isinstance(bias, bool):
            raise TypeError(f"Conv2d: bias must be a bool, got {type(bias).__name__}")
        rng = _rng(seed)
        kh, kw = self.kernel_size
        bound = 1.0 / math.sqrt(self.in_channels * kh * kw)
        g = _graph(graph)
        shape = (self.out_channels, self.in_channels, kh, kw)
        self.weight = _param_tensor(rng.uniform(-bound, bound, shape), g)
        self.bias = _param_tensor(rng.uniform(-bound, bound, (self.out_channels,)), g) if bias else None

    def _config(self) -> dict:
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": list(self.padding),
            "bias": self.bias is not None,
        }

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}"
        )

    def forward(self, x) -> Tensor:
        g = self.weight.graph
        who = f"Conv2d({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size})"
        x, unbatched = _images(x, g, who, self.in_channels)
        n = x.shape[0]
        co = self.out_channels
        k = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        win = _windows(
            x._rows_array().reshape(x.shape), self.kernel_size, self.stride, self.padding, who, x.shape
        )
        ho, wo = win.shape[1], win.shape[2]
        m = n * co * ho * wo
        g.reserve(m + 1, m * (2 * k + 1))
        # row numbers again after the reserve (it may compact and renumber)
        win = _windows(
            x._rows_array().reshape(x.shape), self.kernel_size, self.stride, self.padding, who, x.shape
        )
        xs = np.broadcast_to(win.reshape(n, 1, ho * wo, k), (n, co, ho * wo, k)).reshape(m, k)
        w = np.broadcast_to(self.weight._rows_array().reshape(1, co, 1, k), (n, co, ho * wo, k)).reshape(m, k)
        b_rows = self.bias._rows_array() if self.bias is not None else np.full(co, g.push_leaf(0.0))
        b = np.broadcast_to(b_rows.reshape(1, co, 1), (n, co, ho * wo)).reshape(m, 1)
        out = np.empty(m, np.int64)
        valid = xs >= 0
        counts = valid.sum(axis=1)
        for c in np.unique(counts):  # one bulk append per number of taps inside the input
            sel = np.nonzero(counts == c)[0]
            keep = valid[sel]
            taps = (w[sel][keep].reshape(len(sel), c), xs[sel][keep].reshape(len(sel), c))
            parents = np.concatenate([b[sel], *taps], axis=1)  # only the bias where all is padding
            out[sel] = np.asarray(g.push_many(Op.NEURON, parents, 0.0))
        y = Tensor._wrap_rows(g, out.tolist(), (n, co, ho, wo))
        return y.reshape(co, ho, wo) if unbatched else y


class _Pool2d(Module):
    def __init__(self, kernel_size, stride=None) -> None:
        super().__init__()
        self.kernel_size = _pair(kernel_size, f"{type(self).__name__}: kernel_size", 1)
        self.stride = (
            self.kernel_size if stride is None else _pair(stride, f"{type(self).__name__}: stride", 1)
        )

    def _config(self) -> dict:
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride)}

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"

    def forward(self, x) -> Tensor:
        who = f"{type(self).__name__}(kernel_size={self.kernel_size})"
        graph = x.graph if isinstance(x, Tensor) else current_graph()
        x, unbatched = _images(x, graph, who, None)
        n, c = x.shape[:2]
        kh, kw = self.kernel_size
        win = _windows(x._rows_array().reshape(x.shape), self.kernel_size, self.stride, (0, 0), who, x.shape)
        ho, wo = win.shape[1], win.shape[2]
        m = n * c * ho * wo
        x.graph.reserve(2 * m, m * (kh * kw + 1))
        win = _windows(x._rows_array().reshape(x.shape), self.kernel_size, self.stride, (0, 0), who, x.shape)
        parents = win.reshape(n, ho, wo, c, kh * kw).transpose(0, 3, 1, 2, 4).reshape(m, kh * kw)
        y = Tensor._wrap_rows(x.graph, self._rows(x.graph, parents), (n, c, ho, wo))
        return y.reshape(c, ho, wo) if unbatched else y


class MaxPool2d(_Pool2d):
    """The largest input of each window (one MAX row; the gradient goes to the first
    largest input of the window, as PyTorch's). ``stride`` defaults to ``kernel_size``."""

    def _rows(self, g: Graph, parents: np.ndarray):
        return g.push_many(Op.MAX, parents)


class AvgPool2d(_Pool2d):
    """The mean of each window (a SUM row, then a division by the window's size)."""

    def _rows(self, g: Graph, parents: np.ndarray):
        sums = np.asarray(g.push_many(Op.SUM, parents)).reshape(-1, 1)
        return g.push_many(Op.DIV_C, sums, float(parents.shape[1]))


# ---------------------------------------------------------------------------
# Batch normalisation
# ---------------------------------------------------------------------------
class _BatchNorm(Module):
    """``(x - mean) / sqrt(var + eps) * weight + bias`` per channel (dimension 1).

    Training mode: mean and (biased) variance of the batch, and the running
    statistics move towards them by ``momentum`` (the variance unbiased, as
    PyTorch), once per call, or once per optimisation step in ``fit``, where
    the samples of a batch are lanes and the statistics are LANE_SUM rows.
    Eval mode: the running statistics. weight starts at 1, bias at 0.
    """

    ranks: tuple[int, ...] = ()
    layout = ""

    def __init__(
        self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, *, graph: Graph | None = None
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.num_features = _positive_int(num_features, f"{name}: num_features")
        self.eps = _number(eps, f"{name}: eps")
        if momentum is None:
            raise ValueError(f"{name}: momentum=None (a cumulative average) is not supported; give a number")
        self.momentum = _number(momentum, f"{name}: momentum")
        g = _graph(graph)
        self.weight = _param_tensor(np.ones(self.num_features), g)
        self.bias = _param_tensor(np.zeros(self.num_features), g)
        self.register_buffer("running_mean", np.zeros(self.num_features))
        self.register_buffer("running_var", np.ones(self.num_features))

    def _config(self) -> dict:
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum}

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"

    def forward(self, x) -> Tensor:
        g = self.weight.graph
        name = f"{type(self).__name__}({self.num_features})"
        x = as_tensor(x, g, name)
        if x.ndim not in self.ranks:
            raise ValueError(f"{name}: expected an input of shape {self.layout}, got {x.shape}")
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"{name}: expected {self.num_features} channels (dimension 1), got shape {x.shape}"
            )
        c = self.num_features
        bshape = (1, c) + (1,) * (x.ndim - 2)  # broadcasts over the batch and positions
        gamma = self.weight.reshape(*bshape)
        beta = self.bias.reshape(*bshape)
        if not self.training:
            rm = self._buffers["running_mean"].reshape(bshape)
            inv = 1.0 / np.sqrt(self._buffers["running_var"].reshape(bshape) + self.eps)
            return (x - rm) * inv * gamma + beta
        axes = (0, *range(2, x.ndim))
        if tracing.stats is not None:
            return self._lane_forward(x, axes, gamma, beta)
        else:
            count = x.size // c
            if count < 2:
                raise ValueError(
                    f"{name}: expected more than 1 value per channel when training, got shape {x.shape}"
                )
            mean = x.mean(axis=axes, keepdims=True)
            d = x - mean
            var = (d * d).mean(axis=axes, keepdims=True)
            self._update(mean.numpy().reshape(c), var.numpy().reshape(c) * count / (count - 1))
            return d * (var + self.eps) ** -0.5 * gamma + beta

    def _update(self, mean: np.ndarray, unbiased_var: np.ndarray) -> None:
        m = self.momentum
        b = self._buffers
        b["running_mean"][...] = (1.0 - m) * b["running_mean"] + m * mean
        b["running_var"][...] = (1.0 - m) * b["running_var"] + m * unbiased_var
        BufferVersion.bump()

    def _lane_forward(self, x: Tensor, axes, gamma: Tensor, beta: Tensor) -> Tensor:
        """Batch norm of a traced sample with the statistics of its batch, over the lanes.

        Per channel: the sample's own sum (a SUM row, none for a single position)
        becomes the batch's mean with one LANE_SUM row weighted by ``mask / n``
        (1/n in the lanes that hold samples, 0 in unused ones; n = samples *
        positions, counted from the mask the same way). The squared deviations are
        SQDIFF rows, their batch mean the variance; each output is one
        activation-free NEURON row ``beta + a * (x - mean)`` with ``a = gamma /
        sqrt(var + eps)``, so ``fit`` can fold a following ReLU into it. Two
        RUNNING_STAT rows per channel keep the running mean and the unbiased
        running variance, collected for ``fit`` to read back. The mean and
        variance rows are also recorded with their running statistic
        (``tracing.stats["eval"]``): fit's validation pass (eval mode) makes each
        read the running one, so the same program evaluates with running statistics.
        """
        g = x.graph
        state = tracing.stats
        if state["mask"] is None:  # one lane mask per traced step, and the number of samples
            g.reserve(2, 2)
            mask = wrap(g, g.push_leaf(1.0))
            state["mask"] = mask
            state["lanes"] = wrap(g, g.push(Op.LANE_SUM, (mask._row, mask._row)))
        mask, lanes = state["mask"], state["lanes"]
        c = self.num_features
        positions = x.size // (x.shape[0] * c)
        n = lanes * float(positions)
        weight = mask / n  # LANE_SUM with these weights is a batch mean: 1/n in the sample lanes, 0 after
        shape = (1, c) + (1,) * (x.ndim - 2)

        def batch_mean(t: Tensor) -> Tensor:  # per-sample terms -> the batch's mean per channel
            local = t.reshape(*shape) if positions == 1 else t.sum(axis=axes, keepdims=True)
            g.reserve(c, 2 * c)
            rows = np.stack([local._rows_array(), np.full(c, weight._row)], axis=1)
            return Tensor._wrap_rows(g, g.push_many(Op.LANE_SUM, rows), shape)

        mean = batch_mean(x)
        var = batch_mean(x._pairwise(Op.SQDIFF, x, mean))
        unbiased = var * (n / (n - 1.0))
        a = (var + self.eps) ** -0.5 * gamma
        d = x - mean
        m = x.size
        g.reserve(m + 2 * c, 3 * m + 2 * c)
        parents = np.stack(
            [np.broadcast_to(t._rows_array().reshape(t.shape), x.shape).reshape(-1) for t in (beta, a, d)],
            axis=1,
        )
        # activation-free NEURON rows (AFFINE's layout): fit folds a following ReLU into them
        y = Tensor._wrap_rows(g, g.push_many(Op.NEURON, parents, 0.0), x.shape)
        for what, t, used in (("running_mean", mean, mean), ("running_var", unbiased, var)):
            rows = g.push_many(Op.RUNNING_STAT, t._rows_array().reshape(-1, 1), self.momentum)
            for ch, (r, u) in enumerate(zip(rows, used._rows_array().reshape(-1).tolist())):
                stat = wrap(g, r)
                state["rows"].append((stat, self, what, ch))
                # eval mode (fit's validation pass): this channel's mean / variance row reads
                # the running statistic instead of the batch's
                state["eval"].append((wrap(g, u), stat))
        return y


class BatchNorm1d(_BatchNorm):
    ranks = (2, 3)
    layout = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    ranks = (4,)
    layout = "(N, C, H, W)"
