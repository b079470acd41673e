"""``tm.Value``: the scalar autograd API of API.md "Scalar autograd"."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

import tinyml as tm
from tinyml import Value

from . import reference as ref


@pytest.fixture(autouse=True)
def own_graph():
    """Each test builds in a fresh graph, so clearing or compacting stays local."""
    with tm.Graph() as g:
        yield g


def grads(*leaves):
    return [v.grad for v in leaves]


# ---------------------------------------------------------------------------
# Construction and storage
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "x, expected",
    [
        (2, 2.0),
        (-7, -7.0),
        (2.5, 2.5),
        (np.float64(1.25), 1.25),
        (np.float32(0.1), float(np.float32(0.1))),
        (np.int64(3), 3.0),
        (np.int8(-4), -4.0),
        (np.uint16(9), 9.0),
        (Fraction(1, 4), 0.25),
        (10**20, 1e20),
    ],
)
def test_numbers_are_stored_as_float64(x, expected):
    v = Value(x)
    assert type(v.data) is float
    assert v.data == expected
    assert type(v.grad) is float and v.grad == 0.0


def test_big_int_is_rounded_like_float():
    assert Value(2**53 + 1).data == float(2**53 + 1)


@pytest.mark.parametrize("bad", ["abc", None, [1.0], (1.0,), 1j, {"x": 1}, b"1"])
def test_non_numeric_leaf_is_type_error(bad):
    with pytest.raises(TypeError):
        Value(bad)


def test_repr_shows_data_and_grad():
    assert repr(Value(2.0)) == "Value(data=2.0, grad=0.0)"
    a = Value(-3)
    b = a * a
    b.backward()
    assert repr(a) == "Value(data=-3.0, grad=-6.0)"
    assert repr(b) == "Value(data=9.0, grad=1.0)"


def test_grad_before_backward_is_zero():
    a = Value(3.0)
    b = a.tanh() * 2.0
    assert a.grad == 0.0
    assert b.grad == 0.0


# ---------------------------------------------------------------------------
# Operators, with numbers on either side
# ---------------------------------------------------------------------------
NUMBER_KINDS = [2.0, 2, np.float64(2.0), np.float32(2.0), np.int64(2), np.int32(2)]


@pytest.mark.parametrize("k", NUMBER_KINDS, ids=lambda k: type(k).__name__)
def test_numbers_on_either_side(k):
    a = Value(3.0)
    cases = [
        (a + k, 5.0, 1.0),
        (k + a, 5.0, 1.0),
        (a - k, 1.0, 1.0),
        (k - a, -1.0, -1.0),
        (a * k, 6.0, 2.0),
        (k * a, 6.0, 2.0),
        (a / k, 1.5, 0.5),
        (k / a, 2.0 / 3.0, -2.0 / 9.0),
        (a**k, 9.0, 6.0),
        (k**a, 8.0, 8.0 * math.log(2.0)),
    ]
    for out, value, grad in cases:
        assert type(out) is Value, type(out)
        a.zero_grad()
        out.backward()
        assert out.data == pytest.approx(value, rel=1e-15)
        assert a.grad == pytest.approx(grad, rel=1e-15)


def test_numpy_scalar_on_the_left_gives_a_value_not_an_array():
    a = Value(3.0)
    out = np.float64(2.0) * a
    assert type(out) is Value
    out = np.float64(1.0) - a
    assert type(out) is Value and out.data == -2.0


def test_binary_ops_between_values():
    a, b = Value(3.0), Value(-4.0)
    for out, value, da, db in [
        (a + b, -1.0, 1.0, 1.0),
        (a - b, 7.0, 1.0, -1.0),
        (a * b, -12.0, -4.0, 3.0),
        (a / b, -0.75, -0.25, -3.0 / 16.0),
    ]:
        a.zero_grad()
        b.zero_grad()
        out.backward()
        assert (out.data, a.grad, b.grad) == pytest.approx((value, da, db), rel=1e-15)


def test_unary_minus_and_abs():
    a = Value(-2.5)
    n = -a
    assert n.data == 2.5
    n.backward()
    assert a.grad == -1.0
    a.zero_grad()
    m = abs(a)
    m.backward()
    assert (m.data, a.grad) == (2.5, -1.0)
    a.zero_grad()
    m = a.abs()
    m.backward()
    assert (m.data, a.grad) == (2.5, -1.0)


@pytest.mark.parametrize("exponent", [2, 3, -1, 0.5, 2.5, np.float64(1.5), np.int64(2)])
def test_pow_with_number_exponent(exponent):
    a = Value(1.7)
    b = a**exponent
    b.backward()
    c = float(exponent)
    assert b.data == pytest.approx(1.7**c, rel=1e-15)
    assert a.grad == pytest.approx(c * 1.7 ** (c - 1), rel=1e-14)


def test_pow_with_value_exponent():
    a, b = Value(1.7), Value(-0.6)
    c = a**b
    c.backward()
    assert c.data == pytest.approx(1.7**-0.6, rel=1e-15)
    assert a.grad == pytest.approx(-0.6 * 1.7**-1.6, rel=1e-14)
    assert b.grad == pytest.approx(1.7**-0.6 * math.log(1.7), rel=1e-14)


def test_sqrt():
    a = Value(2.25)
    b = a.sqrt()
    b.backward()
    assert (b.data, a.grad) == pytest.approx((1.5, 1.0 / 3.0), rel=1e-15)


@pytest.mark.parametrize(
    "method, x",
    [
        ("relu", 1.5),
        ("relu", -1.5),
        ("tanh", 0.3),
        ("sigmoid", -0.8),
        ("sigm", 0.8),
        ("exp", 1.2),
        ("log", 3.0),
        ("leaky_relu", -2.0),
        ("gelu", 0.6),
        ("silu", -1.1),
        ("swish", 1.1),
        ("softplus", 0.4),
        ("abs", -0.9),
    ],
)
def test_methods_match_reference(method, x):
    a = Value(x)
    b = getattr(a, method)()
    b.backward()
    r = ref.Scalar(x)
    s = getattr(r, method)()
    s.backward()
    assert b.data == pytest.approx(s.data, rel=1e-14, abs=1e-300)
    assert a.grad == pytest.approx(r.grad, rel=1e-13, abs=1e-300)


def test_gelu_approximations_differ_and_bad_name_is_rejected():
    a = Value(1.0)
    exact, approx = a.gelu(), a.gelu(approximate="tanh")
    assert exact.data == pytest.approx(ref.Scalar(1.0).gelu().data, rel=1e-15)
    assert approx.data == pytest.approx(ref.Scalar(1.0).gelu("tanh").data, rel=1e-15)
    assert exact.data != approx.data
    with pytest.raises(ValueError, match="approximate"):
        a.gelu(approximate="fast")


def test_leaky_relu_slope():
    a = Value(-2.0)
    b = a.leaky_relu(0.2)
    b.backward()
    assert (b.data, a.grad) == pytest.approx((-0.4, 0.2), rel=1e-15)
    c = Value(-2.0).leaky_relu()  # PyTorch's default slope
    assert c.data == pytest.approx(-0.02, rel=1e-15)


def test_comparisons_are_not_graph_building():
    a, b = Value(1.0), Value(2.0)
    # identity semantics (micrograd's); never a Value
    assert (a == b) is False
    assert (a == a) is True


# ---------------------------------------------------------------------------
# Seed-style unbound calls (the Rust original's API)
# ---------------------------------------------------------------------------
def test_unbound_static_calls():
    a, b = Value(2.0), Value(-3.0)
    assert Value.add(a, b).data == -1.0
    assert Value.sub(a, b).data == 5.0
    assert Value.mul(a, b).data == -6.0
    assert Value.div(a, b).data == pytest.approx(-2.0 / 3.0, rel=1e-15)
    assert Value.pow(a, 2.0).data == 4.0
    assert Value.pow(a, b).data == pytest.approx(0.125, rel=1e-15)
    assert Value.relu(b).data == 0.0
    assert Value.tanh(a).data == pytest.approx(math.tanh(2.0), rel=1e-15)
    assert Value.sigm(Value(0.0)).data == 0.5
    assert Value.sigmoid(a).data == pytest.approx(ref.sigmoid(2.0), rel=1e-15)
    assert Value.add(a, 1.5).data == 3.5
    assert Value.mul(a, 4).data == 8.0


def test_unbound_backward():
    a, b = Value(2.0), Value(-3.0)
    c = Value.add(Value.mul(a, b), Value.pow(a, 2.0))  # a*b + a^2
    Value.backward(c)
    assert (c.data, a.grad, b.grad) == (-2.0, -3.0 + 4.0, 2.0)


# ---------------------------------------------------------------------------
# Gradient accumulation
# ---------------------------------------------------------------------------
def test_node_used_twice_gets_both_contributions():
    a = Value(3.0)
    b = a + a
    b.backward()
    assert a.grad == 2.0
    a.zero_grad()
    c = a * a
    c.backward()
    assert a.grad == 6.0


def test_interior_node_used_twice():
    a = Value(-1.5)
    h = a.tanh()
    out = h * h + h
    out.backward()
    t = math.tanh(-1.5)
    assert h.grad == pytest.approx(2 * t + 1, rel=1e-15)
    assert a.grad == pytest.approx((2 * t + 1) * (1 - t * t), rel=1e-14)


def test_backward_twice_doubles_leaf_grads():
    a, b = Value(1.5), Value(-0.5)
    c = (a * b + a.exp()).tanh() * b
    c.backward()
    first = grads(a, b)
    c.backward()
    assert grads(a, b) == pytest.approx([2 * g for g in first], rel=1e-15)


def test_backward_twice_doubles_leaf_grads_exactly():
    """API.md: the second backward adds the same leaf gradients again, exactly.

    PyTorch sums a leaf's contributions first, then adds the sum to .grad, so
    its second call gives exactly 2 * first. Adding each contribution straight
    into .grad makes the result depend on what .grad held before.
    """
    x = Value(1.0)
    y = x * 0.1 + x * 0.3 + x * 0.2
    y.backward()
    first = x.grad
    y.backward()
    assert x.grad == 2 * first


def test_interior_grad_is_reset_per_backward():
    a = Value(2.0)
    h = a * 3.0
    out = h * h
    out.backward()
    out.backward()
    assert h.grad == 2 * 6.0  # d out / d h, not accumulated
    assert a.grad == 2 * (2 * 6.0 * 3.0)
    assert out.grad == 1.0


def test_backward_on_a_leaf():
    a = Value(5.0)
    a.backward()
    assert a.grad == 1.0


def test_zero_grad_on_a_value():
    a = Value(2.0)
    (a * a).backward()
    a.zero_grad()
    assert a.grad == 0.0


def test_unrelated_leaf_not_touched():
    a, b = Value(1.0), Value(2.0)
    c = a * 2.0
    b_use = b * 3.0
    b_use.backward()
    c.backward()
    assert (a.grad, b.grad) == (2.0, 3.0)


def test_rows_outside_the_root_ancestry_are_not_touched():
    a = Value(0.0)
    bad = a.log() * 0.0  # NaN, but not an ancestor of the root
    root = a * 2.0
    root.backward()
    assert a.grad == 2.0
    assert bad.grad == 0.0


def test_interior_grad_holds_latest_pass_that_reached_it():
    a = Value(1.0)
    h = a * 2.0
    u = h * 3.0
    v = a * 5.0
    u.backward()
    v.backward()  # does not reach h
    assert h.grad == 3.0
    assert a.grad == 6.0 + 5.0


def test_backward_of_second_root_keeps_leaf_sum():
    a = Value(2.0)
    u = a * a
    v = a * 10.0
    u.backward()
    v.backward()
    assert a.grad == 4.0 + 10.0


# ---------------------------------------------------------------------------
# IEEE edge cases: never a crash, never a Python exception
# ---------------------------------------------------------------------------
def test_log_zero_is_minus_inf():
    a = Value(0.0)
    b = a.log()
    b.backward()
    assert b.data == -math.inf
    assert a.grad == math.inf


def test_log_negative_is_nan():
    assert math.isnan(Value(-1.0).log().data)


def test_divide_by_zero_is_inf():
    a = Value(0.0)
    assert (1.0 / a).data == math.inf
    assert (-1.0 / a).data == -math.inf
    assert (Value(1.0) / a).data == math.inf
    assert (Value(2.0) / 0.0).data == math.inf
    assert math.isnan((a / a).data)


def test_exp_overflow_is_inf():
    a = Value(1000.0)
    b = a.exp()
    b.backward()
    assert b.data == math.inf and a.grad == math.inf
    assert Value(-1000.0).exp().data == 0.0


def test_pow_overflow_and_zero_base():
    assert (Value(10.0) ** 400).data == math.inf
    assert (Value(0.0) ** -1).data == math.inf
    assert math.isnan((Value(-2.0) ** 0.5).data)


@pytest.mark.parametrize("x, expected", [(1000.0, 1.0), (-1000.0, 0.0), (0.0, 0.5)])
def test_sigmoid_saturates_exactly_with_finite_grad(x, expected):
    a = Value(x)
    s = a.sigmoid()
    s.backward()
    assert s.data == expected
    assert math.isfinite(a.grad)
    assert a.grad == (0.25 if x == 0.0 else 0.0)


@pytest.mark.parametrize("x", [1000.0, -1000.0])
def test_tanh_saturates(x):
    a = Value(x)
    t = a.tanh()
    t.backward()
    assert t.data == math.copysign(1.0, x)
    assert a.grad == 0.0


def test_softplus_is_finite_for_large_inputs():
    a = Value(1000.0)
    s = a.softplus()
    s.backward()
    assert (s.data, a.grad) == (1000.0, 1.0)
    b = Value(-1000.0)
    s = b.softplus()
    s.backward()
    assert (s.data, b.grad) == (0.0, 0.0)


def test_relu_grad_at_zero_is_zero():
    a = Value(0.0)
    r = a.relu()
    r.backward()
    assert (r.data, a.grad) == (0.0, 0.0)


def test_abs_grad_at_zero_is_zero():
    a = Value(0.0)
    r = abs(a)
    r.backward()
    assert (r.data, a.grad) == (0.0, 0.0)


def test_nan_propagates():
    a = Value(math.nan)
    b = (a * 2.0 + 1.0).tanh()
    b.backward()
    assert math.isnan(b.data) and math.isnan(a.grad)


# ---------------------------------------------------------------------------
# Bad use: clear Python exceptions
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["x", None, [1.0], 1j, object()])
def test_non_numeric_operand_is_type_error(bad):
    a = Value(1.0)
    for build in (
        lambda: a + bad,
        lambda: bad + a,
        lambda: a - bad,
        lambda: bad - a,
        lambda: a * bad,
        lambda: a / bad,
        lambda: bad / a,
        lambda: a**bad,
        lambda: Value.add(a, bad),
    ):
        with pytest.raises(TypeError):
            build()


def test_type_error_names_the_operand():
    with pytest.raises(TypeError, match="str"):
        Value(1.0) + "x"


def test_setting_data_to_a_string_is_type_error():
    a = Value(1.0)
    with pytest.raises(TypeError):
        a.data = "abc"
    assert a.data == 1.0


def test_values_of_two_graphs_cannot_be_combined():
    a = Value(1.0)
    with tm.Graph():
        b = Value(2.0)
    for build in (lambda: a + b, lambda: b * a, lambda: a**b, lambda: Value.sub(a, b)):
        with pytest.raises(ValueError, match="graph"):
            build()


def test_graph_context_is_restored():
    outer = tm.current_graph()
    with tm.Graph() as inner:
        assert tm.current_graph() is inner
        assert Value(1.0).graph is inner
    assert tm.current_graph() is outer


def test_freed_value_raises_clearly(own_graph):
    a = Value(2.0)
    b = a * 3.0
    own_graph.clear()
    for use in (
        lambda: a.data,
        lambda: b.grad,
        lambda: a + 1.0,
        lambda: b.backward(),
        lambda: b.tanh(),
        lambda: Value(1.0) * a,
        lambda: a.zero_grad(),
        lambda: setattr(a, "data", 1.0),
    ):
        with pytest.raises(RuntimeError, match="freed"):
            use()
    assert "freed" in repr(a)


def test_graph_usable_after_clear(own_graph):
    Value(1.0) * 2.0
    own_graph.clear()
    a = Value(3.0)
    b = a * a
    b.backward()
    assert (b.data, a.grad) == (9.0, 6.0)


# ---------------------------------------------------------------------------
# .data is writable on leaves only
# ---------------------------------------------------------------------------
def test_set_data_on_leaf():
    a = Value(1.0)
    a.data = 4
    assert a.data == 4.0 and type(a.data) is float
    b = a * a
    b.backward()
    assert (b.data, a.grad) == (16.0, 8.0)


def test_set_data_on_interior_is_attribute_error():
    a = Value(1.0)
    b = a + 1.0
    with pytest.raises(AttributeError):
        b.data = 5.0
    assert b.data == 2.0


# ---------------------------------------------------------------------------
# micrograd README example, written out here
# ---------------------------------------------------------------------------
def readme_expression(make):
    a = make(-4.0)
    b = make(2.0)
    c = a + b
    d = a * b + b**3
    c += c + 1
    c += 1 + c + (-a)
    d += d * 2 + (b + a).relu()
    d += 3 * d + (b - a).relu()
    e = c - d
    f = e**2
    g = f / 2.0
    g += 10.0 / f
    return a, b, g


def test_micrograd_readme_example():
    a, b, g = readme_expression(Value)
    g.backward()
    assert round(g.data, 4) == 24.7041
    assert round(a.grad, 4) == 138.8338
    assert round(b.grad, 4) == 645.5773
    ra, rb, rg = readme_expression(ref.Scalar)
    rg.backward()
    assert (g.data, a.grad, b.grad) == pytest.approx((rg.data, ra.grad, rb.grad), rel=1e-13)


# ---------------------------------------------------------------------------
# The API.md example
# ---------------------------------------------------------------------------
def api_example(make):
    a = make(2.0)
    b = make(-3.0)
    c = a * b + b**2 - 1.0 / a
    d = (c.tanh() + c.relu() + c.sigmoid() + c.exp()).log()
    return a, b, d


def test_api_md_example():
    a, b, d = api_example(Value)
    d.backward()
    ra, rb, rd = api_example(ref.Scalar)
    rd.backward()
    assert (d.data, a.grad, b.grad) == pytest.approx((rd.data, ra.grad, rb.grad), rel=1e-13)
    assert type(a.data) is float and type(a.grad) is float


def test_item_and_float():
    a = Value(2.5) * 2
    assert a.item() == 5.0 and float(a) == 5.0


# ---------------------------------------------------------------------------
# The operators' own appends (value.py writes rows without Graph.push)
# ---------------------------------------------------------------------------
_OPERATOR_APPENDS = {
    "binary": lambda g, h: h["p"] * h["q"],
    "constant": lambda g, h: h["p"] + 3.0,
    "reflected": lambda g, h: 2 / h["q"],
    "unary": lambda g, h: h["p"].relu(),
    "leaf": lambda g, h: Value(5.0, g),
    "when_full": lambda g, h: [h["p"] * h["q"] for _ in range(2 * g.capacity)][-1],
}


@pytest.mark.parametrize("name", sorted(_OPERATOR_APPENDS))
def test_ctrl_c_at_any_line_of_an_operator_leaves_the_tape_before_or_after(name):
    """As the graph.py test of the same name, for value.py's lines: SIGINT lands on
    each line an operator runs in turn; the tape is then exactly as before or as
    after (``when_full`` compacts on the way: results only), and still computes right."""
    import sys

    from tinyml import value as value_module

    from .test_engine import _interrupt_setup, _signal_at_line, _tape

    def held(h):
        return [h["p"], h["q"], h["c"], *h["t"].flat_values()]

    g, h = _interrupt_setup()
    before = _tape(g, held(h))
    tracer, seen = _signal_at_line(value_module.__file__, at=-1)
    sys.settrace(tracer)
    try:
        _OPERATOR_APPENDS[name](g, h)
    finally:
        sys.settrace(None)
    after = _tape(g, held(h))
    assert before != after and seen[0] > 2
    for at in range(min(seen[0], 400)):
        g, h = _interrupt_setup()
        tracer, _ = _signal_at_line(value_module.__file__, at)
        sys.settrace(tracer)
        try:
            _OPERATOR_APPENDS[name](g, h)
        except KeyboardInterrupt:
            pass
        finally:
            sys.settrace(None)
        if name != "when_full":
            assert _tape(g, held(h)) in (before, after), f"interrupted at line event {at} of {name}"
        with g:
            p, q = h["p"], h["q"]
            y = p * q + 1.0
            y.backward()
            assert (y.data, p.grad, q.grad) == (33.0, 8.0, 4.0)
            assert (h["t"] * 2.0).sum().data == 20.0
            assert (2 / q).data == 0.25 and Value(7.0).data == 7.0


def test_compaction_keeps_values_held_anywhere_and_frees_dropped_ones(own_graph):
    """Handles are found live by their reference count: held in a dict, a closure or a
    tuple they survive; dropped, or held only by garbage cycles (after gc), they go."""
    import gc

    a = Value(3.0)
    in_dict = {"x": a * 2.0}
    in_tuple = (a + 1.0,)
    closure = (lambda hidden: lambda: hidden)(a.exp())  # held by a closure cell only
    cycle = [a * 5.0]
    cycle.append(cycle)  # a garbage cycle once dropped
    del cycle
    for _ in range(50):
        a * 7.0  # dropped at once
    gc.collect()
    own_graph.collect()
    assert len(own_graph) == 4  # a and the three held rows
    assert (in_dict["x"].data, in_tuple[0].data, closure().data) == (6.0, 4.0, math.exp(3.0))


def test_copying_handles_in_a_loop_keeps_their_list_bounded(own_graph):
    import copy

    a = Value(1.5)
    for _ in range(20_000):
        copy.copy(a)  # a handle without a row: no compaction comes, the list is pruned
    assert len(own_graph._handles) < 3_000
    assert copy.copy(a).data == 1.5 and len(own_graph) == 1


def test_a_dropped_temporary_is_freed_within_a_few_hundred_rows_without_the_cycle_collector():
    """The graph lists every handle it makes; an unreferenced one must not wait for a
    compaction (here none comes: the graph is large) nor for Python's cycle collector
    (disabled here): the operators prune the list every few hundred rows."""
    import gc
    import weakref

    from tinyml.graph import _PRUNE_EVERY

    g = tm.Graph(1 << 16)
    enabled = gc.isenabled()
    gc.disable()
    try:
        with g:
            a = Value(3.0)
            dropped = weakref.ref(a * 2.0)
            kept = a + 1.0
            for _ in range(_PRUNE_EVERY + 1):
                a * 7.0
            assert dropped() is None
            assert len(g._handles) <= _PRUNE_EVERY + 2
            assert g.compactions == 0 and len(g) == _PRUNE_EVERY + 4
            assert kept.data == 4.0
            g.collect()  # rows renumbered and the count of rows lowered: the pruning keeps pace
            dropped = weakref.ref(a * 2.0)
            for _ in range(_PRUNE_EVERY + 1):
                a * 7.0
            assert dropped() is None and kept.data == 4.0
    finally:
        if enabled:
            gc.enable()


@pytest.mark.parametrize(
    ("make", "want", "want_grad"),
    [(lambda a, b: a * b, -10.0, 5.0), (lambda a, b: a + 2.0, 0.0, 1.0), (lambda a, b: a.relu(), 0.0, 0.0)],
)
def test_an_operator_makes_room_when_parent_entries_run_out_before_rows(make, want, want_grad):
    """An n-ary row can take the last parent entries while rows remain: the next
    operator's write then falls off the entries array, and it must make room
    (here: grow, as every row is held) and append its row right."""
    g = tm.Graph(64)
    with g:
        a, b = Value(-2.0), Value(5.0)
        xs = [Value(float(i)) for i in range(8)]  # sum 28
        free = g.pidx.shape[0] - g.entries
        g.reserve(1, free)
        parents = [xs[k % 8]._row for k in range(free - free % 8)]
        big = tm.value.wrap(g, g.push(int(tm.ops.Op.SUM), parents))
        entries_cap = g.pidx.shape[0]
        assert g.entries > entries_cap - 2 and g.n < g.capacity
        y = make(a, b)
        assert g.pidx.shape[0] > entries_cap  # the room came from the slow path
        assert y.data == want and big.data == 28.0 * (len(parents) // 8)
        y.backward()
        assert a.grad == want_grad


def test_a_freed_handle_still_held_survives_compactions(own_graph):
    a = Value(2.0)
    mark = own_graph.checkpoint()
    stale = a * 3.0
    assert own_graph.rewind(mark)
    for _ in range(3):
        own_graph.collect()
    with pytest.raises(RuntimeError, match="freed"):
        stale + 1.0
    assert (a * 4.0).data == 8.0


def test_a_dropped_graph_is_freed_by_the_cycle_collector():
    """A Graph and the Values it lists refer to each other: dropped, gc frees them."""
    import gc
    import weakref

    g = tm.Graph()
    with g:
        x = (Value(1.0) * 2.0).relu()
        assert x.data == 2.0
    ref = weakref.ref(g)
    del g, x
    gc.collect()
    assert ref() is None
