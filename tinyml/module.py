"""``Module``: the PyTorch-style base of every model, layer and activation.

A module's state is found from its attributes, in the order they were
assigned, as PyTorch users expect: a ``Value``, a ``Tensor`` of leaf Values or
a list of Values assigned to a public attribute is a parameter; a ``Module``
(or a list of them) is a sub-module; numbers registered with
:meth:`Module.register_buffer` (batch norm's running statistics) are buffers,
saved and loaded with the parameters but never trained. Attributes whose names
start with ``_`` are private (caches) and never part of the state.

``state_dict()`` names entries as PyTorch does (``"conv.weight"``,
``"0.bias"``, ``"bn.running_mean"``): a module's own parameters, then its
buffers, then each sub-module's entries under its attribute name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

import numpy as np

from . import train
from .graph import Graph, current_graph
from .tensor import Tensor
from .train import BufferVersion
from .value import Value, real_dtype


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict(..., strict=False)`` did not load (as PyTorch returns it)."""

    missing_keys: list[str]
    unexpected_keys: list[str]


class _Entry(NamedTuple):
    """One state_dict entry: a parameter (values in row-major order) or a buffer."""

    values: list[Value] | None  # parameters: the leaf Values of the entry
    shape: tuple[int, ...]
    owner: Module | None  # buffers: the module holding it
    buffer: str | None  # and its name


def _freed_parameters() -> RuntimeError:
    return RuntimeError("this model's parameters were freed (its graph was cleared); build a new model")


def _rows(values) -> np.ndarray:
    rows = np.fromiter((v._row for v in values), np.int64, len(values))
    if rows.size and rows.min() < 0:
        raise _freed_parameters()
    return rows


class Module:
    """Base of models and layers: ``parameters()``, ``state_dict()``, ``train()``/``eval()``,
    ``fit``/``predict``/``save``/``load_parameters``. Subclass it, assign layers and
    Values as attributes in ``__init__`` and write ``forward``."""

    training: bool = True  # modules start in training mode, as in PyTorch

    def __init__(self) -> None:
        object.__setattr__(self, "training", True)

    def __setattr__(self, name: str, value) -> None:
        if not name.startswith("_") and isinstance(value, (Module, Value, Tensor, list, tuple)):
            self.__dict__.pop("_programs", None)  # traced programs no longer describe the model
        object.__setattr__(self, name, value)

    def __getattr__(self, name: str):
        buffers = self.__dict__.get("_buffers")
        if buffers is not None and name in buffers:
            return buffers[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward(x)")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- the module tree -----------------------------------------------------------
    def named_children(self) -> Iterator[tuple[str, Module]]:
        """Direct sub-modules in attribute order; a list of modules counts item by item."""
        for name, v in vars(self).items():
            if name.startswith("_"):
                continue
            if isinstance(v, Module):
                yield name, v
            elif isinstance(v, (list, tuple)) and v and all(isinstance(m, Module) for m in v):
                for i, m in enumerate(v):
                    yield f"{name}.{i}", m

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module and every sub-module, depth first, with their dotted names."""
        yield prefix, self
        for name, m in self.named_children():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def _own_state(self) -> list[tuple[str, list[Value], tuple[int, ...]]]:
        """This module's own parameters as (name, leaf Values row-major, shape)."""
        out = []
        for name, v in vars(self).items():
            if name.startswith("_"):
                continue
            if type(v) is Value:
                out.append((name, [v], ()))
            elif isinstance(v, Tensor):
                out.append((name, v.flat_values(), v.shape))
            elif isinstance(v, (list, tuple)) and v and all(type(x) is Value for x in v):
                out.append((name, list(v), (len(v),)))
        return out

    def _entries(self, prefix: str = "") -> dict[str, _Entry]:
        out: dict[str, _Entry] = {}
        for name, values, shape in self._own_state():
            out[prefix + name] = _Entry(values, shape, None, None)
        for name, buf in self.__dict__.get("_buffers", {}).items():
            out[prefix + name] = _Entry(None, buf.shape, self, name)
        for name, m in self.named_children():
            out.update(m._entries(f"{prefix}{name}."))
        return out

    def parameters(self) -> list[Value]:
        """Every trainable Value: own parameters, then each sub-module's, in attribute order."""
        seen: set[int] = set()
        out = []
        for e in self._entries().values():
            for v in e.values or ():
                if id(v) not in seen:
                    seen.add(id(v))
                    out.append(v)
        return out

    def named_parameters(self) -> list[tuple[str, Tensor | Value]]:
        """(name, parameter) pairs as ``state_dict`` names them: Tensors, or Values for scalars."""
        out = []
        for key, e in self._entries().items():
            if e.values is not None:
                out.append(
                    (
                        key,
                        e.values[0] if e.shape == () else Tensor._make(e.values[0]._graph, e.values, e.shape),
                    )
                )
        return out

    def buffers(self) -> list[np.ndarray]:
        return [e.owner._buffers[e.buffer] for e in self._entries().values() if e.values is None]

    def register_buffer(self, name: str, array) -> None:
        """Keep ``array`` (numbers) as state that is saved and loaded but not trained."""
        if "_buffers" not in self.__dict__:
            object.__setattr__(self, "_buffers", {})
        self._buffers[name] = np.array(array)
        BufferVersion.bump()

    @property
    def graph(self) -> Graph:
        """The tape holding this module's parameters (the current graph if it has none)."""
        for e in self._entries().values():
            if e.values:
                return e.values[0]._graph
        return current_graph()

    # -- state_dict --------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Every parameter and buffer as a new float64 array, under PyTorch's names and shapes."""
        out = {}
        for key, e in self._entries().items():
            if e.values is None:
                out[key] = e.owner._buffers[e.buffer].copy()
            else:
                g = e.values[0]._graph
                out[key] = g.data[_rows(e.values), 0].reshape(e.shape)
        return out

    def load_state_dict(self, state_dict, strict: bool = True) -> IncompatibleKeys:
        """Copy ``state_dict`` (name -> array, e.g. a PyTorch module's ``state_dict()``) in.

        Strict (the default): a missing or unknown name raises ValueError listing them;
        a wrong shape always does; nothing is changed unless everything fits.
        ``num_batches_tracked`` entries may be present or absent.
        """
        if not hasattr(state_dict, "items"):
            raise TypeError(
                f"load_state_dict takes a mapping of names to arrays, got {type(state_dict).__name__}"
            )
        entries = self._entries()
        given = {str(k): v for k, v in state_dict.items()}
        optional = {k for k in entries if k.endswith("num_batches_tracked")}
        missing = [k for k in entries if k not in given and k not in optional]
        unexpected = [k for k in given if k not in entries and not k.endswith("num_batches_tracked")]
        name = type(self).__name__
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append("missing keys " + ", ".join(repr(k) for k in missing))
            if unexpected:
                parts.append("unexpected keys " + ", ".join(repr(k) for k in unexpected))
            raise ValueError(f"load_state_dict of {name}: " + "; ".join(parts) + "; nothing was loaded")
        checked = {}
        for key, v in given.items():
            if key not in entries:
                continue
            e = entries[key]
            try:
                arr = np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v)
            except Exception as exc:
                raise TypeError(f"load_state_dict of {name}: {key!r} is not an array ({exc})") from None
            if not real_dtype(arr.dtype):
                raise TypeError(
                    f"load_state_dict of {name}: {key!r} holds {arr.dtype}, expected real numbers"
                )
            if arr.shape != tuple(e.shape):
                raise ValueError(
                    f"load_state_dict of {name}: {key!r} has shape {arr.shape}, this module's has "
                    f"shape {tuple(e.shape)}; nothing was loaded"
                )
            checked[key] = arr
        # every check passed: write
        graphs = {id(e.values[0]._graph): e.values[0]._graph for e in entries.values() if e.values}
        for g in graphs.values():
            g.evaluate()  # rows built earlier keep the parameters they were built with
        for key, arr in checked.items():
            e = entries[key]
            if e.values is None:
                buf = e.owner._buffers[e.buffer]
                buf[...] = arr.astype(buf.dtype)
                BufferVersion.bump()
            else:
                g = e.values[0]._graph
                g.data[_rows(e.values), 0] = arr.astype(np.float64).reshape(-1)
        return IncompatibleKeys(missing, unexpected)

    # -- modes and gradients ---------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Training mode (dropout drops, batch norm uses batch statistics); returns self."""
        if not isinstance(mode, bool):
            raise TypeError(f"train(mode) takes a bool, got {type(mode).__name__}")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        """Evaluation mode (no dropout, running statistics); returns self."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Set the gradient of every parameter to 0."""
        params = self.parameters()
        if params:
            params[0]._graph.grad[_rows(params)] = 0.0

    zero_gradients = zero_grad  # the Rust original's name

    # -- compiled training, prediction, files ------------------------------------------------
    def fit(
        self,
        X,
        Y,
        epochs: int = 1000,
        loss: str | Callable = "mse",
        batch_size: int | None = None,
        report_every: int = 500,
        callback: Callable[[int, float], object] | None = None,
        shuffle: bool = True,
        seed: int | None = None,
        *,
        optimizer=None,
        lr: float = 0.01,
        l1: float = 0.0,
        l2: float = 0.0,
        progress: bool = True,
        validation_data=None,
        early_stopping=None,
        scheduler=None,
    ):
        """Train on ``X`` (n, ...) batch first, and ``Y``, as ``MLP.fit`` does; returns a History.

        One sample's step (the module in training mode and the loss) is traced once
        and run in compiled kernels for every epoch, a sample per lane. Plain SGD
        with ``lr`` unless an ``optimizer`` (or a ``scheduler`` over one) is given;
        ``seed`` also seeds dropout. The other options are ``MLP.fit``'s.
        """
        options = train.FitOptions(
            epochs=epochs,
            lr=None if optimizer is not None or scheduler is not None else lr,
            optimizer=optimizer,
            batch_size=batch_size,
            report_every=report_every,
            callback=callback,
            shuffle=shuffle,
            seed=seed,
            l1=l1,
            l2=l2,
            progress=progress,
            validation_data=validation_data,
            early_stopping=early_stopping,
            scheduler=scheduler,
        )
        return train.fit_module(self, X, Y, loss, options)

    def predict(self, X) -> np.ndarray:
        """The outputs for every sample of ``X`` (n, ...), in eval mode, as a float64 array."""
        return train.predict_module(self, X)

    def save(self, path) -> None:
        """Write the state_dict (and, for built-in stacks, the architecture) to ``path`` (.npz)."""
        from . import io

        io.save_module(self, path)

    def load_parameters(self, path) -> None:
        """Load a state saved by :meth:`save` into this module (same names and shapes)."""
        from . import io

        io.load_module_parameters(self, path)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        kids = list(self.named_children())
        if not kids:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"  ({n}): " + repr(m).replace("\n", "\n  ") for n, m in kids]
        return f"{type(self).__name__}(\n" + "\n".join(lines) + "\n)"


def as_tensor(x, graph: Graph, who: str) -> Tensor:
    """``x`` (a Tensor, or numbers) as a Tensor of ``graph``, or a clear error naming ``who``."""
    if isinstance(x, Tensor):
        if x.graph is not graph:
            raise ValueError(f"{who}: the input Tensor belongs to another graph than the layer's parameters")
        return x
    if isinstance(x, (Value, str, bytes)) or not isinstance(x, (list, tuple, np.ndarray)):
        raise TypeError(f"{who}: expected a Tensor (batch first) or an array, got {type(x).__name__}")
    return Tensor(x, graph)
