"""The tape engine: deep graphs, compaction, bounded memory in eager loops, lazy evaluation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyml as tm
from tinyml import Value, kernels

from . import reference as ref
from .programs import apply, mismatches, programs, run


# ---------------------------------------------------------------------------
# Deep graphs: no recursion anywhere
# ---------------------------------------------------------------------------
def test_million_node_chain():
    k = 1.0000001
    steps = 500_000  # two rows per step: a million interior nodes
    with tm.Graph() as g:
        x0 = Value(2.0)
        x = x0
        for _ in range(steps):
            x = x * k + 0.0
        assert len(g) >= 2 * steps + 1
        value = x.data
        x.backward()
        grad = x0.grad
    # x = 2 k^n and dx/dx0 = k^n; a product of n roundings is within n ulps of k^n
    exact = math.exp(steps * math.log(k))
    assert value == pytest.approx(2.0 * exact, rel=1e-9)
    assert grad == pytest.approx(exact, rel=1e-9)
    assert value == 2.0 * grad  # the same products, scaled by an exact power of two


def test_deep_chain_of_unary_ops():
    with tm.Graph():
        a = Value(0.5)
        x = a
        for _ in range(100_000):
            x = x.tanh()
        x.backward()
        got = (x.data, a.grad)
    r = ref.Scalar(0.5)
    y = r
    for _ in range(100_000):
        y = y.tanh()
    y.backward()  # the reference is iterative too
    assert got == pytest.approx((y.data, r.grad), rel=1e-9)


# ---------------------------------------------------------------------------
# Compaction: rows no live Value needs are reclaimed, survivors renumbered
# ---------------------------------------------------------------------------
def garbage(leaves, i):
    """Build and drop a few rows, as a loop body that keeps nothing does."""
    a = leaves[i % len(leaves)]
    _ = ((a * 2.0 + 1.0).tanh() * a - a.exp()).relu()


def test_compaction_keeps_results_and_bounds_the_graph():
    values = [0.3, -1.2, 2.0, 0.0]
    with tm.Graph(capacity=16) as g:
        leaves = [Value(v) for v in values]
        kept = []
        capacities = []
        for step in range(6000):
            garbage(leaves, step)
            if step % 300 == 0 and step < 3000:  # the second half only makes garbage
                a, b = leaves[step % 4], leaves[(step + 1) % 4]
                node = (a * b + a.sigmoid()) / (1.0 + b * b)
                if step % 600 == 0:
                    _ = node.data  # some evaluated before compaction moves them, some not
                kept.append((step, node))
            capacities.append(g.capacity)
        assert g.generation > 0  # compaction did run
        assert capacities[-1] <= 256
        assert capacities[-1] == capacities[len(capacities) // 2]  # stopped growing
        g.collect()
        assert len(g) <= 4 + 6 * len(kept)
        got = []
        for _, node in kept:
            for v in leaves:
                v.zero_grad()
            node.backward()
            got.append((node.data, [v.grad for v in leaves]))
    rleaves = [ref.Scalar(v) for v in values]
    for (step, _), (data, grads) in zip(kept, got):
        a, b = rleaves[step % 4], rleaves[(step + 1) % 4]
        r = (a * b + a.sigmoid()) / (1.0 + b * b)
        r.backward()
        expected = [v.grad if v in (a, b) else 0.0 for v in rleaves]
        assert data == pytest.approx(r.data, rel=1e-14)
        assert grads == pytest.approx(expected, rel=1e-13)


def test_compaction_preserves_accumulated_leaf_grads():
    with tm.Graph(capacity=16) as g:
        a = Value(1.5)
        y = a * a * 3.0  # dy/da = 9
        y.backward()
        generation = g.generation
        for i in range(200):
            garbage([a], i)
        assert g.generation > generation
        assert a.grad == 9.0
        y.backward()
        assert a.grad == 18.0
        assert y.data == 6.75


def test_explicit_collect_returns_freed_rows():
    with tm.Graph() as g:
        a = Value(1.0)
        for i in range(10):
            garbage([a], i)
        before = len(g)
        keep = a * 4.0
        freed = g.collect()
        assert freed == before + 1 - len(g)
        assert len(g) == 2
        assert keep.data == 4.0


def test_collect_keeps_ancestors_of_live_values():
    with tm.Graph() as g:
        a = Value(0.25)
        b = a.exp()
        c = b * b  # keeps b's row alive even when b's handle is dropped
        del b
        g.collect()
        assert len(g) == 3
        c.backward()
        assert (c.data, a.grad) == pytest.approx((math.exp(0.5), 2 * math.exp(0.5)), rel=1e-15)


@settings(max_examples=60, deadline=None)
@given(programs(max_leaves=3, max_ops=12), st.integers(0, 7), st.integers(0, 2**12 - 1))
def test_random_graphs_survive_compaction(prog, garbage_per_step, reads):
    """Build a random program in a tiny graph with garbage between its steps,
    reading some values on the way (so compaction meets partly evaluated tapes)."""
    with tm.Graph(capacity=16) as g:
        nodes = [Value(v) for v in prog.leaves]
        for step, (op, i, j, c) in enumerate(prog.steps):
            for k in range(garbage_per_step):
                garbage(nodes, k)
            nodes.append(apply(op, nodes[i], nodes[j], c))
            if reads >> step & 1:
                _ = nodes[-1].data
        for k in range(garbage_per_step * 5):
            garbage(nodes, k)
        nodes[-1].backward()
        got = [(v.data, v.grad) for v in nodes]
        assert g.capacity <= 256
    rnodes = run(prog, ref.Scalar)
    rnodes[-1].backward()
    assert not mismatches(got, rnodes)


def test_model_survives_compaction():
    with tm.Graph(capacity=16) as g:
        model = tm.MLP(2, [3, 1], seed=1)
        x = [0.4, -0.8]
        before = model(x)[0].data
        gen = g.generation
        for i in range(300):
            garbage(model.parameters(), i)
        assert g.generation > gen
        out = model(x)[0]
        out.backward()
        assert out.data == before
        params = [ref.Scalar(p.data) for p in model.parameters()]
        h = [ref.neuron(params[3 * k : 3 * k + 2], params[3 * k + 2], x, "tanh") for k in range(3)]
        r = ref.neuron(params[9:12], params[12], h, "tanh")
        r.backward()
        assert out.data == pytest.approx(r.data, rel=1e-14)
        assert [p.grad for p in model.parameters()] == pytest.approx([p.grad for p in params], rel=1e-12)


# ---------------------------------------------------------------------------
# Eager loops run in bounded memory with no user call
# ---------------------------------------------------------------------------
XOR_X = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
XOR_Y = [0.0, 1.0, 1.0, 0.0]


def test_eager_xor_loop_keeps_graph_bounded():
    with tm.Graph() as g:
        model = tm.MLP(2, [4, 1], learning_rate=0.1, seed=0)
        capacity_early = None
        sizes = []
        losses = []
        for epoch in range(4000):
            loss = 0.0
            for x, y in zip(XOR_X, XOR_Y):
                loss = loss + (model(x)[0] - y) ** 2
            model.zero_grad()
            loss.backward()
            model.update()
            if epoch % 500 == 0:
                losses.append(loss.data)
            if epoch == 200:
                capacity_early = g.capacity
            sizes.append(len(g))
        assert g.capacity == capacity_early
        assert g.capacity <= 4096
        assert max(sizes) <= g.capacity
        assert g.generation > 10  # compaction, not growth, absorbed 4000 epochs
        assert losses[-1] < losses[0]


def test_forward_only_loop_keeps_graph_bounded():
    with tm.Graph() as g:
        model = tm.MLP(3, [8, 1], seed=2)
        x = np.array([0.1, -0.2, 0.3])
        first = model(x)[0].data
        capacity = None
        for i in range(20_000):
            assert model(x)[0].data == first
            if i == 1000:
                capacity = g.capacity
        assert g.capacity == capacity <= 4096


def test_scalar_loop_keeps_graph_bounded():
    with tm.Graph() as g:
        w = Value(0.5)
        for i in range(30_000):
            loss = (w * float(i % 7) - 1.0) ** 2
            loss.backward()
            if i == 1000:
                capacity = g.capacity
        assert g.capacity == capacity <= 1024
        assert len(g) <= g.capacity


def test_graph_grows_when_everything_is_alive():
    with tm.Graph(capacity=16) as g:
        a = Value(1.0)
        keep = [a * float(i) for i in range(1000)]
        assert g.capacity >= 1001
        assert [v.data for v in keep[:5]] == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert keep[-1].data == 999.0


# ---------------------------------------------------------------------------
# Lazy evaluation has micrograd's eager semantics
# ---------------------------------------------------------------------------
def test_setting_a_leaf_keeps_old_value_in_dependents():
    with tm.Graph():
        a = Value(2.0)
        b = a * 3.0  # built, not yet evaluated
        a.data = 5.0
        assert b.data == 6.0
        c = a * 3.0
        assert c.data == 15.0
        c.backward()
        assert a.grad == 3.0


def test_setting_a_leaf_after_evaluation():
    with tm.Graph():
        a = Value(2.0)
        b = a.exp()
        assert b.data == pytest.approx(math.exp(2.0))
        a.data = 0.0
        assert b.data == pytest.approx(math.exp(2.0))
        assert a.exp().data == 1.0


def test_many_pending_rows_evaluate_once_correctly():
    with tm.Graph() as g:
        a = Value(0.5)
        outs = [a * float(i) for i in range(100)]
        assert g.n_eval < len(g)  # nothing computed yet
        assert outs[50].data == 25.0
        assert g.n_eval == len(g)
        assert [v.data for v in outs] == [0.5 * i for i in range(100)]


def test_backward_evaluates_pending_rows():
    with tm.Graph():
        a = Value(3.0)
        b = (a * a).log()
        b.backward()
        assert a.grad == pytest.approx(2.0 / 3.0, rel=1e-15)
        assert b.data == pytest.approx(math.log(9.0), rel=1e-15)


def test_clear_frees_rows_and_keeps_capacity():
    g = tm.Graph()
    with g:
        vs = [Value(float(i)) * 2.0 for i in range(100)]
        cap = g.capacity
        g.clear()
        assert len(g) == 0 and g.capacity == cap
        with pytest.raises(RuntimeError):
            _ = vs[0].data


# ---------------------------------------------------------------------------
# Checkpoint and rewind
# ---------------------------------------------------------------------------
def test_rewind_frees_the_rows_since_the_checkpoint():
    with tm.Graph() as g:
        a = Value(2.0)
        b = a * 3.0
        mark = g.checkpoint()
        c = b + 1.0
        d = c.tanh()
        assert len(g) == mark[0] + 2
        assert g.rewind(mark)
        assert len(g) == mark[0]
        for freed in (c, d):
            with pytest.raises(RuntimeError, match="freed"):
                _ = freed.data
        assert b.data == 6.0  # rows before the checkpoint are untouched
        e = b * 2.0  # and the freed rows are reused
        assert e._row == mark[0] and e.data == 12.0
        e.backward()
        assert a.grad == 6.0


def test_rewind_refuses_after_a_compaction_and_frees_nothing():
    with tm.Graph(capacity=16) as g:
        keep = Value(1.0)
        mark = g.checkpoint()
        for _ in range(40):  # fills the tape: it compacts (dropped temporaries) and grows
            x = keep * 2.0
        assert g.compactions != mark[1]
        n = len(g)
        assert g.rewind(mark) is False
        assert len(g) == n
        assert x.data == 2.0


def test_a_model_built_after_the_checkpoint_is_freed_by_rewind():
    """Row-number caches (the model's parameter rows) must not outlive a rewind."""
    with tm.Graph() as g:
        mark = g.checkpoint()
        model = tm.MLP(2, [3, 1], seed=0)
        model([1.0, 2.0])[0].backward()
        assert g.rewind(mark)
        c = Value(5.0)  # reuses a freed row
        for use in (lambda: model.update(), lambda: model.zero_grad(), lambda: model([1.0, 2.0])):
            with pytest.raises(RuntimeError, match="freed"):
                use()
        assert c.data == 5.0


def test_a_checkpoint_stays_valid_across_rewinds():
    with tm.Graph() as g:
        a = Value(1.0)
        mark = g.checkpoint()
        for k in range(3):
            b = (a + k).tanh()
            assert b.data == pytest.approx(math.tanh(1.0 + k))
            assert g.rewind(mark)
            assert len(g) == mark[0]


# ---------------------------------------------------------------------------
# Ctrl-C: a compaction is all or nothing
# ---------------------------------------------------------------------------
def _interrupt_after(real):
    """``real``, followed by a SIGINT to this process (as if Ctrl-C came then)."""
    import os
    import signal

    def call(*args):
        result = real(*args)
        os.kill(os.getpid(), signal.SIGINT)
        return result

    return call


def test_ctrl_c_during_a_compaction_is_delivered_after_it(monkeypatch):
    from tinyml import graph as graph_module

    with tm.Graph() as g:
        kept = [tm.Value(float(i)) * 2.0 for i in range(50)]
        for _ in range(200):
            tm.Value(7.0) + 1.0  # garbage rows, freed by the compaction
        monkeypatch.setattr(graph_module.kernels, "compact", _interrupt_after(graph_module.kernels.compact))
        with pytest.raises(KeyboardInterrupt):
            g.collect()
        monkeypatch.undo()
        assert [v.data for v in kept] == [2.0 * i for i in range(50)]
        assert len(g) == 100  # the 50 leaves and their products, nothing else
        assert (kept[3] + kept[4]).data == 14.0


def _signal_at_line(target_file: str, at: int):
    """A ``sys.settrace`` function that, at the ``at``-th line executed in
    ``target_file`` (0-based), acts as if SIGINT arrived there: it calls the
    current SIGINT handler, which raises KeyboardInterrupt, or, inside
    ``hold_interrupts``, only notes it. ``seen[0]`` counts the lines."""
    import signal

    seen = [0]

    def local(frame, event, arg):
        if event == "line":
            seen[0] += 1
            if seen[0] - 1 == at:
                handler = signal.getsignal(signal.SIGINT)
                handler(signal.SIGINT, frame)
        return local

    def tracer(frame, event, arg):
        return local if frame.f_code.co_filename == target_file else None

    return tracer, seen


def _tape(g, held):
    """The tape as a reader sees it (rows < n, the handles' rows) plus the free rows' state."""
    n, e = g.n, g.entries
    free_clean = not (g.op[n:].any() or g.aux[n:].any() or g.grad[n:].any())
    return (
        n,
        e,
        g.n_eval,
        g.op[:n].tolist(),
        g.pstart[: n + 1].tolist(),
        g.pidx[:e].tolist(),
        g.aux[:n].tolist(),
        g.data[: g.n_eval, 0].tolist(),
        [v._row for v in held],
        free_clean,
    )


def _interrupt_setup():
    """A small graph with live leaves p=4, q=8, a constant row, and garbage to compact."""
    g = tm.Graph(16)
    with g:
        p, q = Value(4.0), Value(8.0)
        c = p * 0.5
        for _ in range(3):
            (p + q).tanh()  # garbage rows
        t = tm.Tensor([[1.0, 2.0], [3.0, 4.0]])
    return g, {"p": p, "q": q, "c": c, "t": t}


_MUTATIONS = {
    "push_leaf": lambda g, h: g.push_leaf(5.0),
    "push": lambda g, h: g.push(int(tm.ops.Op.MUL), (h["p"]._row, h["q"]._row)),
    "push_aux": lambda g, h: g.push(int(tm.ops.Op.MUL), (h["p"]._row,), 3.0),
    "push_leaves": lambda g, h: g.push_leaves(np.array([1.5, 2.5, 3.5])),
    "push_many": lambda g, h: g.push_many(
        int(tm.ops.Op.MUL),
        np.array([[h["p"]._row, h["q"]._row], [h["q"]._row, h["c"]._row]], np.int64),
        np.array([2.0, 0.0]),
    ),
    "reserve_grow": lambda g, h: g.reserve(40, 90),
    "collect": lambda g, h: g.collect(),
    "clear": lambda g, h: g.clear(),
    "rewind": lambda g, h: g.rewind(h["mark"]),
    "tensor_op": lambda g, h: (h["t"] * h["t"] + 1.0).sum(),
}


@pytest.mark.parametrize("name", sorted(_MUTATIONS))
def test_ctrl_c_at_any_line_of_a_tape_mutation_leaves_it_before_or_after(name):
    """Every line of graph.py that the mutation runs is, in turn, where SIGINT lands.

    The tape must then be exactly as before the call or exactly as after it
    (``tensor_op`` is several such calls), and still compute right:
    (p * q + 1) with p=4, q=8 is 33, d/dp = 8, d/dq = 4.
    """
    import sys

    from tinyml import graph as graph_module

    def prepared():
        g, h = _interrupt_setup()
        if name == "rewind":
            h["mark"] = g.checkpoint()
            with g:
                (h["p"] * h["q"]).exp()
        return g, h

    def held(h):
        return [h["p"], h["q"], h["c"], *h["t"].flat_values()]

    g, h = prepared()
    before = _tape(g, held(h))
    tracer, seen = _signal_at_line(graph_module.__file__, at=-1)
    sys.settrace(tracer)
    try:
        _MUTATIONS[name](g, h)
    finally:
        sys.settrace(None)
    after = _tape(g, held(h))
    assert before != after or name == "reserve_grow"
    assert seen[0] > 2

    for at in range(seen[0]):
        g, h = prepared()
        tracer, _ = _signal_at_line(graph_module.__file__, at)
        sys.settrace(tracer)
        try:
            _MUTATIONS[name](g, h)
        except KeyboardInterrupt:
            pass
        finally:
            sys.settrace(None)
        state = _tape(g, held(h))
        if name != "tensor_op":  # several whole mutations (a compaction, two appends): only check results
            assert state in (before, after), f"interrupted at line event {at} of {name}: a state in between"
        with g:
            p, q = (h["p"], h["q"]) if h["p"]._row >= 0 else (Value(4.0), Value(8.0))
            y = p * q + 1.0
            y.backward()
            assert (y.data, p.grad, q.grad) == (33.0, 8.0, 4.0)
            if h["t"].flat_values()[0]._row >= 0:
                assert (h["t"] * 2.0).sum().data == 20.0
            assert tm.Value(7.0).data == 7.0 and (Value(2.0) * 3.0).data == 6.0


def test_one_graph_entered_from_two_threads_keeps_each_threads_own_default():
    import threading

    shared = tm.Graph()
    entered = threading.Barrier(2)
    seen = {}

    def work(name):
        before = tm.current_graph()
        with shared:
            entered.wait()  # both threads are inside `with shared:` now
            tm.Value(1.0)
        entered.wait()
        after = tm.current_graph()
        seen[name] = before is after

    threads = [threading.Thread(target=work, args=(n,)) for n in "AB"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"A": True, "B": True}
    with pytest.raises(RuntimeError, match="without a matching __enter__"):
        tm.Graph().__exit__(None, None, None)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: tm.Graph(-5), ValueError, ">= 0"),
        (lambda: tm.Graph(1.5), TypeError, "int"),
        (lambda: tm.Graph(True), TypeError, "int"),
        (lambda: tm.Value(1.0, graph="g"), TypeError, "tm.Graph"),
        (lambda: tm.compile(3.0, []), TypeError, "outputs"),
    ],
)
def test_misuse_of_constructors_raises_clearly(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_hold_interrupts_ends_the_process_when_sigint_has_its_default_action():
    import subprocess
    import sys

    code = (
        "import os, signal\n"
        "from tinyml.graph import hold_interrupts\n"
        "signal.signal(signal.SIGINT, signal.SIG_DFL)\n"
        "with hold_interrupts():\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "print('survived')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "survived" not in done.stdout
    assert done.returncode != 0


def test_ctrl_c_while_the_tape_grows_leaves_it_whole(monkeypatch):
    from tinyml import graph as graph_module

    real = graph_module._resized
    calls = []

    def resized_then_interrupt(a, length):
        calls.append(1)
        out = real(a, length)
        if len(calls) == 2:  # in the middle of growing the row arrays
            import os
            import signal

            os.kill(os.getpid(), signal.SIGINT)
        return out

    with tm.Graph(16) as g:
        kept = [tm.Value(float(i)) for i in range(16)]
        monkeypatch.setattr(graph_module, "_resized", resized_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            g.reserve(40, 0)
        monkeypatch.undo()
        sizes = {g.op.shape[0], g.aux.shape[0], g.data.shape[0], g.mark.shape[0], g.pstart.shape[0] - 1}
        assert len(sizes) == 1
        more = [tm.Value(1.0) * 2.0 for _ in range(40)]
        assert [v.data for v in kept] == [float(i) for i in range(16)] and more[-1].data == 2.0


def test_compile_takes_any_iterable_of_outputs():
    with tm.Graph():
        x = tm.placeholders(1)[0]
        y = x * 2.0
        program = tm.compile((v for v in [y, x]), [x])
        assert program.run(np.array([[3.0]])).tolist() == [[6.0, 3.0]]


def test_a_compile_is_announced_once_on_stderr(monkeypatch, capsys):
    """With no cache entry for this machine, the first use of an entry kernel says so, once."""

    class Uncompiled:
        signatures: list = []

    monkeypatch.setattr(kernels, "_unchecked", {"forward", "train_epochs"})
    monkeypatch.setattr(kernels, "notice_pending", True)
    monkeypatch.setattr(kernels, "forward", Uncompiled())
    monkeypatch.setattr(kernels, "train_epochs", Uncompiled())
    monkeypatch.setattr(kernels, "_cached_here", lambda d: False)
    kernels.notice_compile("forward")
    kernels.notice_compile("train_epochs")
    kernels.notice_compile("forward")
    assert capsys.readouterr().err == kernels.COMPILING + "\n"
    assert kernels.notice_pending is False


def test_no_announcement_when_the_cache_has_the_kernel(monkeypatch, capsys):
    class Uncompiled:
        signatures: list = []

    monkeypatch.setattr(kernels, "_unchecked", {"predict_batch"})
    monkeypatch.setattr(kernels, "notice_pending", True)
    monkeypatch.setattr(kernels, "predict_batch", Uncompiled())
    monkeypatch.setattr(kernels, "_cached_here", lambda d: True)
    kernels.notice_compile("predict_batch")
    assert capsys.readouterr().err == ""
    assert kernels.notice_pending is False


def test_the_cache_probe_finds_a_kernel_this_process_has_used():
    with tm.Graph():
        assert tm.Value(0.5).tanh().data == pytest.approx(math.tanh(0.5))
    assert kernels._cached_here(kernels.forward)  # loaded from or written to the cache


def test_the_hot_kernels_count_no_references():
    # Numba brackets every array a kernel uses with atomic reference counts when it
    # cannot prove them redundant; on XOR that was half of each epoch (see
    # kernels.borrowing_kernel). These kernels only borrow arrays: NRT off.
    hot = ["forward", "backward", "train_epochs", "predict_batch", "optimizer_update", "fill_noise"]
    for name in hot:
        options = getattr(kernels, name).targetoptions
        assert options.get("_nrt") is False, name
    # and the generic ones that allocate keep it (a leak or a crash otherwise)
    assert kernels.eager_gradients.targetoptions.get("_nrt", True) is not False
