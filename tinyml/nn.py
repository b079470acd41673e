"""Neurons, layers and multilayer perceptrons over the tape.

A neuron is ONE n-ary ``NEURON`` row (``act(b + sum(w_i * x_i))``, its parents
held CSR-style, tanh/sigmoid/relu/none fused in), not the 2n + 1 scalar rows
micrograd builds; other activations add one activation row after an AFFINE row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from enum import Enum

import numpy as np

from . import kernels, train
from .graph import Graph, current_graph
from .module import Module
from .ops import NEURON_ACTIVATIONS, Op
from .tensor import Tensor
from .value import Value, _number, real_dtype, same_graph, wrap


class Activation(str, Enum):
    """Activation of a neuron. Plain strings ("tanh", "relu", ...) work as well."""

    LINEAR = "linear"
    RELU = "relu"
    TANH = "tanh"
    SIGMOID = "sigmoid"
    SIGM = "sigmoid"  # the Rust original's name (an alias of SIGMOID)
    LEAKY_RELU = "leaky_relu"  # negative slope 0.01, as PyTorch's default
    GELU = "gelu"  # exact (erf) form
    GELU_TANH = "gelu_tanh"  # tanh approximation
    SILU = "silu"
    SWISH = "silu"  # alias of SILU
    SOFTPLUS = "softplus"
    ABS = "abs"

    @classmethod
    def parse(cls, value: Activation | str) -> Activation:
        """An Activation from a member or a name such as "tanh" (case-insensitive)."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            key = value.strip().lower()
            key = _ACTIVATION_ALIASES.get(key, key)
            try:
                return cls(key)
            except ValueError:
                pass
            raise ValueError(
                f"unknown activation {value!r}; choose one of " + ", ".join(sorted({m.value for m in cls}))
            )
        raise TypeError(f"activation must be an Activation or a string, got {type(value).__name__}")

    def __str__(self) -> str:
        return self.value


_ACTIVATION_ALIASES = {"sigm": "sigmoid", "swish": "silu", "identity": "linear", "none": "linear"}

# Activation -> (op code or -1 for none, aux constant)
ACTIVATION_OPS: dict[Activation, tuple[int, float]] = {
    Activation.LINEAR: (-1, 0.0),
    Activation.RELU: (int(Op.RELU), 0.0),
    Activation.TANH: (int(Op.TANH), 0.0),
    Activation.SIGMOID: (int(Op.SIGMOID), 0.0),
    Activation.LEAKY_RELU: (int(Op.LEAKY_RELU), 0.01),
    Activation.GELU: (int(Op.GELU_ERF), 0.0),
    Activation.GELU_TANH: (int(Op.GELU_TANH), 0.0),
    Activation.SILU: (int(Op.SILU), 0.0),
    Activation.SOFTPLUS: (int(Op.SOFTPLUS), 0.0),
    Activation.ABS: (int(Op.ABS), 0.0),
}

INITS = ("fan_in", "uniform01")


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, a numpy Generator or None, got {type(seed).__name__}")
    return np.random.default_rng(seed)


def _positive_int(x: object, what: str) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise TypeError(f"{what} must be an int, got {type(x).__name__}")
    if x < 1:
        raise ValueError(f"{what} must be at least 1, got {x}")
    return int(x)


def _leaves(graph: Graph, values: np.ndarray) -> list[Value]:
    graph.reserve(len(values), 0)
    return [wrap(graph, r) for r in graph.push_leaves(np.asarray(values, np.float64))]


def _freed_parameters() -> RuntimeError:
    return RuntimeError("this model's parameters were freed (its graph was cleared); build a new model")


def _rows(values: Sequence[Value]) -> np.ndarray:
    return np.fromiter((v._row for v in values), np.int64, len(values))


class Neuron(Module):
    """``activation(b + sum(w_i * x_i))`` as one NEURON row (or AFFINE + activation rows).

    ``init="fan_in"`` draws weights and bias uniformly in +-1/sqrt(n_inputs)
    (PyTorch's ``nn.Linear``); ``"uniform01"`` draws weights in [0, 1) and sets
    the bias to 0 (the Rust original). ``seed`` is an int, None or a
    ``numpy.random.Generator``.
    """

    def __init__(
        self,
        n_inputs: int,
        activation: Activation | str = Activation.TANH,
        seed: int | np.random.Generator | None = None,
        init: str = "fan_in",
        *,
        graph: Graph | None = None,
    ) -> None:
        self.n_inputs = _positive_int(n_inputs, "n_inputs")
        self.activation = Activation.parse(activation)
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        rng = _rng(seed)
        if init == "fan_in":
            bound = 1.0 / math.sqrt(self.n_inputs)
            w = rng.uniform(-bound, bound, self.n_inputs)
            b = rng.uniform(-bound, bound)
        else:
            w = rng.random(self.n_inputs)
            b = 0.0
        g = current_graph() if graph is None else graph
        self.weights: list[Value] = _leaves(g, w)
        self.bias: Value = Value(b, g)
        self._cache: tuple[int, list[int]] = (-1, [])
        self._as_layer: list[_AsLayer] | None = None

    def parameters(self) -> list[Value]:
        return [*self.weights, self.bias]

    def _own_state(self):
        """As ``nn.Linear(n_inputs, 1)``: weight (1, n_inputs), bias (1,)."""
        return [("weight", list(self.weights), (1, self.n_inputs)), ("bias", [self.bias], (1,))]

    def _param_rows(self) -> list[int]:
        """[bias row, weight rows...], recomputed only after a compaction."""
        gen = self.bias._graph.generation
        if self._cache[0] != gen:
            rows = [self.bias._row] + [w._row for w in self.weights]
            if min(rows) < 0:
                raise _freed_parameters()
            self._cache = (gen, rows)
        return self._cache[1]

    def forward(self, x) -> Value:
        if self._as_layer is None:
            self._as_layer = [_AsLayer(self)]
        out = _run(self._as_layer, x)
        return out if isinstance(x, Tensor) else out[0]

    __call__ = forward

    def __repr__(self) -> str:
        return f"Neuron({self.n_inputs}, activation={self.activation.value!r})"


class _AsLayer:
    """A lone neuron seen as a one-neuron layer, so every forward shares one path."""

    def __init__(self, neuron: Neuron) -> None:
        self.neurons = [neuron]
        self.n_inputs = neuron.n_inputs
        self.activation = neuron.activation
        self.ops = _activation_ops(neuron.activation)
        self.room = _room(neuron.n_inputs, 1)


class Layer(Module):
    """``n_outputs`` neurons over the same ``n_inputs`` inputs."""

    def __init__(
        self,
        n_inputs: int,
        n_outputs: int,
        activation: Activation | str = Activation.TANH,
        seed: int | np.random.Generator | None = None,
        init: str = "fan_in",
        *,
        graph: Graph | None = None,
    ) -> None:
        self.n_inputs = _positive_int(n_inputs, "n_inputs")
        n_outputs = _positive_int(n_outputs, "n_outputs")
        self.activation = Activation.parse(activation)
        rng = _rng(seed)
        self.neurons = [
            Neuron(self.n_inputs, self.activation, rng, init, graph=graph) for _ in range(n_outputs)
        ]
        self.ops = _activation_ops(self.activation)  # for forward_rows
        self.room = _room(self.n_inputs, n_outputs)

    @property
    def n_outputs(self) -> int:
        return len(self.neurons)

    def parameters(self) -> list[Value]:
        return [p for n in self.neurons for p in n.parameters()]

    def named_children(self):
        return iter(())  # the neurons are this layer's weight rows, not sub-modules of the state

    def _own_state(self):
        """As ``nn.Linear(n_inputs, n_outputs)``: weight (n_outputs, n_inputs), bias (n_outputs,)."""
        w = [v for n in self.neurons for v in n.weights]
        b = [n.bias for n in self.neurons]
        return [("weight", w, (self.n_outputs, self.n_inputs)), ("bias", b, (self.n_outputs,))]

    def forward(self, x) -> list[Value]:
        return _run([self], x)

    __call__ = forward

    def __repr__(self) -> str:
        return f"Layer({self.n_inputs}, {self.n_outputs}, activation={self.activation.value!r})"


class MLP(Module):
    """A multilayer perceptron: ``MLP(3, [8, 4, 1], 0.01, tm.Activation.TANH)``.

    Hidden layers use ``activation``; the last layer uses ``output_activation``,
    or ``activation`` too when that is None (as in the Rust original).
    ``update()`` is one plain SGD step with ``learning_rate``.
    """

    def __init__(
        self,
        n_inputs: int,
        layer_sizes: Sequence[int],
        learning_rate: float = 0.01,
        activation: Activation | str = Activation.TANH,
        seed: int | np.random.Generator | None = None,
        output_activation: Activation | str | None = None,
        init: str = "fan_in",
        *,
        graph: Graph | None = None,
    ) -> None:
        self.n_inputs = _positive_int(n_inputs, "n_inputs")
        if isinstance(layer_sizes, (int, np.integer)):
            layer_sizes = [layer_sizes]
        self.layer_sizes = [_positive_int(s, "layer size") for s in layer_sizes]
        if not self.layer_sizes:
            raise ValueError("layer_sizes must name at least one layer")
        self.learning_rate = _number(learning_rate, "learning_rate")
        if not (math.isfinite(self.learning_rate) and self.learning_rate >= 0.0):
            raise ValueError(
                f"learning_rate must be a finite number >= 0 (gradient descent steps against the "
                f"gradient), got {learning_rate}"
            )
        self.activation = Activation.parse(activation)
        self.output_activation = (
            self.activation if output_activation is None else Activation.parse(output_activation)
        )
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        self.init = init
        rng = _rng(seed)
        sizes = [self.n_inputs, *self.layer_sizes]
        last = len(self.layer_sizes) - 1
        self.layers = [
            Layer(
                sizes[i],
                sizes[i + 1],
                self.output_activation if i == last else self.activation,
                rng,
                init,
                graph=graph,
            )
            for i in range(len(self.layer_sizes))
        ]
        self._rows_cache: tuple[int, np.ndarray] = (-1, np.zeros(0, np.int64))

    @property
    def n_outputs(self) -> int:
        return self.layer_sizes[-1]

    @property
    def graph(self) -> Graph:
        return self.layers[0].neurons[0].bias._graph

    def parameters(self) -> list[Value]:
        return [p for layer in self.layers for p in layer.parameters()]

    def parameter_rows(self) -> np.ndarray:
        """Rows of every parameter in ``parameters()`` order (cached between compactions)."""
        gen = self.graph.generation
        if self._rows_cache[0] != gen:
            rows = _rows(self.parameters())
            if len(rows) and rows.min() < 0:
                raise _freed_parameters()
            self._rows_cache = (gen, rows)
        return self._rows_cache[1]

    def zero_grad(self) -> None:
        self.graph.grad[self.parameter_rows()] = 0.0

    zero_gradients = zero_grad

    def update(self) -> None:
        """One SGD step: ``p.data -= learning_rate * p.grad`` for every parameter."""
        g = self.graph
        g.evaluate()  # rows already built keep the parameters they were built with
        kernels.sgd_step(g.data, g.grad, self.parameter_rows(), self.learning_rate)

    def save(self, path, optimizer=None) -> None:
        """Write architecture, learning rate and parameters to the .npz ``path``, atomically.

        ``optimizer`` (over ``model.parameters()``) saves its state alongside; see ``tinyml.io``.
        """
        from . import io

        io.save_model(self, path, optimizer=optimizer)

    @classmethod
    def load(cls, path, *, graph: Graph | None = None) -> MLP:
        """A new model from a file written by :meth:`save` (``tm.ModelFileError`` if unreadable)."""
        from . import io

        return io.load_model(path, graph=graph)

    def load_parameters(self, path) -> None:
        """Load parameters saved by :meth:`save` into this model of the same architecture."""
        from . import io

        io.load_parameters(self, path)

    def forward(self, x):
        return _run(self.layers, x)

    __call__ = forward

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
        l1: float = 0.0,
        l2: float = 0.0,
        dropout: float = 0.0,
        progress: bool = True,
        validation_data=None,
        early_stopping=None,
        scheduler=None,
    ):
        """Train on ``X`` (n, n_inputs) and ``Y`` with compiled kernels; returns a History.

        ``loss``: "mse", "sse", "cross_entropy" (Y integer labels (n,) or one-hot
        rows), "binary_cross_entropy", "hinge", or a callable
        ``(outputs, targets) -> Value`` for ONE sample, averaged over each batch.
        ``batch_size=None`` is one full-batch step per epoch; mini-batches are
        reshuffled every epoch when ``shuffle`` (reproducible with ``seed``).
        ``history.epoch``/``history.loss`` hold the loss before each reported
        epoch's update, every ``report_every`` epochs plus the last;
        ``callback(epoch, loss)`` is called at each report and may return False to
        stop. Plain SGD with ``learning_rate`` unless an ``optimizer`` from
        ``tm.optim`` is given; ``l1``/``l2`` add penalties on every parameter;
        ``dropout`` zeroes each hidden unit with that probability during training
        (inverted dropout, reproducible with ``seed``; ``predict`` never drops).
        A non-finite loss raises ``tm.TrainingDiverged`` naming the epoch and
        leaves the last finite parameters. Ctrl-C raises KeyboardInterrupt as
        usual and leaves the parameters of the steps completed so far.
        ``progress`` shows a tqdm progress bar for fits longer than a second.
        ``validation_data=(X_val, Y_val)`` fills ``history.val_loss`` (the loss
        on it after each recorded epoch's update); ``early_stopping=
        tm.EarlyStopping(patience=10, min_delta=0.0, restore_best=True)`` stops
        when the validation loss (the training loss without validation data)
        stops improving; ``scheduler`` (from ``tm.optim.lr_scheduler``, over the
        ``optimizer``, which it supplies when not given) is stepped once per
        epoch. All three run inside the compiled loop.
        """
        options = train.FitOptions(
            epochs=epochs,
            batch_size=batch_size,
            report_every=report_every,
            callback=callback,
            shuffle=shuffle,
            seed=seed,
            optimizer=optimizer,
            l1=l1,
            l2=l2,
            dropout=dropout,
            progress=progress,
            validation_data=validation_data,
            early_stopping=early_stopping,
            scheduler=scheduler,
        )
        return train.fit_model(self, X, Y, loss, options)

    def predict(self, X) -> np.ndarray:
        """Outputs for every row of ``X`` (n, n_inputs), as a float64 array (n, n_outputs)."""
        return train.predict_model(self, X)

    def summary(self, print_fn: Callable[[str], object] = print) -> None:
        """Print a table of the layers, their output shapes and parameter counts (as Keras's).

        ``print_fn`` receives the table one line at a time (``print`` by default).
        """
        rows = [
            (
                f"Layer({layer.n_inputs}, {layer.n_outputs}, {layer.activation.value})",
                f"(n, {layer.n_outputs})",
                len(layer.parameters()),
            )
            for layer in self.layers
        ]
        title = f"MLP: {self.n_inputs} inputs -> {' -> '.join(map(str, self.layer_sizes))}"
        for line in _summary_table(title, rows):
            print_fn(line)

    def __repr__(self) -> str:
        return (
            f"MLP({self.n_inputs}, {self.layer_sizes}, learning_rate={self.learning_rate}, "
            f"activation={self.activation.value!r}, output_activation={self.output_activation.value!r})"
        )


def _summary_table(title: str, rows: Sequence[tuple[str, str, int]]) -> list[str]:
    """Lines of a model summary: ``rows`` of (layer, output shape, parameter count)."""
    head = ("Layer", "Output shape", "Param #")
    w0 = max(len(head[0]), *(len(r[0]) for r in rows))
    w1 = max(len(head[1]), *(len(r[1]) for r in rows))
    w2 = max(len(head[2]), *(len(f"{r[2]:,}") for r in rows))
    rule = "=" * (w0 + w1 + w2 + 4)
    lines = [title, rule, f"{head[0]:<{w0}}  {head[1]:<{w1}}  {head[2]:>{w2}}", "-" * len(rule)]
    lines += [f"{name:<{w0}}  {shape:<{w1}}  {count:>{w2},}" for name, shape, count in rows]
    lines += [rule, f"Total params: {sum(r[2] for r in rows):,} (all trainable)"]
    return lines


# ---------------------------------------------------------------------------
# The one forward path shared by Neuron, Layer and MLP
# ---------------------------------------------------------------------------
def _run(layers, x) -> list[Value]:
    """Append the rows of ``layers`` applied to input ``x``; returns output Values.

    A Tensor ``x`` is a batch: the result is a Tensor with one row per sample.
    """
    if isinstance(x, Tensor):
        return batch_forward(layers, x)
    graph = layers[0].neurons[0].bias._graph
    inputs = _inputs(x, layers[0].n_inputs, graph)
    rows_needed = len(inputs)
    entries = 0
    for layer in layers:
        rows_needed += layer.room[0]
        entries += layer.room[1]
    graph.reserve(rows_needed, entries)
    # from here on no compaction can happen: rows are stable
    rows = [v._row if type(v) is Value else graph.push_leaf(v) for v in inputs]
    return [wrap(graph, r) for r in forward_rows(graph, layers, rows)]


def _room(n_inputs: int, n_outputs: int) -> tuple[int, int]:
    """Most rows and parent entries one forward of a layer appends (AFFINE + activation)."""
    return 2 * n_outputs, n_outputs * (2 * n_inputs + 2)


def forward_rows(graph: Graph, layers, rows: list[int]) -> list[int]:
    """Append each layer's rows over input ``rows``; no room check (reserve first).

    A neuron whose activation can be fused (tanh, sigmoid, relu, none) is one
    NEURON row; any other is an AFFINE row plus an activation row (a layer's
    AFFINE rows first, then its activation rows).
    """
    push = graph.push
    for layer in layers:
        act, aux, fused = layer.ops
        if fused:
            rows = [push(Op.NEURON, neuron._param_rows() + rows, act) for neuron in layer.neurons]
        else:
            # the layer's AFFINE rows first, then its activation rows: the affine rows are then
            # one run over the same inputs, which fit runs as one dense block (interleaved,
            # each neuron was a block of its own: gelu, silu, ... trained 3.5x slower than tanh)
            pre = [push(Op.AFFINE, neuron._param_rows() + rows) for neuron in layer.neurons]
            rows = [push(act, (r,), aux) for r in pre]
    return rows


def _activation_ops(activation: Activation) -> tuple[int, float, bool]:
    """(op code, aux, fused) of an activation: fused ones ride on the NEURON row (code 0: none)."""
    act, aux = ACTIVATION_OPS[activation]
    if act < 0:
        return 0, 0.0, True
    return act, aux, act in NEURON_ACTIVATIONS


def _inputs(x, n: int, graph: Graph) -> list:
    """``x`` as a list of ``n`` Values of ``graph`` and floats, or a clear error."""
    t = type(x)
    if t is np.ndarray:
        if x.ndim != 1:
            raise ValueError(f"expected a 1-D input of {n} values, got an array of shape {x.shape}")
        if not real_dtype(x.dtype):
            raise TypeError(f"input array must hold real numbers, got dtype {x.dtype}")
        items = x.astype(np.float64).tolist()
    elif t is list or t is tuple:
        items = x
    elif isinstance(x, (Value, str, bytes)) or not isinstance(x, Sequence):
        raise TypeError(
            f"expected a sequence of {n} numbers or Values (or a 1-D numpy array), got {t.__name__}"
        )
    else:
        items = list(x)
    if len(items) != n:
        raise ValueError(f"expected {n} inputs, got {len(items)}")
    out = []
    for i, v in enumerate(items):
        tv = type(v)
        if tv is float:
            out.append(v)
        elif tv is Value:
            if v._graph is not graph:
                raise ValueError("the input Values belong to another graph than the model's parameters")
            if v._row < 0:
                same_graph((v,))  # raises the freed-Value error
            out.append(v)
        else:
            out.append(_number(v, f"input {i}"))
    return out


def batch_forward(layers, x: Tensor) -> Tensor:
    """``layers`` applied to every row of ``x``: the rows of calling them sample by sample."""
    graph = layers[0].neurons[0].bias._graph
    n = layers[0].n_inputs
    if x.ndim != 2 or x.shape[1] != n:
        raise ValueError(
            f"expected {n} inputs per sample, got a Tensor of shape {x.shape}; give (samples, {n})"
        )
    if x._graph is not graph:
        raise ValueError("the input Tensor belongs to another graph than the model's parameters")
    r = x.shape[0]
    rows_needed = sum(layer.room[0] for layer in layers)
    entries = sum(layer.room[1] for layer in layers)
    graph.reserve(r * rows_needed, r * entries)
    inputs = x._rows_array().reshape(r, n).tolist()
    out = []
    for sample in inputs:
        out.extend(forward_rows(graph, layers, sample))
    return Tensor._wrap_rows(graph, out, (r, len(layers[-1].neurons)))
