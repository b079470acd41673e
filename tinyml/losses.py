"""Loss functions: each takes Values (a Value, nested lists of them, or a Tensor)
and returns one Value, built from as few rows as possible (n-ary SUM rows)."""

from __future__ import annotations

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
            d = graph.push(Op.SUB, (p._row, t._row))
        else:
            d = graph.push(Op.ADD_C, (p._row,), -t)
        squares.append(graph.push(Op.POW_C, (d,), 2.0))
    total = graph.push(Op.SUM, squares)
    if reduction == "mean":
        total = graph.push(Op.DIV_C, (total,), float(n))
    return wrap(graph, total)
