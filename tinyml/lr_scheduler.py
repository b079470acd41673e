"""Learning-rate schedules with PyTorch's formulas: ``StepLR``, ``ExponentialLR``, ``CosineAnnealingLR``.

Use them as in PyTorch, ``scheduler.step()`` once per epoch, or hand one to
``fit(scheduler=...)``, which steps it once per epoch itself. Each schedule is
a closed form of the epoch count (PyTorch's ``_get_closed_form_lr``), so
``fit`` computes a chunk of epochs' learning rates as one array that the
compiled training loop reads: no Python runs per epoch. The recursive forms
PyTorch's ``step()`` uses give the same numbers up to rounding (they differ
only if something else changes the optimiser's ``lr`` between steps, which
these schedules then overwrite).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .optim import Optimizer


def _positive_int(x: object, name: str) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(x).__name__}")
    if x < 1:
        raise ValueError(f"{name} must be at least 1, got {x}")
    return int(x)


def _nonneg(x: object, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
    v = float(x)
    if not (math.isfinite(v) and v >= 0.0):
        raise ValueError(f"{name} must be a finite number >= 0, got {x}")
    return v


class LRScheduler:
    """Base class: sets the optimiser's learning rate from ``last_epoch``.

    ``base_lrs`` is the optimiser's learning rate when the schedule was made;
    ``last_epoch`` counts the ``step()`` calls. Subclasses define ``_closed_form``.
    """

    def __init__(self, optimizer: Optimizer) -> None:
        if isinstance(optimizer, type):
            raise TypeError(
                f"{type(self).__name__} takes an optimiser object, got the class {optimizer.__name__}; "
                f"e.g. {type(self).__name__}(tm.optim.{optimizer.__name__}(model.parameters()), ...)"
            )
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"{type(self).__name__} takes an optimiser from tm.optim, got {type(optimizer).__name__}"
            )
        self.optimizer = optimizer
        self.base_lrs = [optimizer.lr]
        self.last_epoch = 0
        self._set(0)

    def _closed_form(self, epochs: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _set(self, epoch: int) -> None:
        lr = float(self._closed_form(np.array([epoch], np.int64))[0])
        self.optimizer.lr = lr
        self._last_lr = [lr]

    def step(self) -> None:
        """Advance one epoch and set the optimiser's learning rate for the next."""
        self.last_epoch += 1
        self._set(self.last_epoch)

    def get_last_lr(self) -> list[float]:
        """The learning rate set by the last step, one per parameter group (tinyml has one)."""
        return list(self._last_lr)

    # -- for fit: a chunk of epochs at a time ----------------------------------
    def schedule(self, count: int) -> np.ndarray:
        """The learning rates of the next ``count`` epochs (the current one first), float64[count]."""
        return self._closed_form(np.arange(self.last_epoch, self.last_epoch + count, dtype=np.int64))

    def advance(self, count: int) -> None:
        """``count`` calls of ``step()`` at once."""
        if count:
            self.last_epoch += int(count)
            self._set(self.last_epoch)

    def state_dict(self) -> dict:
        return {"base_lrs": list(self.base_lrs), "last_epoch": self.last_epoch}

    def load_state_dict(self, state_dict: dict) -> None:
        self.base_lrs = [float(v) for v in state_dict["base_lrs"]]
        self.last_epoch = int(state_dict["last_epoch"])
        self._set(self.last_epoch)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(last_epoch={self.last_epoch}, lr={self._last_lr[0]:.6g})"


class StepLR(LRScheduler):
    """``lr = base_lr * gamma ** (epoch // step_size)``, as ``torch.optim.lr_scheduler.StepLR``."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        self.step_size = _positive_int(step_size, "step_size")
        self.gamma = _nonneg(gamma, "gamma")
        super().__init__(optimizer)

    def _closed_form(self, epochs: np.ndarray) -> np.ndarray:
        return self.base_lrs[0] * self.gamma ** (epochs // self.step_size).astype(np.float64)


class ExponentialLR(LRScheduler):
    """``lr = base_lr * gamma ** epoch``, as ``torch.optim.lr_scheduler.ExponentialLR``."""

    def __init__(self, optimizer: Optimizer, gamma: float) -> None:
        self.gamma = _nonneg(gamma, "gamma")
        super().__init__(optimizer)

    def _closed_form(self, epochs: np.ndarray) -> np.ndarray:
        return self.base_lrs[0] * self.gamma ** epochs.astype(np.float64)


class CosineAnnealingLR(LRScheduler):
    """``lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2``, as
    ``torch.optim.lr_scheduler.CosineAnnealingLR`` (past ``T_max`` it rises again, as there)."""

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0) -> None:  # noqa: N803
        self.T_max = _positive_int(T_max, "T_max")
        self.eta_min = _nonneg(eta_min, "eta_min")
        super().__init__(optimizer)

    def _closed_form(self, epochs: np.ndarray) -> np.ndarray:
        base = self.base_lrs[0]
        lr = self.eta_min + (base - self.eta_min) * (1.0 + np.cos(np.pi * epochs / self.T_max)) / 2.0
        return np.maximum(lr, 0.0)  # rounding must not make a learning rate of 0 negative


__all__ = ["CosineAnnealingLR", "ExponentialLR", "LRScheduler", "StepLR"]
