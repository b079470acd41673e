"""Optimisers with PyTorch's semantics: ``SGD``, ``Adam``, ``AdamW``, ``RMSprop``.

Each optimiser is three plain arrays and a step counter, so the same update
runs in eager mode (``opt.step()``) and inside a compiled training loop, which
calls the one Numba kernel :func:`optimizer_update` directly:

- ``kind``   int, which algorithm (``SGD`` 0, ``ADAM`` 1, ``ADAMW`` 2, ``RMSPROP`` 3)
- ``hyper``  float64[HYPER_SIZE], the hyperparameters; the layout is the same
  length for every kind, ``hyper[0]`` is always the learning rate and
  ``hyper[1]`` the weight decay:

  ========  ====  ============  =========  =====  ========  ========
  kind      0     1             2          3      4         5
  ========  ====  ============  =========  =====  ========  ========
  SGD       lr    weight_decay  momentum   damp.  nesterov  (unused)
  Adam      lr    weight_decay  beta1      beta2  eps       amsgrad
  AdamW     lr    weight_decay  beta1      beta2  eps       amsgrad
  RMSprop   lr    weight_decay  alpha      eps    momentum  centered
  ========  ====  ============  =========  =====  ========  ========

  flags (nesterov, amsgrad, centered) are 0.0 or 1.0.
- ``state``  float64[n_params, k], zeros before the first step; one row per
  parameter in ``params`` order. ``k`` is ``STATE_COLUMNS[kind]``:
  SGD 1 (momentum buffer); Adam/AdamW 3 (first moment, second moment, max of
  the second moment for amsgrad); RMSprop 3 (square average, gradient average
  when centered, momentum buffer).
- ``t``      int, the number of steps taken so far. The kernel is given the
  1-based number of the step it performs, i.e. ``opt.t + 1``; whoever calls the
  kernel directly must then add the steps it took to ``opt.t``.

The formulas are the algorithm boxes of PyTorch's documentation for the
optimisers of the same names (float64, ``maximize=False``), so a model trained
here follows the same trajectory as the same model under ``torch.optim``.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Iterable, Mapping

import numpy as np

from . import kernels
from .graph import cached_rows, hold_interrupts, row_of
from .ops import Op
from .value import Value

# Kinds: defined with the kernel that is compiled with them
SGD_KIND = kernels.SGD_KIND
ADAM_KIND = kernels.ADAM_KIND
ADAMW_KIND = kernels.ADAMW_KIND
RMSPROP_KIND = kernels.RMSPROP_KIND

HYPER_SIZE = 6
HYPER_LR = 0
HYPER_WEIGHT_DECAY = 1
STATE_COLUMNS = {SGD_KIND: 1, ADAM_KIND: 3, ADAMW_KIND: 3, RMSPROP_KIND: 3}


# The update kernel lives in kernels.py, next to the training loop that calls it:
# Numba's disk cache keys a kernel on its own file only, so a kernel must never
# call a jitted function from another file (an edit there would go unseen).
optimizer_update = kernels.optimizer_update


def _real(x: object, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__} {x!r:.40}")
    v = float(x)
    if math.isnan(v):
        raise ValueError(f"{name} must not be NaN")
    return v


def _at_least(x: float, lo: float, name: str) -> None:
    if not x >= lo:
        raise ValueError(f"invalid {name}: {x} (must be >= {lo})")


def _fraction(x: float, name: str) -> None:
    if not 0.0 <= x < 1.0:
        raise ValueError(f"invalid {name}: {x} (must be in [0, 1))")


def _flag(x: object, name: str) -> float:
    if not isinstance(x, (bool, np.bool_, int, np.integer)) or x not in (0, 1):
        raise TypeError(f"{name} must be True or False, got {x!r:.40}")
    return 1.0 if x else 0.0


_GRAPH = operator.attrgetter("_graph")


def _check_params(params: object) -> list[Value]:
    """``params`` as a list of distinct leaf Values of one graph, or a clear error."""
    if hasattr(params, "parameters") and callable(params.parameters):
        params = params.parameters()  # a Module: optimise all its parameters
    if isinstance(params, Value) or not isinstance(params, Iterable):
        raise TypeError(
            f"params must be an iterable of Values, such as model.parameters(), got {type(params).__name__}"
        )
    params = list(params)
    if not params:
        raise ValueError("optimizer got an empty parameter list")
    # Every check in one pass each (NumPy where it can be: a fit builds an optimiser
    # over thousands of parameters); the error raised is the earliest parameter's.
    all_values = set(map(type, params)) == {Value}  # (map and set run in C: fast for 100k)
    k = len(params) if all_values else next(i for i, p in enumerate(params) if type(p) is not Value)
    problems: list[tuple[int, Exception]] = []
    if k < len(params):
        problems.append((k, TypeError(f"params[{k}] is {type(params[k]).__name__}, expected a Value")))
    values = params[:k]
    if values:
        graph = values[0]._graph
        rows = np.fromiter(map(row_of, values), np.int64, len(values))
        freed = rows < 0
        if set(map(_GRAPH, values)) == {graph}:
            other = np.zeros(len(values), np.bool_)
        else:
            other = np.array([v._graph is not graph for v in values]) & ~freed
        ok = ~freed & ~other
        computed = np.zeros(len(values), np.bool_)
        computed[ok] = graph.op[rows[ok]] != Op.LEAF
        leaf = np.flatnonzero(ok & ~computed)
        order = leaf[np.argsort(rows[leaf], kind="stable")]
        repeated = np.zeros(len(values), np.bool_)  # the later occurrences of a row
        repeated[order[1:][rows[order][1:] == rows[order][:-1]]] = True
        checks = (
            (freed, RuntimeError, "refers to a freed row (its graph was cleared)"),
            (other, ValueError, "belongs to another graph than params[0]; all must share one"),
            (
                computed,
                ValueError,
                "is not a leaf Value (it is computed from others); "
                "only leaves such as model.parameters() can be optimised",
            ),
            (repeated, ValueError, "appears more than once in the parameter list"),
        )
        for mask, error, what in checks:
            if mask.any():
                i = int(np.argmax(mask))
                problems.append((i, error(f"params[{i}] {what}")))
    if problems:
        raise min(problems, key=lambda t: t[0])[1]
    return params


class Optimizer:
    """Base class: holds ``params``, ``hyper``, ``state``, ``t`` and does the eager step.

    Subclasses set ``kind`` and define ``_check_hyper`` (validate a hyper array).
    """

    kind: int = -1

    def __init__(self, params: Iterable[Value], hyper: np.ndarray) -> None:
        self.params: list[Value] = _check_params(params)
        hyper = np.asarray(hyper, np.float64)
        self._check_hyper(hyper)
        self.hyper = hyper.copy()
        self.state = np.zeros((len(self.params), STATE_COLUMNS[self.kind]))
        self.t = 0
        self._rows_cache: tuple[int, np.ndarray] = (-1, np.zeros(0, np.int64))

    @classmethod
    def _check_hyper(cls, hyper: np.ndarray) -> None:
        raise NotImplementedError

    # -- hyperparameters shared by every kind --------------------------------
    @property
    def lr(self) -> float:
        """The learning rate, ``hyper[0]``; settable (e.g. by a schedule)."""
        return float(self.hyper[HYPER_LR])

    @lr.setter
    def lr(self, value: float) -> None:
        v = _real(value, "lr")
        _at_least(v, 0.0, "learning rate")
        self.hyper[HYPER_LR] = v

    @property
    def weight_decay(self) -> float:
        return float(self.hyper[HYPER_WEIGHT_DECAY])

    @property
    def graph(self):
        return self.params[0]._graph

    # -- the eager step ---------------------------------------------------------
    def rows(self) -> np.ndarray:
        """Tape rows of ``params``, in order (cached until the graph is compacted)."""
        freed = "a parameter of this optimizer was freed (its graph was cleared)"
        rows, self._rows_cache = cached_rows(self.params, self.graph, self._rows_cache, freed)
        return rows

    def step(self) -> None:
        """Update every parameter from its current gradient (one step)."""
        graph = self.graph
        graph.evaluate()  # rows already built keep the parameter values they were built with
        rows = self.rows()
        values = graph.data[rows, 0]
        grads = graph.grad[rows].sum(axis=1)
        with hold_interrupts():  # state, step count and parameters move together
            optimizer_update(self.kind, values, grads, self.state, self.hyper, self.t + 1)
            self.t += 1
            graph.data[rows, :] = values[:, None]

    def zero_grad(self) -> None:
        """Set the gradient of every parameter to 0."""
        self.graph.grad[self.rows()] = 0.0

    # -- saving and restoring ---------------------------------------------------
    def state_dict(self) -> dict:
        """A copy of everything a step depends on, as numbers and numpy arrays.

        ``{"kind": int, "hyper": float64[HYPER_SIZE], "state": float64[P, k], "t": int}``
        """
        return {"kind": int(self.kind), "hyper": self.hyper.copy(), "state": self.state.copy(), "t": self.t}

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Restore what :meth:`state_dict` returned (hyperparameters included, as PyTorch).

        Everything is checked before anything is changed: on error the
        optimiser is untouched.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
        missing = [k for k in ("kind", "hyper", "state", "t") if k not in state_dict]
        if missing:
            raise ValueError(f"state_dict lacks {', '.join(missing)}")
        kind = state_dict["kind"]
        if isinstance(kind, np.ndarray) and kind.ndim == 0:
            kind = kind.item()
        if isinstance(kind, bool) or not isinstance(kind, (int, np.integer)) or kind != self.kind:
            raise ValueError(
                f"state_dict is for optimizer kind {_kind_name(kind)}, this is {type(self).__name__}"
            )
        hyper = np.asarray(state_dict["hyper"])
        state = np.asarray(state_dict["state"])
        t = state_dict["t"]
        if isinstance(t, np.ndarray) and t.ndim == 0:
            t = t.item()
        if hyper.shape != (HYPER_SIZE,) or not np.issubdtype(hyper.dtype, np.floating):
            raise ValueError(f"hyper must be float[{HYPER_SIZE}], got {hyper.dtype}{list(hyper.shape)}")
        self._check_hyper(hyper.astype(np.float64))
        expected = self.state.shape
        if state.shape != expected or not np.issubdtype(state.dtype, np.floating):
            raise ValueError(
                f"state must be float{list(expected)} for {len(self.params)} parameters, "
                f"got {state.dtype}{list(state.shape)}"
            )
        if not np.all(np.isfinite(state)):
            raise ValueError("state holds non-finite numbers")
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 0:
            raise ValueError(f"t must be a non-negative int, got {t!r:.40}")
        self.hyper = hyper.astype(np.float64)
        self.state = state.astype(np.float64)
        self.t = int(t)

    @classmethod
    def from_state_dict(cls, params: Iterable[Value], state_dict: Mapping) -> Optimizer:
        """A new optimiser of the kind ``state_dict`` names, over ``params``, restored from it."""
        if not isinstance(state_dict, Mapping) or "kind" not in state_dict or "hyper" not in state_dict:
            raise ValueError("state_dict must be a mapping with 'kind', 'hyper', 'state' and 't'")
        kind = state_dict["kind"]
        kind = kind.item() if isinstance(kind, np.ndarray) and kind.ndim == 0 else kind
        sub = KINDS.get(kind) if isinstance(kind, (int, np.integer)) and not isinstance(kind, bool) else None
        if sub is None:
            raise ValueError(f"unknown optimizer kind {kind!r:.40}")
        hyper = np.asarray(state_dict["hyper"])
        if hyper.shape != (HYPER_SIZE,) or not np.issubdtype(hyper.dtype, np.floating):
            raise ValueError(f"hyper must be float[{HYPER_SIZE}], got {hyper.dtype}{list(hyper.shape)}")
        opt = sub.__new__(sub)
        Optimizer.__init__(opt, params, hyper)
        opt.load_state_dict(state_dict)
        return opt

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.params)} parameters, {self._describe()}, t={self.t})"

    def _describe(self) -> str:
        return f"lr={self.lr}"


def _kind_name(kind: object) -> str:
    sub = KINDS.get(kind) if isinstance(kind, (int, np.integer)) and not isinstance(kind, bool) else None
    return sub.__name__ if sub is not None else repr(kind)


def _check_common(hyper: np.ndarray) -> None:
    if hyper.shape != (HYPER_SIZE,):
        raise ValueError(f"hyper must have {HYPER_SIZE} entries, got shape {hyper.shape}")
    if not np.all(np.isfinite(hyper)):
        raise ValueError("hyperparameters must be finite numbers")
    _at_least(hyper[HYPER_LR], 0.0, "learning rate")
    _at_least(hyper[HYPER_WEIGHT_DECAY], 0.0, "weight_decay")


def _check_flag_value(x: float, name: str) -> None:
    if x not in (0.0, 1.0):
        raise ValueError(f"{name} flag must be 0 or 1, got {x}")


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, as ``torch.optim.SGD``.

    ``g = grad + weight_decay * p``; with momentum ``b = momentum * b + (1 - dampening) * g``
    (``b = g`` on the first step), then ``g = g + momentum * b`` (nesterov) or ``g = b``;
    ``p -= lr * g``.
    """

    kind = SGD_KIND

    def __init__(
        self,
        params: Iterable[Value],
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        hyper = [
            _real(lr, "lr"),
            _real(weight_decay, "weight_decay"),
            _real(momentum, "momentum"),
            _real(dampening, "dampening"),
            _flag(nesterov, "nesterov"),
            0.0,
        ]
        super().__init__(params, np.array(hyper))

    @classmethod
    def _check_hyper(cls, hyper: np.ndarray) -> None:
        _check_common(hyper)
        _at_least(hyper[2], 0.0, "momentum")
        _check_flag_value(hyper[4], "nesterov")
        if hyper[4] and (hyper[2] <= 0.0 or hyper[3] != 0.0):
            raise ValueError("nesterov momentum requires momentum > 0 and dampening = 0")

    momentum = property(lambda self: float(self.hyper[2]))
    dampening = property(lambda self: float(self.hyper[3]))
    nesterov = property(lambda self: bool(self.hyper[4]))

    def _describe(self) -> str:
        return (
            f"lr={self.lr}, momentum={self.momentum}, dampening={self.dampening}, "
            f"nesterov={self.nesterov}, weight_decay={self.weight_decay}"
        )


class Adam(Optimizer):
    """Adam, as ``torch.optim.Adam``: weight decay is an L2 term added to the gradient.

    ``m = beta1 m + (1 - beta1) g``, ``v = beta2 v + (1 - beta2) g^2``,
    ``p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)``;
    ``amsgrad`` uses the running maximum of ``v`` instead of ``v``.
    """

    kind = ADAM_KIND

    def __init__(
        self,
        params: Iterable[Value],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r:.40}")
        hyper = [
            _real(lr, "lr"),
            _real(weight_decay, "weight_decay"),
            _real(betas[0], "beta1"),
            _real(betas[1], "beta2"),
            _real(eps, "eps"),
            _flag(amsgrad, "amsgrad"),
        ]
        super().__init__(params, np.array(hyper))

    @classmethod
    def _check_hyper(cls, hyper: np.ndarray) -> None:
        _check_common(hyper)
        _fraction(hyper[2], "beta1")
        _fraction(hyper[3], "beta2")
        _at_least(hyper[4], 0.0, "eps")
        _check_flag_value(hyper[5], "amsgrad")

    betas = property(lambda self: (float(self.hyper[2]), float(self.hyper[3])))
    eps = property(lambda self: float(self.hyper[4]))
    amsgrad = property(lambda self: bool(self.hyper[5]))

    def _describe(self) -> str:
        return (
            f"lr={self.lr}, betas={self.betas}, eps={self.eps}, "
            f"weight_decay={self.weight_decay}, amsgrad={self.amsgrad}"
        )


class AdamW(Adam):
    """AdamW, as ``torch.optim.AdamW``: Adam with decoupled weight decay.

    Each step first shrinks the weight, ``p *= 1 - lr * weight_decay``, then
    takes the Adam step on the plain gradient.
    """

    kind = ADAMW_KIND

    def __init__(
        self,
        params: Iterable[Value],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)


class RMSprop(Optimizer):
    """RMSprop, as ``torch.optim.RMSprop``.

    ``v = alpha v + (1 - alpha) g^2``; centered: ``a = alpha a + (1 - alpha) g`` and
    ``v - a^2`` replaces ``v`` below; ``d = sqrt(v) + eps``; with momentum
    ``b = momentum b + g / d`` and ``p -= lr b``, else ``p -= lr g / d``.
    """

    kind = RMSPROP_KIND

    def __init__(
        self,
        params: Iterable[Value],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
    ) -> None:
        hyper = [
            _real(lr, "lr"),
            _real(weight_decay, "weight_decay"),
            _real(alpha, "alpha"),
            _real(eps, "eps"),
            _real(momentum, "momentum"),
            _flag(centered, "centered"),
        ]
        super().__init__(params, np.array(hyper))

    @classmethod
    def _check_hyper(cls, hyper: np.ndarray) -> None:
        _check_common(hyper)
        _at_least(hyper[2], 0.0, "alpha")
        _at_least(hyper[3], 0.0, "eps")
        _at_least(hyper[4], 0.0, "momentum")
        _check_flag_value(hyper[5], "centered")

    alpha = property(lambda self: float(self.hyper[2]))
    eps = property(lambda self: float(self.hyper[3]))
    momentum = property(lambda self: float(self.hyper[4]))
    centered = property(lambda self: bool(self.hyper[5]))

    def _describe(self) -> str:
        return (
            f"lr={self.lr}, alpha={self.alpha}, eps={self.eps}, weight_decay={self.weight_decay}, "
            f"momentum={self.momentum}, centered={self.centered}"
        )


KINDS: dict[int, type[Optimizer]] = {SGD_KIND: SGD, ADAM_KIND: Adam, ADAMW_KIND: AdamW, RMSPROP_KIND: RMSprop}

__all__ = [
    "HYPER_SIZE",
    "KINDS",
    "STATE_COLUMNS",
    "SGD",
    "Adam",
    "AdamW",
    "Optimizer",
    "RMSprop",
    "lr_scheduler",
    "optimizer_update",
]

# tm.optim.lr_scheduler, as torch.optim.lr_scheduler; imported last: it builds on Optimizer above
from . import lr_scheduler  # noqa: E402, F401
