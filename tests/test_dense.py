"""Dense blocks (tinyml/dense.py, "Dense blocks" in tinyml/kernels.py): a program's layers
run as blocks in ``fit``; the row-by-row sweeps are the definition they must equal.

References: the row path itself (``program.dense_blocks = False``), bit for bit up to 4
lanes and to rounding from 8 on; and the float64 NumPy MLP of tests/train_helpers.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import tinyml as tm
from tinyml import dense, kernels

from .train_helpers import XOR_X, XOR_Y, NumpyMLP, params_of

CLOSE = {"rtol": 1e-12, "atol": 1e-13}


def program_of(model, loss):
    return next(p for key, (p, _) in model._programs.items() if key[0] == loss)


def fit_both(make, X, Y, epochs, **kw):
    """Fit a fresh model twice, with the blocks and with rows only: [(losses, params), ...]."""
    runs = []
    for blocks in (True, False):
        model = make()
        model.fit(X[:1], Y[:1], 0, **kw)  # traces the program without training
        program = program_of(model, kw.get("loss", "mse"))
        program.dense_blocks = blocks
        h = model.fit(X, Y, epochs, report_every=1, shuffle=False, **kw)
        runs.append((h.loss, params_of(model), program))
    return runs


def test_the_xor_program_is_two_blocks_and_a_squared_error_row():
    with tm.Graph():
        model = tm.MLP(2, [4, 1], 0.1, "tanh", seed=42, init="uniform01")
    model.fit(XOR_X, XOR_Y, 0, loss="sse")
    program = program_of(model, "sse")
    segs, blocks, wrows = program._blocks
    assert segs[:, 0].tolist() == [kernels.SEG_BLOCK, kernels.SEG_BLOCK, kernels.SEG_ROWS]
    hidden, out = blocks
    assert hidden[1:5].tolist() == [4, int(program.in_rows[0]), 2, kernels.TANH]  # units, x0, fan, act
    assert out[1] == 1 and out[2] == hidden[0] and out[3] == 4
    # every parameter row appears exactly once (a bias or a weight of one unit)
    assert sorted(wrows.tolist()) == sorted(program.param_rows.tolist())
    # the bias of the first hidden unit, then its weights: the graph's own rows for them
    first = program._op.shape[0]
    assert first > 0
    parents = program._pidx[program._pstart[hidden[0]] : program._pstart[hidden[0] + 1]]
    assert wrows[0] == parents[0]
    assert wrows[4 : 4 + 2].tolist() == parents[1:3].tolist()


def test_xor_blocks_are_bit_identical_to_rows():
    """4 lanes: the blocks add in exactly the rows' order, so nothing differs in any bit."""

    def make():
        with tm.Graph():
            return tm.MLP(2, [4, 1], 0.1, "tanh", seed=42, init="uniform01")

    (la, pa, _), (lb, pb, _) = fit_both(make, XOR_X, XOR_Y, 600, loss="sse")
    np.testing.assert_array_equal(la, lb)
    np.testing.assert_array_equal(pa, pb)


@pytest.mark.parametrize(
    ("hidden", "act", "batch"),
    [
        ([9, 5], "tanh", 16),
        ([6, 3], "sigmoid", 5),
        ([40, 7], "relu", 64),
        ([3], "tanh", 3),
        ([18, 6], "tanh", 13),  # tiles of 8 lanes and of 1
        ([5, 4], "sigmoid", 24),  # tiles of 16 and 8
    ],
)
def test_blocks_equal_rows_for_wider_layers_and_cross_entropy(hidden, act, batch):
    """Units not a multiple of anything, fan-ins beyond a vector, 3 to 64 lanes."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(70, 11))
    y = rng.integers(0, hidden[-1], 70)

    def make():
        with tm.Graph():
            return tm.MLP(11, hidden, 0.05, act, seed=3, output_activation="linear")

    (la, pa, prog), (lb, pb, _) = fit_both(make, X, y, 3, loss="cross_entropy", batch_size=batch)
    kinds = prog._blocks[1][:, 4].tolist()
    assert len(kinds) == len(hidden) + 1 and kinds[-1] == kernels.CROSS_ENTROPY  # the layers, the loss
    np.testing.assert_allclose(la, lb, **CLOSE)
    np.testing.assert_allclose(pa, pb, **CLOSE)
    if batch <= 4:
        np.testing.assert_array_equal(pa, pb)


@pytest.mark.parametrize("batch", [3, 8, 32])
def test_blocks_train_as_the_numpy_reference(batch):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(40, 6))
    Y = rng.normal(size=(40, 3))
    with tm.Graph():
        model = tm.MLP(6, [10, 3], 0.05, "tanh", seed=4)
    ref = NumpyMLP([6, 10, 3], ["tanh", "tanh"])
    ref_loss, ref_params = ref.sgd(params_of(model), X, Y, 4, 0.05, batch, "mean")
    h = model.fit(X, Y, 4, loss="mse", batch_size=batch, shuffle=False, report_every=1)
    assert program_of(model, "mse").dense_blocks and len(program_of(model, "mse")._blocks[1]) == 2
    np.testing.assert_allclose(h.loss, ref_loss, **CLOSE)
    np.testing.assert_allclose(params_of(model), ref_params, **CLOSE)


def test_rows_between_blocks_and_non_layers_stay_rows():
    """A program of a layer, an elementwise row over its outputs, a second layer, a unit whose
    inputs are not one range of rows, and a loss: blocks where they are layers, rows elsewhere,
    and the same gradients (one SGD step) either way."""
    results = []
    for blocks in (True, False):
        with tm.Graph():
            xs = tm.placeholders(3)
            t = tm.placeholders(1)
            layer1 = tm.nn.Layer(3, 4, "tanh", seed=1)
            layer2 = tm.nn.Layer(4, 2, "sigmoid", seed=2)
            h = layer1(xs)
            h = [v * 1.5 for v in h]  # MUL_C rows between the layers
            o = layer2(h)
            w = tm.Value(0.3)
            odd = (o[1] * w + xs[0] * w).tanh()  # not a layer's unit
            loss = (o[0] + odd - t[0]) ** 2
            params = layer1.parameters() + layer2.parameters() + [w]
            program = tm.compile(loss, xs + t, params)
            program.dense_blocks = blocks
            rng = np.random.default_rng(9)
            samples = rng.normal(size=(12, 4))
            hist = program.fit(samples, 2, lr=0.1, batch_size=6, shuffle=False, report_every=1)
            results.append((hist.loss, np.array([p.data for p in params]), program._blocks))
    segs, found, _ = results[0][2]
    assert len(found) == 2  # the two layers; the odd unit and the MUL_C rows are rows
    assert kernels.SEG_ROWS in segs[:, 0].tolist()
    np.testing.assert_allclose(results[0][0], results[1][0], **CLOSE)
    np.testing.assert_allclose(results[0][1], results[1][1], **CLOSE)


def test_find_blocks_refuses_units_that_are_not_a_layers():
    """Inputs out of order, a leaf input, a unit reading its own run: no block."""
    LEAF, INPUT, NEURON = kernels.LEAF, kernels.INPUT, kernels.NEURON
    # rows: 0-2 params, 3-4 inputs, 5 neuron over (4, 3): reversed inputs
    op = np.array([LEAF, LEAF, LEAF, INPUT, INPUT, NEURON], np.uint8)
    pstart = np.array([0, 0, 0, 0, 0, 0, 5])
    pidx = np.array([0, 1, 2, 4, 3])
    aux = np.array([0, 0, 0, 0, 0, kernels.TANH], np.float64)
    segs, blocks, _ = dense.find_blocks(op, pstart, pidx, aux, 5, 6)
    assert len(blocks) == 0 and segs.tolist() == [[kernels.SEG_ROWS, 5, 6]]
    pidx_leaf = np.array([0, 1, 2, 3, 2])  # an input that is a leaf
    assert len(dense.find_blocks(op, pstart, pidx_leaf, aux, 5, 6)[1]) == 0
    pidx_ok = np.array([0, 1, 2, 3, 4])
    segs, blocks, wrows = dense.find_blocks(op, pstart, pidx_ok, aux, 5, 6)
    # the bias before the weights: not packed (-1), so the block reads its rows through wrows
    assert blocks.tolist() == [[5, 1, 3, 2, kernels.TANH, 0, -1, 0]] and wrows.tolist() == [0, 1, 2]
    pidx_packed = np.array([2, 0, 1, 3, 4])  # weights 0, 1, then the bias 2: packed from row 0
    segs, blocks, wrows = dense.find_blocks(op, pstart, pidx_packed, aux, 5, 6)
    assert blocks.tolist() == [[5, 1, 3, 2, kernels.TANH, 0, 0, 3]] and wrows.tolist() == [2, 0, 1]


def test_an_mlp_layer_is_packed():
    """``Layer`` allocates each unit's weights, then its bias: blocks read them in place."""
    with tm.Graph():
        model = tm.MLP(5, [7, 3], 0.1, "tanh", seed=1)
    model.fit(np.zeros((1, 5)), np.zeros((1, 3)), 0, loss="mse")
    _, blocks, wrows = program_of(model, "mse")._blocks
    for _, units, _, fan, _, at, wb, stride in blocks.tolist():
        assert wb >= 0 and stride >= fan + 1
        weights = wrows[at + units : at + units + units * fan].reshape(units, fan)
        np.testing.assert_array_equal(weights, wb + stride * np.arange(units)[:, None] + np.arange(fan))
        np.testing.assert_array_equal(wrows[at : at + units], wb + stride * np.arange(units) + fan)


@pytest.mark.parametrize(("rows", "cols", "n"), [(1, 1, 1), (4, 16, 3), (9, 37, 20), (6, 8, 1), (3, 24, 0)])
@pytest.mark.parametrize("step", [1, -1])
def test_mac_tiles_equal_a_matrix_product(rows, cols, n, step):
    """C += A B by the register tiles, with strided rows and a descending k, against NumPy."""
    rng = np.random.default_rng(rows * 100 + cols)
    ars, bstep, crs = n + 3, cols + 5, cols + 2  # rows of A, B and C further apart than their widths
    a = rng.normal(size=rows * ars + 4)
    b = rng.normal(size=n * bstep + 8)
    c = rng.normal(size=(rows + 1) * crs)
    a0, b0, c0 = 2, 3, 1
    A = np.array([[a[a0 + u * ars + i] for i in range(n)] for u in range(rows)]).reshape(rows, n)
    B = np.array([[b[b0 + i * bstep + col] for col in range(cols)] for i in range(n)]).reshape(n, cols)
    want = c.copy()
    for u in range(rows):
        want[c0 + u * crs : c0 + u * crs + cols] += A[u] @ B
    first = 0 if step == 1 else n - 1  # the same sum, k run backwards
    kernels.mac(a, a0 + first, ars, step, b, b0 + first * bstep, step * bstep, c, c0, crs, rows, cols, n)
    np.testing.assert_allclose(c, want, rtol=1e-13, atol=1e-13)
    outside = np.ones(c.shape, bool)
    for u in range(rows):
        outside[c0 + u * crs : c0 + u * crs + cols] = False
    rng2 = np.random.default_rng(rows * 100 + cols)
    rng2.normal(size=rows * ars + 4), rng2.normal(size=n * bstep + 8)
    np.testing.assert_array_equal(c[outside], rng2.normal(size=(rows + 1) * crs)[outside])  # untouched


@pytest.mark.parametrize("batch", [3, 16])
def test_cross_entropy_blocks_with_class_index_and_targets_equal_rows(batch):
    """Two heads, two losses: a class index (row aux) and one-hot target rows. Each loss row is a
    block, with its own scratch rows; the loss blocks do the rows' arithmetic in their order,
    so with 3 lanes (no tiles) every bit agrees, and with 16 to rounding."""
    results = []
    for blocks in (True, False):
        with tm.Graph():
            xs = tm.placeholders(5)
            t = tm.placeholders(3)
            trunk = tm.nn.Layer(5, 6, "tanh", seed=1)
            head1 = tm.nn.Layer(6, 3, "linear", seed=2)
            head2 = tm.nn.Layer(6, 4, "linear", seed=3)
            h = trunk(xs)
            loss = tm.losses.cross_entropy(head1(h), [t]) + tm.losses.cross_entropy(head2(h), 2)
            params = trunk.parameters() + head1.parameters() + head2.parameters()
            program = tm.compile(loss, xs + t, params)
            program.dense_blocks = blocks
            rng = np.random.default_rng(4)
            samples = np.hstack([rng.normal(size=(40, 5)), np.eye(3)[rng.integers(0, 3, 40)]])
            hist = program.fit(samples, 3, lr=0.2, batch_size=batch, shuffle=False, report_every=1)
            results.append((hist.loss, np.array([p.data for p in params]), program._blocks))
    _, found, _ = results[0][2]
    losses = found[found[:, 4] == kernels.CROSS_ENTROPY]
    assert sorted(losses[:, 7].tolist()) == [-1, 2]  # target rows; class index 2
    g = dense.plan(results[0][2], batch)[3]
    scratch = dense.plan(results[0][2], batch)[1][found[:, 4] == kernels.CROSS_ENTROPY]
    first, second = sorted(scratch[:, 5].tolist())
    assert first >= 6 and second >= first + 3 + 3 and g.shape[0] >= second + 4 + 3  # no overlap
    if batch <= 4:
        np.testing.assert_array_equal(results[0][0], results[1][0])
        np.testing.assert_array_equal(results[0][1], results[1][1])
    np.testing.assert_allclose(results[0][0], results[1][0], **CLOSE)
    np.testing.assert_allclose(results[0][1], results[1][1], **CLOSE)


def test_a_cross_entropy_block_gives_nan_for_a_nan_or_infinite_logit():
    """The rows' rule at the edges: a NaN logit, a +inf one, all -inf: the loss row is NaN."""
    n = 3
    data = np.array([[0.5, np.nan, np.inf, -np.inf], [1.0, 0.0, 1.0, -np.inf], [0.0, 2.0, 0.0, -np.inf]])
    rows = np.vstack([data, np.zeros((1, 4))])  # logit rows 0..2, the loss row 3
    blocks = np.array([[3, 1, 0, n, kernels.CROSS_ENTROPY, 0, -1, 1]], np.int64)
    g = np.zeros((n + 3, 4))
    kernels.dense_forward(rows, np.zeros(4), blocks, np.zeros(0, np.int64), 0, g)
    z = data[:, 0]
    want = (z.max() - z[1]) + np.log(np.exp(z - z.max()).sum())
    assert rows[3, 0] == pytest.approx(want, rel=1e-15)
    assert np.isnan(rows[3, 1:]).all()


@pytest.mark.parametrize("batch", [3, 16])
def test_a_layer_over_inputs_and_computed_rows_equals_rows(batch):
    """A layer whose input rows are two placeholders and then a computed row: the block
    passes gradients to the computed row only (an input row takes none)."""
    results = []
    for blocks in (True, False):
        with tm.Graph():
            layer = tm.nn.Layer(3, 5, "tanh", seed=6)
            out = tm.nn.Layer(5, 1, "linear", seed=7)
            xs = tm.placeholders(3)
            doubled = xs[0] * 2.0  # a MUL_C row right after the placeholder rows
            loss = (out(layer([xs[1], xs[2], doubled]))[0] - xs[0]) ** 2
            params = layer.parameters() + out.parameters()
            program = tm.compile(loss, xs, params)
            program.dense_blocks = blocks
            rng = np.random.default_rng(3)
            hist = program.fit(rng.normal(size=(32, 3)), 3, lr=0.1, batch_size=batch, shuffle=False)
            results.append((hist.loss, np.array([p.data for p in params]), program))
    program = results[0][2]
    _, found, _ = program._blocks
    first = found[0]
    inputs = program._op[first[2] : first[2] + first[3]]
    assert (inputs == kernels.INPUT).sum() == 2 and (inputs != kernels.INPUT).sum() == 1
    if batch <= 4:
        np.testing.assert_array_equal(results[0][1], results[1][1])
    np.testing.assert_allclose(results[0][0], results[1][0], **CLOSE)
    np.testing.assert_allclose(results[0][1], results[1][1], **CLOSE)
