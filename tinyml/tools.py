"""Tools for checking and looking at graphs: ``gradcheck``, ``to_dot``, ``draw_dot``.

``gradcheck`` is the test to run after adding an expression or op of your own:
it compares the engine's gradients with central finite differences.
``to_dot`` turns the ancestors of a Value into Graphviz DOT text (any size:
big graphs are cut to ``max_nodes`` rows, with a note saying how many were
left out); ``draw_dot`` renders that text to an .svg/.png/.pdf file.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from . import kernels, ops
from .graph import current_graph
from .ops import Op
from .value import Value, same_graph

# ---------------------------------------------------------------------------
# gradcheck
# ---------------------------------------------------------------------------


class GradcheckError(AssertionError):
    """Raised by ``gradcheck(..., raise_on_failure=True)`` when gradients disagree."""


@dataclass(frozen=True)
class GradcheckResult:
    """What :func:`gradcheck` found.

    ``analytic[i]`` is the engine's d(output)/d(input i), ``numeric[i]`` the
    central difference ``(f(x + eps e_i) - f(x - eps e_i)) / (2 eps)``;
    input i passes when ``|analytic - numeric| <= atol + rtol * |numeric|``
    (both finite). ``worst_index`` is the input that failed by the most (or,
    when all pass, came closest to failing). ``bool(result)`` is ``ok``.
    """

    ok: bool
    value: float
    analytic: np.ndarray
    numeric: np.ndarray
    abs_error: np.ndarray
    rel_error: np.ndarray
    worst_index: int
    atol: float
    rtol: float
    eps: float

    def __bool__(self) -> bool:
        return self.ok

    @property
    def failures(self) -> np.ndarray:
        """Indices of the inputs whose gradients disagree."""
        return np.flatnonzero(~_passes(self.analytic, self.numeric, self.atol, self.rtol))

    def report(self) -> str:
        """A few lines for a human: verdict, then the worst input and every failure."""
        i = self.worst_index
        lines = [
            f"gradcheck {'passed' if self.ok else 'FAILED'} for {self.analytic.size} input(s) "
            f"(eps={self.eps}, atol={self.atol}, rtol={self.rtol}); f(x) = {self.value!r}",
            f"worst input {i}: analytic {float(self.analytic[i])!r}, numeric {float(self.numeric[i])!r}, "
            f"abs error {self.abs_error[i]:.3g}, rel error {self.rel_error[i]:.3g}",
        ]
        for j in self.failures[:10]:
            a, n = float(self.analytic[j]), float(self.numeric[j])
            lines.append(f"  input {j}: analytic {a!r} vs numeric {n!r}")
        if self.failures.size > 10:
            lines.append(f"  ... and {self.failures.size - 10} more")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.report()


def _passes(analytic: np.ndarray, numeric: np.ndarray, atol: float, rtol: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        close = np.abs(analytic - numeric) <= atol + rtol * np.abs(numeric)
    return close & np.isfinite(analytic) & np.isfinite(numeric)


def _positive(x: object, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or not float(x) > 0 or math.isinf(x):
        raise ValueError(f"{name} must be a positive finite number, got {x!r:.40}")
    return float(x)


def _non_negative(x: object, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or not float(x) >= 0 or math.isinf(x):
        raise ValueError(f"{name} must be a non-negative finite number, got {x!r:.40}")
    return float(x)


def gradcheck(
    fn: Callable[..., Value],
    inputs: Sequence[Value | float] | np.ndarray,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    raise_on_failure: bool = False,
) -> GradcheckResult:
    """Check the engine's gradient of ``fn`` at ``inputs`` against central differences.

    ``fn(*values)`` must build and return one Value from the input Values
    (``values[i]`` is a leaf Value); it is called ``1 + 2 * len(inputs)``
    times, so it must be a pure function of its inputs. ``inputs`` are leaf
    Values or numbers (numbers become new leaves in the current graph). Use it
    on any expression you add, e.g.::

        res = tm.gradcheck(lambda x, y: (x * y).tanh() + y.exp() / x, [0.3, -1.2])
        assert res.ok, res.report()

    Gradients and data of the inputs are left as they were (every leaf's
    gradient is restored after the one backward pass). Points where ``fn`` is
    not differentiable (``relu`` at exactly 0, ``abs`` at 0) legitimately fail.
    With ``raise_on_failure=True`` a failure raises :class:`GradcheckError`
    carrying the report. Returns a :class:`GradcheckResult`.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    eps = _positive(eps, "eps")
    atol = _non_negative(atol, "atol")
    rtol = _non_negative(rtol, "rtol")
    if isinstance(inputs, (Value, str, bytes)) or not hasattr(inputs, "__len__"):
        raise TypeError("inputs must be a sequence of Values or numbers, e.g. [1.0, 2.0]")
    if isinstance(inputs, np.ndarray) and inputs.ndim != 1:
        raise ValueError(f"inputs must be 1-D, got an array of shape {inputs.shape}")
    if len(inputs) == 0:
        raise ValueError("gradcheck needs at least one input")
    given = [x for x in inputs if type(x) is Value]
    graph = same_graph(given) if given else current_graph()
    values: list[Value] = []
    for i, x in enumerate(inputs):
        if type(x) is Value:
            if not x.is_leaf:
                raise ValueError(f"inputs[{i}] is not a leaf Value; pass leaves (tm.Value(...)) or numbers")
            values.append(x)
        elif isinstance(x, numbers.Real) and not isinstance(x, bool):
            values.append(Value(float(x), graph))
        else:
            raise TypeError(f"inputs[{i}] is {type(x).__name__}, expected a Value or a number")
    if len({id(v) for v in values}) != len(values) or len({v._row for v in values}) != len(values):
        raise ValueError("the same Value appears twice in inputs")

    def call() -> Value:
        out = fn(*values)
        if type(out) is not Value:
            raise TypeError(f"fn must return a Value, got {type(out).__name__}")
        if out._graph is not graph:
            raise ValueError("fn returned a Value of another graph than its inputs")
        return out

    # analytic: one backward pass; every gradient in the graph is restored afterwards
    out = call()
    value = out.data  # evaluates every pending row
    n = graph.n
    saved = graph.grad[:n].copy()  # no row is appended before the restore: rows stay put
    rows = [v._row for v in values]
    graph.grad[rows] = 0.0
    out.backward()
    analytic = graph.grad[rows, 0].copy()
    graph.grad[:n] = saved
    del out

    # numeric: central differences, one input at a time
    numeric = np.empty(len(values))
    for i, v in enumerate(values):
        x0 = v.data
        try:
            v.data = x0 + eps
            hi = call().data
            v.data = x0 - eps
            lo = call().data
        finally:
            v.data = x0
        numeric[i] = (hi - lo) / (2.0 * eps)

    abs_error = np.abs(analytic - numeric)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_error = abs_error / np.abs(numeric)
    rel_error[abs_error == 0] = 0.0
    ok_each = _passes(analytic, numeric, atol, rtol)
    # how far past its tolerance each input is; a non-finite gradient is the worst
    with np.errstate(invalid="ignore"):
        excess = np.where(np.isfinite(abs_error), abs_error - (atol + rtol * np.abs(numeric)), np.inf)
    worst = int(np.argmax(excess))
    result = GradcheckResult(
        ok=bool(ok_each.all()),
        value=value,
        analytic=analytic,
        numeric=numeric,
        abs_error=abs_error,
        rel_error=rel_error,
        worst_index=worst,
        atol=atol,
        rtol=rtol,
        eps=eps,
    )
    if raise_on_failure and not result.ok:
        raise GradcheckError(result.report())
    return result


# ---------------------------------------------------------------------------
# to_dot / draw_dot
# ---------------------------------------------------------------------------
def _ancestor_count(pstart, pidx, root: int) -> int:
    """Number of rows ``root`` depends on, itself included (the tape's ancestor sweep)."""
    keep = np.zeros(root + 1, np.bool_)
    keep[root] = True
    kernels.mark_ancestors(pstart, pidx, keep, root + 1)
    return int(keep.sum())


def _op_label(code: int, aux: float) -> str:
    try:
        op = Op(code)
    except ValueError:
        return f"op {code}"
    return ops.label(op, aux)


def _escape(text: str) -> str:
    """Escape a string for a DOT record label."""
    out = []
    for ch in text:
        if ch in '{}|<>"\\':
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def to_dot(value: Value, max_nodes: int = 200, rankdir: str = "LR") -> str:
    """Graphviz DOT text of ``value`` and the rows it depends on.

    Each row is a box ``op | data | grad`` with edges from its parents. At
    most ``max_nodes`` rows are drawn, those nearest ``value`` (breadth first);
    if the graph has more, a note node says how many rows were left out, with
    dashed edges to the rows whose parents are missing. The traversal walks the
    tape arrays without recursion, so a chain of a million rows is fine.
    """
    if type(value) is not Value:
        raise TypeError(f"to_dot expects a Value, got {type(value).__name__}")
    if isinstance(max_nodes, bool) or not isinstance(max_nodes, (int, np.integer)) or max_nodes < 1:
        raise ValueError(f"max_nodes must be a positive int, got {max_nodes!r:.40}")
    if rankdir not in ("LR", "RL", "TB", "BT"):
        raise ValueError(f"rankdir must be one of LR, RL, TB, BT, got {rankdir!r}")
    same_graph([value])  # rejects a freed Value
    graph = value._graph
    graph.evaluate()
    root = value._row
    op, pstart, pidx, aux = graph.op, graph.pstart, graph.pidx, graph.aux
    data, grad = graph.data, graph.grad

    shown = {root: 0}
    order = [root]
    head = 0
    truncated = False
    while head < len(order):
        i = order[head]
        head += 1
        for k in range(int(pstart[i]), int(pstart[i + 1])):
            p = int(pidx[k])
            if p in shown:
                continue
            if len(order) >= max_nodes:
                truncated = True
                break
            shown[p] = len(order)
            order.append(p)
        if truncated:
            break
    total = _ancestor_count(pstart, pidx, root) if truncated else len(order)
    omitted = total - len(order)

    lines = [
        "digraph tinyml {",
        f"  rankdir={rankdir};",
        '  node [shape=record, fontname="Helvetica", fontsize=10];',
    ]
    for i in sorted(order):
        code = int(op[i])
        name = "leaf" if code == Op.LEAF else _op_label(code, float(aux[i]))
        label = f"{{ {_escape(name)} | data {data[i, 0]:.4g} | grad {grad[i, 0]:.4g} }}"
        style = ', style=filled, fillcolor="#e8f0fe"' if i == root else ""
        lines.append(f'  n{i} [label="{label}"{style}];')
    missing_parents = []
    for i in sorted(order):
        cut = False
        for k in range(int(pstart[i]), int(pstart[i + 1])):
            p = int(pidx[k])
            if p in shown:
                lines.append(f"  n{p} -> n{i};")
            else:
                cut = True
        if cut:
            missing_parents.append(i)
    if omitted:
        lines.append(
            f'  omitted [shape=note, label="... {omitted} more row{"s" if omitted != 1 else ""} '
            f'omitted (max_nodes={max_nodes})"];'
        )
        for i in missing_parents:
            lines.append(f"  omitted -> n{i} [style=dashed];")
    lines.append("}")
    return "\n".join(lines) + "\n"


_FORMATS = ("svg", "png", "pdf")
_INSTALL = (
    "draw_dot needs the graphviz Python package and the Graphviz programs: "
    "`pip install graphviz`, plus Graphviz itself (`apt install graphviz`, `brew install graphviz` "
    "or `conda install graphviz`). to_dot(value) gives the DOT text without either."
)


def draw_dot(value: Value, path: str | os.PathLike, max_nodes: int = 200, format: str | None = None) -> str:
    """Render :func:`to_dot` of ``value`` to ``path``; the format comes from its suffix (.svg, .png, .pdf).

    Needs the ``graphviz`` Python package and the Graphviz ``dot`` program;
    without them it raises ImportError (package) or RuntimeError (program)
    saying how to install them. Returns the path written.
    """
    path = os.fspath(path)
    fmt = format if format is not None else os.path.splitext(path)[1].lstrip(".").lower()
    if fmt not in _FORMATS:
        raise ValueError(f"cannot tell the image format from {path!r}: use a .svg, .png or .pdf suffix")
    dot = to_dot(value, max_nodes=max_nodes)
    try:
        import graphviz
    except ImportError as e:
        raise ImportError(_INSTALL) from e
    try:
        image = graphviz.Source(dot).pipe(format=fmt)
    except graphviz.ExecutableNotFound as e:
        raise RuntimeError(_INSTALL) from e
    with open(path, "wb") as f:
        f.write(image)
    return path


__all__ = ["GradcheckError", "GradcheckResult", "draw_dot", "gradcheck", "to_dot"]
