"""gradcheck, to_dot, draw_dot."""

from __future__ import annotations

import math
import re
import shutil
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyml as tm
from tinyml import tools
from tinyml.ops import Op
from tinyml.value import wrap

# ---------------------------------------------------------------------------
# gradcheck
# ---------------------------------------------------------------------------


def test_gradcheck_passes_and_reports_true_derivatives():
    x0, y0 = 0.3, -1.2
    res = tools.gradcheck(lambda x, y: (x * y).tanh() + y.exp() / x, [x0, y0])
    assert res.ok and bool(res)
    # d/dx = y (1 - tanh^2(xy)) - e^y / x^2 ; d/dy = x (1 - tanh^2(xy)) + e^y / x
    sech2 = 1 - math.tanh(x0 * y0) ** 2
    expected = [y0 * sech2 - math.exp(y0) / x0**2, x0 * sech2 + math.exp(y0) / x0]
    np.testing.assert_allclose(res.analytic, expected, rtol=1e-14)
    np.testing.assert_allclose(res.numeric, expected, rtol=1e-7)
    assert res.value == pytest.approx(math.tanh(x0 * y0) + math.exp(y0) / x0, rel=1e-15)
    np.testing.assert_array_equal(res.abs_error, np.abs(res.analytic - res.numeric))
    assert res.failures.size == 0
    assert "passed" in res.report()


def test_gradcheck_catches_a_wrong_gradient():
    """``y * y.data`` treats one factor as a constant: its engine gradient is half the true one."""
    res = tools.gradcheck(lambda x, y: x * y + y * y.data, [2.0, 1.5])
    assert not res.ok
    assert res.worst_index == 1
    assert res.failures.tolist() == [1]
    assert res.analytic.tolist() == [1.5, 2.0 + 1.5]  # d/dy of x*y + y*c with c = 1.5
    np.testing.assert_allclose(res.numeric, [1.5, 2.0 + 3.0], rtol=1e-7)
    assert res.abs_error[1] == pytest.approx(1.5, rel=1e-6)
    assert res.rel_error[1] == pytest.approx(0.3, rel=1e-6)
    assert "FAILED" in res.report() and "input 1" in res.report()
    with pytest.raises(tools.GradcheckError, match="worst input 1"):
        tools.gradcheck(lambda x, y: x * y + y * y.data, [2.0, 1.5], raise_on_failure=True)


def test_gradcheck_flags_kinks_and_nan():
    assert not tools.gradcheck(lambda x: x.relu(), [0.0]).ok  # numeric 0.5, engine 0
    assert tools.gradcheck(lambda x: x.relu(), [0.5]).ok
    res = tools.gradcheck(lambda x: x.log(), [-1.0])
    assert not res.ok and res.worst_index == 0


def test_gradcheck_tolerances():
    # a forward difference error of about eps * f'' / 2 is invisible to central differences;
    # a tiny atol/rtol makes even round-off fail
    f = lambda x: (x * 3.0).exp()  # noqa: E731
    assert tools.gradcheck(f, [0.7]).ok
    assert not tools.gradcheck(f, [0.7], atol=0.0, rtol=1e-15).ok


def test_gradcheck_leaves_inputs_and_other_leaves_alone():
    with tm.Graph():
        a = tm.Value(0.7)
        w = tm.Value(-2.0)  # a "parameter" the function closes over
        (a * w * 3.0).backward()
        grads = (a.grad, w.grad)
        res = tools.gradcheck(lambda x: (x * w).sigmoid(), [a])
        assert res.ok
        assert (a.data, w.data) == (0.7, -2.0)
        assert (a.grad, w.grad) == grads
        s = 1 / (1 + math.exp(1.4))
        assert res.analytic[0] == pytest.approx(-2.0 * s * (1 - s), rel=1e-14)


def test_gradcheck_accepts_arrays_and_many_inputs():
    xs = np.linspace(-1, 1, 7)
    res = tools.gradcheck(lambda *v: sum(q * q * q for q in v), xs)
    assert res.ok
    np.testing.assert_allclose(res.analytic, 3 * xs**2, rtol=1e-14, atol=1e-15)


def test_gradcheck_bad_use():
    with pytest.raises(TypeError, match="return a Value"):
        tools.gradcheck(lambda x: 1.0, [1.0])
    with pytest.raises(ValueError, match="at least one"):
        tools.gradcheck(lambda: tm.Value(1.0), [])
    with pytest.raises(ValueError, match="leaf"):
        a = tm.Value(1.0)
        tools.gradcheck(lambda x: x, [a * 2.0])
    with pytest.raises(ValueError, match="twice"):
        a = tm.Value(1.0)
        tools.gradcheck(lambda x, y: x * y, [a, a])
    with pytest.raises(TypeError):
        tools.gradcheck(lambda x: x, ["1.0"])
    with pytest.raises(TypeError):
        tools.gradcheck(lambda x: x, 1.0)
    with pytest.raises(ValueError, match="eps"):
        tools.gradcheck(lambda x: x, [1.0], eps=0.0)
    with pytest.raises(ValueError, match="atol"):
        tools.gradcheck(lambda x: x, [1.0], atol=-1.0)
    with pytest.raises(TypeError):
        tools.gradcheck(None, [1.0])


# each keeps a bounded input bounded (|output| <= |input| + 1 or better), so no overflow
UNARY = [
    ("tanh", lambda v: v.tanh()),
    ("sigmoid", lambda v: v.sigmoid()),
    ("exp", lambda v: v.tanh().exp()),
    ("softplus", lambda v: v.softplus()),
    ("gelu", lambda v: v.gelu()),
    ("silu", lambda v: v.silu()),
    ("square", lambda v: v.sigmoid() ** 2),
    ("recip", lambda v: 1.0 / (v * v + 1.0)),
]


@settings(max_examples=40, deadline=None)
@given(
    ops=st.lists(st.sampled_from(UNARY), min_size=1, max_size=4),
    x=st.floats(-2.0, 2.0),
    y=st.floats(-2.0, 2.0),
)
def test_gradcheck_passes_on_smooth_compositions(ops, x, y):
    def f(a, b):
        v = a * b + a
        for _, op in ops:
            v = op(v)
        return v + b

    res = tools.gradcheck(f, [x, y])
    assert res.ok, res.report()


# ---------------------------------------------------------------------------
# to_dot
# ---------------------------------------------------------------------------
NODE = re.compile(r'^  n(\d+) \[label="\{ (.*) \| data (\S+) \| grad (\S+) \}"')
EDGE = re.compile(r"^  n(\d+) -> n(\d+);$")


def _parse(dot: str):
    nodes = {}
    edges = []
    for line in dot.splitlines():
        if m := NODE.match(line):
            nodes[int(m.group(1))] = (m.group(2), float(m.group(3)), float(m.group(4)))
        elif m := EDGE.match(line):
            edges.append((int(m.group(1)), int(m.group(2))))
    return nodes, edges


def test_to_dot_structure():
    with tm.Graph():
        a = tm.Value(2.0)
        b = tm.Value(-3.0)
        unrelated = a * 100.0  # not an ancestor of d: must not appear
        ab = a * b
        c = ab + b
        d = c.tanh()
        d.backward()
        dot = tools.to_dot(d)
    assert dot.startswith("digraph tinyml {\n") and dot.endswith("}\n")
    nodes, edges = _parse(dot)
    rows = {v._row: v for v in (a, b, ab, c, d)}
    assert set(nodes) == set(rows)
    assert unrelated._row not in nodes
    expected = {(a._row, ab._row), (b._row, ab._row), (ab._row, c._row), (b._row, c._row), (c._row, d._row)}
    assert sorted(edges) == sorted(expected)
    for row, v in rows.items():
        _, data, grad = nodes[row]
        assert data == pytest.approx(v.data, rel=1e-3)
        assert grad == pytest.approx(v.grad, rel=1e-3)
    assert nodes[d._row][0] == "tanh"
    assert nodes[ab._row][0] == "*"
    assert nodes[a._row][0] == "leaf"
    assert "omitted" not in dot


def test_to_dot_labels_constants_and_escapes():
    with tm.Graph():
        x = tm.Value(1.5)
        y = ((x * 2.5) ** 3 - 1.0).leaky_relu(0.2)
        nodes, _ = _parse(tools.to_dot(y))
    labels = sorted(label for label, _, _ in nodes.values())
    assert labels == sorted(["leaf", "* 2.5", "** 3", "+ -1", "leaky_relu 0.2"])


def _chain(n: int) -> tm.Value:
    """x + 1 + 1 + ... (n additions) as a tape filled in bulk, not by n Python calls."""
    g = tm.Graph(capacity=n + 16)
    g.reserve(n + 1, n)
    g.push_leaf(0.0)
    g.op[1 : n + 1] = Op.ADD_C
    g.aux[1 : n + 1] = 1.0
    g.pstart[1 : n + 2] = np.arange(0, n + 1)
    g.pidx[:n] = np.arange(n)
    g.n = n + 1
    return wrap(g, n)


def test_to_dot_caps_large_graphs():
    top = _chain(1000)
    assert top.data == 1000.0
    dot = tools.to_dot(top, max_nodes=50)
    nodes, edges = _parse(dot)
    assert sorted(nodes) == list(range(951, 1001))  # the 50 rows nearest the root
    assert len(edges) == 49
    assert '"... 951 more rows omitted (max_nodes=50)"' in dot
    assert "  omitted -> n951 [style=dashed];" in dot
    assert dot.count("omitted ->") == 1


def test_to_dot_counts_omitted_rows_of_a_wide_graph():
    with tm.Graph():
        xs = [tm.Value(float(i)) for i in range(30)]
        total = sum(x * x for x in xs)  # 30 leaves, 30 squares, 30 additions (the first is 0 + x*x)
        rows = 90
        dot = tools.to_dot(total, max_nodes=10)
    nodes, _ = _parse(dot)
    assert len(nodes) == 10
    assert f"... {rows - 10} more rows omitted" in dot


def test_to_dot_million_row_chain():
    top = _chain(1_000_000)
    dot = tools.to_dot(top)
    nodes, _ = _parse(dot)
    assert len(nodes) == 200
    assert "999801 more rows omitted" in dot


def test_to_dot_bad_use():
    with pytest.raises(TypeError):
        tools.to_dot(1.0)
    with pytest.raises(ValueError, match="max_nodes"):
        tools.to_dot(tm.Value(1.0), max_nodes=0)
    with pytest.raises(ValueError, match="rankdir"):
        tools.to_dot(tm.Value(1.0), rankdir="up")
    with tm.Graph() as g:
        v = tm.Value(1.0)
    g.clear()
    with pytest.raises(RuntimeError, match="freed"):
        tools.to_dot(v)


# ---------------------------------------------------------------------------
# draw_dot
# ---------------------------------------------------------------------------
def test_draw_dot_without_the_package(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "graphviz", None)  # makes `import graphviz` fail
    with pytest.raises(ImportError, match="pip install graphviz"):
        tools.draw_dot(tm.Value(1.0), tmp_path / "g.svg")
    assert not (tmp_path / "g.svg").exists()


def test_draw_dot_needs_a_known_suffix(tmp_path):
    with pytest.raises(ValueError, match="suffix"):
        tools.draw_dot(tm.Value(1.0), tmp_path / "graph.txt")


def test_draw_dot_without_the_program(tmp_path, monkeypatch):
    pytest.importorskip("graphviz")
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` on it
    with pytest.raises(RuntimeError, match="apt install graphviz"):
        tools.draw_dot(tm.Value(1.0), tmp_path / "g.svg")


@pytest.mark.parametrize(("suffix", "magic"), [("svg", b"<svg"), ("png", b"\x89PNG")])
def test_draw_dot_renders(tmp_path, suffix, magic):
    pytest.importorskip("graphviz")
    if shutil.which("dot") is None:
        pytest.skip("the Graphviz `dot` program is not installed")
    with tm.Graph():
        a = tm.Value(2.0)
        y = (a * a).tanh()
        y.backward()
        out = tools.draw_dot(y, tmp_path / f"g.{suffix}")
    content = (tmp_path / f"g.{suffix}").read_bytes()
    assert out == str(tmp_path / f"g.{suffix}")
    assert magic in content[:400]
    if suffix == "svg":
        assert b"tanh" in content
