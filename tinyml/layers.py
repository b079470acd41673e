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
from .module import Module, as_tensor, tracing
from .nn import _positive_int, _rng
from .ops import Op
from .tensor import Tensor
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
