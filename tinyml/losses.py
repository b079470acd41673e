"""Loss functions: each takes Values (a Value, nested lists of them, or a Tensor)
and returns one Value, built from as few rows as possible (n-ary SUM rows, one
SQDIFF row per squared error, one CROSS_ENTROPY row per sample). Targets may be
numbers or Values (input placeholders of a compiled program), so every loss
also works inside ``fit``."""

from __future__ import annotations

import math
import numbers

import numpy as np

from .graph import Graph
from .ops import Op
from .value import Value, _number, same_graph, wrap

REDUCTIONS = ("mean", "sum")


def flatten(x) -> list:
    """Flatten a Value, a number, nested lists/tuples, a numpy array or a Tensor, row-major."""
    if type(x) is Value:
        return [x]
    if hasattr(x, "flat_values"):  # Tensor
        return list(x.flat_values())
    if isinstance(x, np.ndarray):
        return [float(v) for v in x.reshape(-1)]
    if isinstance(x, (list, tuple)):
        out = []
        for item in x:
            if type(item) is Value or type(item) is float:  # the common flat case, no recursion
                out.append(item)
            else:
                out.extend(flatten(item))
        return out
    return [x]


def _pairs(predictions, targets, name: str) -> tuple[Graph, list[Value], list]:
    preds = flatten(predictions)
    tgts = flatten(targets)
    if len(preds) != len(tgts):
        raise ValueError(f"{name}: {len(preds)} predictions but {len(tgts)} targets")
    if not preds:
        raise ValueError(f"{name}: no predictions given")
    for i, p in enumerate(preds):
        if type(p) is not Value:
            raise TypeError(f"{name}: prediction {i} is {type(p).__name__}, expected a Value")
    tgts = [t if type(t) is Value else _number(t, f"{name} target {i}") for i, t in enumerate(tgts)]
    graph = same_graph(preds + [t for t in tgts if type(t) is Value])
    return graph, preds, tgts


def mse(predictions, targets, reduction: str = "mean") -> Value:
    """Squared error between predictions and targets.

    ``reduction="mean"`` averages over every element (PyTorch's ``MSELoss``);
    ``"sum"`` gives the total, the Rust XOR example's "total loss".
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"mse: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    graph, preds, tgts = _pairs(predictions, targets, "mse")
    n = len(preds)
    graph.reserve(2 * n + 2, 3 * n + 1)
    squares = []
    for p, t in zip(preds, tgts):
        if type(t) is Value:
            squares.append(graph.push(Op.SQDIFF, (p._row, t._row)))
        else:
            squares.append(graph.push(Op.POW_C, (graph.push(Op.ADD_C, (p._row,), -t),), 2.0))
    total = graph.push(Op.SUM, squares) if n > 1 else squares[0]
    if reduction == "mean" and n > 1:
        total = graph.push(Op.DIV_C, (total,), float(n))
    return wrap(graph, total)


# ---------------------------------------------------------------------------
# Classification losses
# ---------------------------------------------------------------------------
def _logit_rows(logits, name: str) -> list[list[Value]]:
    """``logits`` as n rows of k Values: a Tensor, a list of rows, or one row (one sample)."""
    if hasattr(logits, "flat_values"):  # Tensor
        rows = logits.rows
    elif isinstance(logits, (list, tuple)):
        if not logits:
            raise ValueError(f"{name}: no logits given")
        rows = [list(logits)] if type(logits[0]) is Value else logits
    else:
        raise TypeError(
            f"{name}: logits must be a Tensor, a list of rows of Values or a list of Values "
            f"(one sample), got {type(logits).__name__}"
        )
    k = None
    for i, row in enumerate(rows):
        if not isinstance(row, (list, tuple)):
            raise TypeError(f"{name}: logits row {i} is {type(row).__name__}, expected a list of Values")
        if k is None:
            k = len(row)
        elif len(row) != k:
            raise ValueError(f"{name}: logits row 0 has {k} entries but row {i} has {len(row)}")
        for j, v in enumerate(row):
            if type(v) is not Value:
                raise TypeError(f"{name}: logit [{i}][{j}] is {type(v).__name__}, expected a Value")
    if not rows:
        raise ValueError(f"{name}: no logits given")
    if not k:
        raise ValueError(f"{name}: each sample needs at least one logit")
    return [list(row) for row in rows]


def _class_label(x, k: int, i: int, name: str) -> int:
    """``x`` as a class index in [0, k), or a clear TypeError/ValueError."""
    if type(x) is Value:
        raise TypeError(
            f"{name}: label {i} is a Value; integer labels must be plain ints "
            "(give Values as one-hot or probability rows instead)"
        )
    if isinstance(x, (bool, np.bool_, np.timedelta64)) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name}: label {i} is {type(x).__name__} {x!r:.40}, expected an int class index")
    if not isinstance(x, (numbers.Integral, np.integer)):
        if not (math.isfinite(x) and float(x).is_integer()):
            raise ValueError(f"{name}: label {i} is {x!r}, expected a whole-number class index")
    c = int(x)
    if not 0 <= c < k:
        raise ValueError(f"{name}: label {i} is {c}, out of range for {k} classes (0..{k - 1})")
    return c


def _target_rows(labels, n: int, k: int, name: str) -> tuple[list[int] | None, list[list] | None]:
    """(class indices, None) or (None, rows of k targets, numbers or Values) for n samples."""
    if hasattr(labels, "flat_values"):  # Tensor: probability rows
        labels = labels.rows
    elif isinstance(labels, np.ndarray):
        if labels.ndim > 2:
            raise ValueError(f"{name}: labels must be 1-D or 2-D, got shape {labels.shape}")
        labels = labels.tolist() if labels.ndim else labels.item()
    if not isinstance(labels, (list, tuple)):
        label = _class_label(labels, k, 0, name)
        if n != 1:
            raise ValueError(f"{name}: one label given for {n} samples")
        return [label], None
    if not labels:
        raise ValueError(f"{name}: no labels given for {n} samples")
    if isinstance(labels[0], (list, tuple, np.ndarray)):
        if len(labels) != n:
            raise ValueError(f"{name}: {n} samples of logits but {len(labels)} target rows")
        rows = []
        for i, row in enumerate(labels):
            if not isinstance(row, (list, tuple, np.ndarray)) or len(row) != k:
                raise ValueError(
                    f"{name}: target row {i} must hold {k} entries (one per class), got {row!r:.60}"
                )
            rows.append(
                [
                    t if type(t) is Value else _number(t, f"{name} target [{i}][{j}]")
                    for j, t in enumerate(row)
                ]
            )
        return None, rows
    if len(labels) == n and not any(type(t) is Value for t in labels):
        return [_class_label(x, k, i, name) for i, x in enumerate(labels)], None
    if n == 1 and len(labels) == k:
        return None, [
            [t if type(t) is Value else _number(t, f"{name} target {j}") for j, t in enumerate(labels)]
        ]
    if len(labels) == n:
        _class_label(next(t for t in labels if type(t) is Value), k, 0, name)  # raises the TypeError
    raise ValueError(
        f"{name}: {n} samples of {k} logits but {len(labels)} labels; "
        f"give {n} integer labels or {n} rows of {k} probabilities"
    )


def cross_entropy(logits, labels) -> Value:
    """Softmax cross-entropy averaged over samples, as PyTorch's ``F.cross_entropy``.

    ``logits``: a Tensor (n, k), n lists of k Values, or one list of k Values
    (one sample). ``labels``: n integer class indices in [0, k) (a list, a 1-D
    array, or an int for one sample), or n target rows of k probabilities such
    as one-hot rows (numbers or Values, e.g. input placeholders; a Tensor or a
    2-D list or array). Sample i costs ``logsumexp(z_i) - z_i[y_i]``, or
    ``sum_j t_ij * (logsumexp(z_i) - z_ij)`` for target rows: one CROSS_ENTROPY
    row per sample, which computes it as PyTorch's log-softmax does, so logits
    of +-1000 are finite in value and gradient, logits of 1e16 keep full
    precision and a logit of -inf (a masked class) gives PyTorch's results.
    """
    name = "cross_entropy"
    rows = _logit_rows(logits, name)
    n, k = len(rows), len(rows[0])
    classes, targets = _target_rows(labels, n, k, name)
    flat = [v for row in rows for v in row]
    if classes is not None:
        graph = same_graph(flat)
        graph.reserve(n + 2, n * k + n + 1)
        z = _rows_of(flat).reshape(n, k)
        per_sample = graph.push_many(Op.CROSS_ENTROPY, z, np.asarray(classes, np.float64))
    else:
        t_flat = [t for row in targets for t in row]
        t_values = [t for t in t_flat if type(t) is Value]
        graph = same_graph(flat + t_values)
        numeric = [t for t in t_flat if type(t) is not Value]
        graph.reserve(len(numeric) + n + 2, 2 * n * k + n + 1)
        z = _rows_of(flat).reshape(n, k)
        const_rows = iter(graph.push_leaves(np.asarray(numeric, np.float64)))
        t = np.fromiter((v._row if type(v) is Value else next(const_rows) for v in t_flat), np.int64, n * k)
        per_sample = graph.push_many(Op.CROSS_ENTROPY, np.concatenate([z, t.reshape(n, k)], axis=1), -1.0)
    total = graph.push(Op.SUM, np.asarray(per_sample))
    return wrap(graph, graph.push(Op.DIV_C, (total,), float(n)))


def binary_cross_entropy(probs, targets) -> Value:
    """Binary cross-entropy of probabilities (as after a sigmoid), averaged over elements.

    ``-(y log p + (1 - y) log(1 - p))`` with each log clamped at -100 as PyTorch's
    ``BCELoss`` does, so p of exactly 0 or 1 gives a large finite loss, never NaN.
    Targets are numbers in [0, 1] or Values (e.g. input placeholders).
    """
    name = "binary_cross_entropy"
    graph, preds, tgts = _pairs(probs, targets, name)
    numeric = [t for t in tgts if type(t) is not Value]
    for t in numeric:
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"{name}: targets must lie in [0, 1], got {t!r}")
    n = len(preds)
    graph.reserve(len(numeric) + n + 2, 3 * n + 1)
    const_rows = iter(graph.push_leaves(np.asarray(numeric, np.float64)))
    y = np.fromiter((t._row if type(t) is Value else next(const_rows) for t in tgts), np.int64, n)
    per_element = graph.push_many(Op.BCE, np.stack([_rows_of(preds), y], axis=1))
    total = graph.push(Op.SUM, per_element)
    return wrap(graph, graph.push(Op.DIV_C, (total,), float(n)))


def hinge(scores, labels) -> Value:
    """Hinge loss ``max(0, 1 - y * s)`` averaged over scores; labels are -1 or +1 (or Values)."""
    name = "hinge"
    graph, preds, tgts = _pairs(scores, labels, name)
    for t in tgts:
        if type(t) is not Value and t not in (-1.0, 1.0):
            raise ValueError(f"{name}: labels must be -1 or +1, got {t!r}")
    n = len(preds)
    graph.reserve(3 * n + 2, 5 * n + 1)
    margins = []
    for s, t in zip(preds, tgts):
        if type(t) is Value:
            m = graph.push(Op.RSUB_C, (graph.push(Op.MUL, (t._row, s._row)),), 1.0)
        elif t == 1.0:
            m = graph.push(Op.RSUB_C, (s._row,), 1.0)  # 1 - s
        else:
            m = graph.push(Op.ADD_C, (s._row,), 1.0)  # 1 + s
        margins.append(graph.push(Op.RELU, (m,)))
    total = graph.push(Op.SUM, margins)
    return wrap(graph, graph.push(Op.DIV_C, (total,), float(n)))


# ---------------------------------------------------------------------------
# Regularisation penalties (for eager training loops)
# ---------------------------------------------------------------------------
def _penalty(params, weight, op: int, aux: float, name: str) -> Value:
    if hasattr(params, "parameters") and callable(params.parameters):  # a Module
        params = params.parameters()
    values = flatten(params)
    if not values:
        raise ValueError(f"{name}: no parameters given")
    for i, v in enumerate(values):
        if type(v) is not Value:
            raise TypeError(f"{name}: parameter {i} is {type(v).__name__}, expected a Value")
    w = weight if type(weight) is Value else _number(weight, f"{name} weight")
    graph = same_graph(values + ([w] if type(w) is Value else []))
    n = len(values)
    graph.reserve(n + 2, 2 * n + 2)
    terms = graph.push_many(op, _rows_of(values).reshape(n, 1), aux)
    total = graph.push(Op.SUM, terms)
    if type(w) is Value:
        return wrap(graph, graph.push(Op.MUL, (w._row, total)))
    return wrap(graph, graph.push(Op.MUL_C, (total,), w))


def l1_penalty(params, weight) -> Value:
    """``weight * sum(|p|)`` over ``params`` (a model, a Tensor or Values), to add to a loss."""
    return _penalty(params, weight, Op.ABS, 0.0, "l1_penalty")


def l2_penalty(params, weight) -> Value:
    """``weight * sum(p ** 2)`` over ``params`` (a model, a Tensor or Values), to add to a loss."""
    return _penalty(params, weight, Op.POW_C, 2.0, "l2_penalty")


def _rows_of(values: list[Value]) -> np.ndarray:
    """Current tape rows of ``values`` (call after ``reserve``: it may renumber them)."""
    return np.fromiter((v._row for v in values), np.int64, len(values))
