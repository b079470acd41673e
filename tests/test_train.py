"""Compiled training (tinyml/train.py; API.md "Compiled training").

``MLP.fit`` / ``Program.fit`` must be the same training as an eager loop:
checked against the seed-style eager loop of tinyml itself (loss -> zero_grad
-> backward -> update), against a float64 NumPy MLP with hand-written
backward (tests/train_helpers.py), and, for the sample order, against an
"order probe" program whose parameter spells out the samples it was fed.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinyml as tm

from .train_helpers import (
    XOR_X,
    XOR_Y,
    NumpyMLP,
    digits,
    eager_train,
    grads_of,
    order_probe,
    params_of,
    probe_reference,
)

EXACT = {"rtol": 0.0, "atol": 1e-9}  # "designed to be bit-identical" comparisons (brief: 1e-9)
CLOSE = {"rtol": 1e-9, "atol": 1e-12}  # against references that sum in another order


@pytest.fixture(autouse=True)
def own_graph():
    with tm.Graph() as g:
        yield g


def xor_model(seed: int = 3, lr: float = 0.1) -> tm.MLP:
    return tm.MLP(2, [4, 1], lr, tm.Activation.TANH, seed=seed, init="uniform01")


def regression_data(n: int = 7, n_in: int = 3, n_out: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, (n, n_in))
    Y = rng.uniform(-0.8, 0.8, (n, n_out))
    return X, Y


def small_model(seed: int = 1, lr: float = 0.1, out: str = "linear") -> tm.MLP:
    return tm.MLP(3, [4, 2], lr, "tanh", seed=seed, output_activation=out)


def reference_of(model: tm.MLP) -> NumpyMLP:
    acts = [model.activation.value] * (len(model.layer_sizes) - 1) + [model.output_activation.value]
    return NumpyMLP([model.n_inputs, *model.layer_sizes], acts)


# ---------------------------------------------------------------------------
# History
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("epochs", "report_every", "expected"),
    [
        (11, 3, [0, 3, 6, 9, 10]),
        (10, 3, [0, 3, 6, 9]),
        (9, 3, [0, 3, 6, 8]),
        (5, 100, [0, 4]),
        (1, 7, [0]),
        (6, 1, [0, 1, 2, 3, 4, 5]),
    ],
)
def test_history_records_every_report_plus_first_and_last(epochs, report_every, expected):
    full = xor_model().fit(XOR_X, XOR_Y, epochs, loss="sse", report_every=1)
    model = xor_model()
    h = model.fit(XOR_X, XOR_Y, epochs, loss="sse", report_every=report_every)
    assert isinstance(h, tm.History)
    assert h.epoch.dtype == np.int64 and h.epoch.ndim == 1
    assert h.loss.dtype == np.float64 and h.loss.ndim == 1
    np.testing.assert_array_equal(h.epoch, expected)
    np.testing.assert_array_equal(h.loss, full.loss[expected])
    assert len(h) == len(expected)
    assert h.epochs_run == epochs
    assert h.stopped_early is False


def test_history_loss_is_the_loss_before_that_epochs_update():
    ref = NumpyMLP([2, 4, 1], ["tanh", "tanh"])
    model = xor_model()
    before = params_of(model)
    h = model.fit(XOR_X, XOR_Y, 6, loss="sse", report_every=1)
    assert h.loss[0] == pytest.approx(ref.loss_and_grad(before, XOR_X, XOR_Y, "sum")[0], rel=1e-12)
    # the loss recorded at epoch 5 is the loss at the parameters after 5 updates
    five = xor_model()
    five.fit(XOR_X, XOR_Y, 5, loss="sse")
    assert h.loss[5] == pytest.approx(ref.loss_and_grad(params_of(five), XOR_X, XOR_Y, "sum")[0], rel=1e-12)


def test_history_is_the_same_whatever_the_kernel_chunks():
    """3000 epochs run in several timed chunks; the subsampled history must not depend on them."""
    every = xor_model().fit(XOR_X, XOR_Y, 3000, loss="sse", report_every=1)
    model = xor_model()
    h = model.fit(XOR_X, XOR_Y, 3000, loss="sse", report_every=250)
    expected = [*range(0, 3000, 250), 2999]
    np.testing.assert_array_equal(h.epoch, expected)
    np.testing.assert_array_equal(h.loss, every.loss[expected])
    assert h.epochs_run == 3000
    assert every.loss[-1] < 0.5 * every.loss[0]  # it really trains


def test_zero_epochs_is_an_empty_history_and_no_change():
    model = xor_model()
    before = params_of(model)
    h = model.fit(XOR_X, XOR_Y, 0, loss="sse")
    assert len(h) == 0 and h.epochs_run == 0 and not h.stopped_early
    assert h.epoch.dtype == np.int64 and h.loss.dtype == np.float64
    np.testing.assert_array_equal(params_of(model), before)


# ---------------------------------------------------------------------------
# fit is the eager loop
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(("loss", "reduction"), [("sse", "sum"), ("mse", "mean")])
def test_xor_fit_matches_the_seed_style_eager_loop(loss, reduction):
    epochs = 60
    fitted = xor_model()
    h = fitted.fit(XOR_X, XOR_Y, epochs, loss=loss, report_every=1)

    eager = xor_model()
    losses = []
    for _ in range(epochs):
        total = tm.losses.mse([eager(x)[0] for x in XOR_X], XOR_Y[:, 0].tolist(), reduction=reduction)
        losses.append(total.data)
        eager.zero_grad()
        total.backward()
        eager.update()

    np.testing.assert_array_equal(h.epoch, np.arange(epochs))
    np.testing.assert_allclose(h.loss, losses, **EXACT)
    np.testing.assert_allclose(params_of(fitted), params_of(eager), **EXACT)
    assert h.loss[-1] < h.loss[0]


def test_model_is_usable_eagerly_after_fit():
    X, Y = regression_data(20)
    model = small_model(lr=0.05)
    model.fit(X, Y, 30, loss="mse")
    trained = params_of(model)
    ref = reference_of(model)

    predicted = model.predict(X)
    eager_out = np.array([[v.data for v in model(x)] for x in X])
    np.testing.assert_allclose(eager_out, predicted, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(eager_out, ref.forward(trained, X), rtol=1e-12, atol=1e-14)

    # backward at the trained parameters, then one eager step from them
    loss = tm.losses.mse([model(x) for x in X], Y, reduction="mean")
    model.zero_grad()
    loss.backward()
    ref_loss, ref_grad = ref.loss_and_grad(trained, X, Y, "mean")
    assert loss.data == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_allclose(grads_of(model), ref_grad, **CLOSE)
    model.update()
    np.testing.assert_allclose(params_of(model), trained - 0.05 * ref_grad, **CLOSE)


# ---------------------------------------------------------------------------
# predict
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 5, 64, 130])
def test_predict_equals_row_by_row_eager_forward(n):
    rng = np.random.default_rng(n)
    model = tm.MLP(3, [6, 2], seed=n, output_activation="linear")
    X = rng.normal(size=(n, 3))
    P = model.predict(X)
    assert isinstance(P, np.ndarray) and P.shape == (n, 2) and P.dtype == np.float64
    eager = np.array([[v.data for v in model(x)] for x in X])
    np.testing.assert_allclose(P, eager, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(P, reference_of(model).forward(params_of(model), X), rtol=1e-12, atol=1e-14)


def test_predict_shapes_for_no_rows_and_one_input():
    assert small_model().predict(np.zeros((0, 3))).shape == (0, 2)
    one = tm.MLP(1, [3, 1], seed=0)
    x = np.linspace(-1.0, 1.0, 5)
    P = one.predict(x)  # a 1-D X is a column for a one-input model
    assert P.shape == (5, 1)
    np.testing.assert_allclose(P[:, 0], [one([v])[0].data for v in x], rtol=1e-12, atol=1e-14)


def test_predict_follows_eager_parameter_changes():
    X, Y = regression_data(9)
    model = small_model()
    first = model.predict(X)
    loss = tm.losses.mse([model(x) for x in X], Y)
    model.zero_grad()
    loss.backward()
    model.update()
    second = model.predict(X)
    assert not np.allclose(first, second)
    np.testing.assert_allclose(second, [[v.data for v in model(x)] for x in X], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    ("X", "match"),
    [
        (np.zeros((4, 2)), r"3.*2"),
        (np.array([[0.0, np.nan, 1.0]]), "NaN"),
        (np.array([[0.0, np.inf, 1.0]]), "inf"),
        (np.zeros((2, 3, 1)), "2-D"),
    ],
)
def test_predict_rejects_bad_inputs(X, match):
    with pytest.raises(ValueError, match=match):
        small_model().predict(X)


@pytest.mark.parametrize("unit", ["timedelta64[s]", "timedelta64[ms]", "datetime64[s]"])
def test_durations_and_dates_are_not_numbers(unit):
    """Their numbers are ticks of a unit (seconds and milliseconds 1000x apart): refused alike."""
    X = np.arange(6).reshape(2, 3).astype(unit)
    model = small_model()
    with pytest.raises(TypeError, match=rf"expected real numbers, got an array of dtype {unit[:10]}"):
        model.predict(X)
    with pytest.raises(TypeError, match=unit[:10]):
        model(X[0])
    with pytest.raises(TypeError, match="real number"):
        tm.Value(X[0, 1])


# ---------------------------------------------------------------------------
# batches and sample order
# ---------------------------------------------------------------------------
def test_batch_size_none_is_one_full_batch_step_per_epoch():
    X, Y = regression_data(7)
    runs = []
    for bs in (None, 7, 50):
        model = small_model()
        h = model.fit(X, Y, 5, batch_size=bs, report_every=1, seed=0)
        runs.append((h.loss, params_of(model)))
    for loss, params in runs[1:]:
        np.testing.assert_array_equal(loss, runs[0][0])
        np.testing.assert_array_equal(params, runs[0][1])
    ref = reference_of(small_model())
    ref_loss, ref_params = ref.sgd(params_of(small_model()), X, Y, 5, 0.1, 7, "mean")
    np.testing.assert_allclose(runs[0][0], ref_loss, **CLOSE)
    np.testing.assert_allclose(runs[0][1], ref_params, **CLOSE)


@pytest.mark.parametrize(("loss", "reduction"), [("mse", "mean"), ("sse", "sum")])
@pytest.mark.parametrize("batch_size", [1, 3, 4])
def test_minibatch_sgd_without_shuffle_matches_numpy_reference(loss, reduction, batch_size):
    X, Y = regression_data(7)
    model = small_model(lr=0.05)
    ref = reference_of(model)
    ref_loss, ref_params = ref.sgd(params_of(model), X, Y, 4, 0.05, batch_size, reduction)
    h = model.fit(X, Y, 4, loss=loss, batch_size=batch_size, shuffle=False, report_every=1)
    np.testing.assert_allclose(h.loss, ref_loss, **CLOSE)
    np.testing.assert_allclose(params_of(model), ref_params, **CLOSE)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(1, 12),
    batch=st.integers(1, 14),
    sse=st.booleans(),
    hidden=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_minibatch_sgd_property(n, batch, sse, hidden, seed):
    X, Y = regression_data(n, 2, 2, seed)
    model = tm.MLP(2, [hidden, 2], 0.1, "tanh", seed=seed)
    ref = NumpyMLP([2, hidden, 2], ["tanh", "tanh"])
    ref_loss, ref_params = ref.sgd(params_of(model), X, Y, 3, 0.1, batch, "sum" if sse else "mean")
    h = model.fit(X, Y, 3, loss="sse" if sse else "mse", batch_size=batch, shuffle=False, report_every=1)
    np.testing.assert_allclose(h.loss, ref_loss, **CLOSE)
    np.testing.assert_allclose(params_of(model), ref_params, **CLOSE)


def test_probe_reads_the_order_without_shuffle():
    program, w = order_probe()
    samples = np.arange(1.0, 6.0)[:, None]
    h = program.fit(samples, 3, lr=1.0, batch_size=1, shuffle=False, report_every=1)
    assert digits(w.data, 5, 3) == [[1, 2, 3, 4, 5]] * 3
    assert h.epochs_run == 3


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_last_partial_batch_is_included(reduction):
    program, w = order_probe()
    samples = np.arange(1.0, 6.0)[:, None]
    program.fit(samples, 2, lr=1.0, batch_size=2, shuffle=False, reduction=reduction)
    expected = probe_reference([[1, 2], [3, 4], [5]] * 2, reduction)
    assert w.data == expected
    assert w.data != probe_reference([[1, 2], [3, 4]] * 2, reduction)


def probe_orders(seed, n=7, epochs=2, batch_size=1):
    program, w = order_probe()
    samples = np.arange(1.0, n + 1.0)[:, None]
    program.fit(samples, epochs, lr=1.0, batch_size=batch_size, shuffle=True, seed=seed)
    return digits(w.data, n, epochs)


def test_shuffle_reshuffles_every_epoch():
    seen = set()
    for seed in range(5):
        orders = probe_orders(seed)
        for order in orders:
            assert sorted(order) == list(range(1, 8))  # every sample once per epoch
            seen.add(tuple(order))
    assert len(seen) >= 9  # 10 epochs over 5 seeds: (nearly) all different permutations
    assert tuple(range(1, 8)) not in seen or len(seen) == 10


def test_shuffle_is_reproducible_with_a_seed():
    assert probe_orders(42) == probe_orders(42)
    assert probe_orders(42) != probe_orders(43)
    # the order of an epoch does not depend on how many epochs are run
    assert probe_orders(42, epochs=1)[0] == probe_orders(42, epochs=2)[0]

    X, Y = regression_data(9)
    runs = []
    for seed in (5, 5, 6):
        model = small_model()
        h = model.fit(X, Y, 4, batch_size=2, seed=seed, report_every=1)
        runs.append((h.loss, params_of(model)))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert not np.array_equal(runs[0][1], runs[2][1])


def test_shuffled_minibatches_are_consecutive_slices_of_each_epochs_permutation():
    """MLP.fit with shuffle=True equals the NumPy reference fed each epoch's permutation.

    The permutations are read with the order probe for the same seed and number
    of samples (the shuffle depends only on seed, n and epoch, not on the program).
    """
    n, epochs, seed = 7, 2, 1234
    orders = probe_orders(seed, n=n, epochs=epochs)
    X, Y = regression_data(n)
    model = small_model()
    ref = reference_of(model)
    flat = params_of(model)
    ref_loss = []
    for order in orders:
        idx = np.array(order) - 1
        loss, flat = ref.sgd(flat, X[idx], Y[idx], 1, 0.1, 3, "mean")
        ref_loss.append(loss[0])
    h = model.fit(X, Y, epochs, batch_size=3, seed=seed, report_every=1)
    np.testing.assert_allclose(h.loss, ref_loss, **CLOSE)
    np.testing.assert_allclose(params_of(model), flat, **CLOSE)


def test_shuffle_does_not_change_a_full_batch_run():
    X, Y = regression_data(7)
    a, b = small_model(), small_model()
    ha = a.fit(X, Y, 5, shuffle=True, seed=3, report_every=1)
    hb = b.fit(X, Y, 5, shuffle=False, report_every=1)
    np.testing.assert_allclose(ha.loss, hb.loss, **EXACT)
    np.testing.assert_allclose(params_of(a), params_of(b), **EXACT)


# ---------------------------------------------------------------------------
# every loss against the eager computation of the same batch loss
# ---------------------------------------------------------------------------
def log_cosh(outputs, targets):
    """One sample's loss, written with exp/log; targets may be Values or numbers."""
    total = 0.0
    for o, t in zip(outputs, targets):
        d = o - t
        total = total + ((d.exp() + (-d).exp()) * 0.5).log()
    return total / len(outputs)


def _rows(model, xb):
    return [model(x) for x in xb]


def _loss_case(name):
    """(model factory, X, Y, eager batch loss, fit's loss argument, mean?) for each loss."""
    rng = np.random.default_rng(7)
    X = rng.uniform(-1.0, 1.0, (7, 3))
    if name == "mse":
        Y = rng.uniform(-1, 1, (7, 2))
        return small_model, X, Y, lambda m, xb, yb: tm.losses.mse(_rows(m, xb), yb), "mse", True
    if name == "sse":
        Y = rng.uniform(-1, 1, (7, 2))
        return (
            small_model,
            X,
            Y,
            lambda m, xb, yb: tm.losses.mse(_rows(m, xb), yb, reduction="sum"),
            "sse",
            False,
        )
    if name == "cross_entropy":
        Y = rng.integers(0, 3, 7)
        Y[:3] = [0, 1, 2]

        def factory():
            return tm.MLP(3, [5, 3], 0.2, "tanh", seed=2, output_activation="linear")

        return factory, X, Y, lambda m, xb, yb: tm.losses.cross_entropy(_rows(m, xb), yb.tolist()), name, True
    if name == "binary_cross_entropy":
        Y = rng.integers(0, 2, (7, 2)).astype(float)
        return (
            lambda: small_model(out="sigmoid"),
            X,
            Y,
            lambda m, xb, yb: tm.losses.binary_cross_entropy(_rows(m, xb), yb),
            name,
            True,
        )
    if name == "hinge":
        Y = np.where(rng.random((7, 1)) < 0.5, -1.0, 1.0)

        def factory():
            return tm.MLP(3, [4, 1], 0.1, "tanh", seed=4, output_activation="linear")

        return factory, X, Y, lambda m, xb, yb: tm.losses.hinge(_rows(m, xb), yb), name, True
    assert name == "callable"
    Y = rng.uniform(-1, 1, (7, 2))

    def batch_log_cosh(m, xb, yb):
        total = 0.0
        for x, y in zip(xb, yb):
            total = total + log_cosh(m(x), y.tolist())
        return total / len(xb)

    return small_model, X, Y, batch_log_cosh, log_cosh, True


LOSSES = ["mse", "sse", "cross_entropy", "binary_cross_entropy", "hinge", "callable"]


@pytest.mark.parametrize("batch_size", [None, 3])
@pytest.mark.parametrize("name", LOSSES)
def test_each_loss_matches_eager_sgd(name, batch_size):
    factory, X, Y, batch_loss, loss_arg, mean = _loss_case(name)
    model = factory()
    before = params_of(model)
    h = model.fit(X, Y, 4, loss=loss_arg, batch_size=batch_size, shuffle=False, report_every=1)
    eager_loss, eager_params = eager_train(factory(), X, Y, 4, batch_loss, batch_size=batch_size, mean=mean)
    np.testing.assert_allclose(h.loss, eager_loss, **CLOSE)
    np.testing.assert_allclose(params_of(model), eager_params, **CLOSE)
    assert not np.allclose(params_of(model), before)  # the comparison is not vacuous


def test_cross_entropy_integer_labels_equal_one_hot_rows():
    _, X, labels, _, _, _ = _loss_case("cross_entropy")
    onehot = np.eye(3)[labels]
    runs = []
    for Y in (labels, onehot, labels.astype(float)):
        model = tm.MLP(3, [5, 3], 0.2, "tanh", seed=2, output_activation="linear")
        h = model.fit(X, Y, 5, loss="cross_entropy", batch_size=3, seed=1, report_every=1)
        runs.append((h.loss, params_of(model)))
    for loss, params in runs[1:]:
        np.testing.assert_array_equal(loss, runs[0][0])
        np.testing.assert_array_equal(params, runs[0][1])


# ---------------------------------------------------------------------------
# callback, early stop, Ctrl-C
# ---------------------------------------------------------------------------
def test_callback_is_called_at_each_report():
    calls = []
    h = xor_model().fit(
        XOR_X, XOR_Y, 23, loss="sse", report_every=5, callback=lambda e, v: calls.append((e, v))
    )
    assert [e for e, _ in calls] == h.epoch.tolist() == [0, 5, 10, 15, 20, 22]
    np.testing.assert_array_equal([v for _, v in calls], h.loss)
    assert all(type(e) is int and type(v) is float for e, v in calls)
    assert h.epochs_run == 23 and not h.stopped_early


@pytest.mark.parametrize(("batch_size", "seed"), [(None, None), (3, 8)])
def test_callback_returning_false_stops_right_after_that_epoch(batch_size, seed):
    X, Y = regression_data(7)
    calls = []

    def stop_at_10(epoch, loss):
        calls.append(epoch)
        return epoch != 10

    model = small_model()
    h = model.fit(X, Y, 40, batch_size=batch_size, seed=seed, report_every=5, callback=stop_at_10)
    assert calls == [0, 5, 10]
    assert h.stopped_early is True
    assert h.epochs_run == 11
    np.testing.assert_array_equal(h.epoch, [0, 5, 10])

    uninterrupted = small_model()
    h11 = uninterrupted.fit(X, Y, 11, batch_size=batch_size, seed=seed, report_every=5)
    np.testing.assert_array_equal(params_of(model), params_of(uninterrupted))
    np.testing.assert_array_equal(h.loss, h11.loss[:3])


@pytest.mark.parametrize(("batch_size", "seed"), [(None, None), (3, 4)])
def test_keyboard_interrupt_leaves_the_parameters_of_the_completed_epochs(batch_size, seed):
    X, Y = regression_data(7)

    def interrupt_at_15(epoch, loss):
        if epoch == 15:
            raise KeyboardInterrupt

    model = small_model()
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, Y, 1000, batch_size=batch_size, seed=seed, report_every=5, callback=interrupt_at_15)
    params = params_of(model)
    assert np.all(np.isfinite(params))
    completed = small_model()
    completed.fit(X, Y, 16, batch_size=batch_size, seed=seed)
    np.testing.assert_array_equal(params, params_of(completed))

    if batch_size is None:  # full-batch SGD resumes exactly where it stopped
        model.fit(X, Y, 4)
        completed.fit(X, Y, 4)
        longer = small_model()
        longer.fit(X, Y, 20)
        np.testing.assert_array_equal(params_of(model), params_of(longer))
        np.testing.assert_array_equal(params_of(completed), params_of(longer))


# ---------------------------------------------------------------------------
# divergence
# ---------------------------------------------------------------------------
def diverging_problem():
    X = np.array([[1.0, 2.0], [2.0, -1.0], [3.0, 1.0], [-1.0, 2.0]])
    Y = np.array([[1.0], [0.0], [2.0], [-1.0]])
    return X, Y


def linear_model(lr: float) -> tm.MLP:
    return tm.MLP(2, [1], lr, "linear", seed=0)


@pytest.mark.parametrize("report_every", [1, 500])
def test_divergence_raises_naming_the_epoch_and_keeps_the_last_finite_parameters(report_every):
    X, Y = diverging_problem()
    model = linear_model(1.0)  # far past the stable step size: the error grows ~10x per epoch
    with pytest.raises(tm.TrainingDiverged) as info:
        model.fit(
            X, Y, 2000, report_every=report_every, callback=(lambda e, v: None) if report_every == 1 else None
        )
    err = info.value
    assert isinstance(err.epoch, int) and 5 < err.epoch < 2000
    assert re.search(rf"\bepoch {err.epoch}\b", str(err)), str(err)
    assert not math.isfinite(err.loss)

    params = params_of(model)
    assert np.all(np.isfinite(params))
    before = linear_model(1.0)
    h = before.fit(X, Y, err.epoch, report_every=report_every)
    np.testing.assert_array_equal(params, params_of(before))
    reported = h.epoch % report_every == 0  # its last epoch is not a report of the diverging run
    np.testing.assert_array_equal(err.history.epoch, h.epoch[reported])
    np.testing.assert_array_equal(err.history.loss, h.loss[reported])
    assert np.all(np.isfinite(model.predict(X)))


def test_divergence_in_the_update_keeps_parameters_and_reports_the_finite_loss():
    """The loss and gradients are finite, but lr * grad overflows the parameters at epoch 0."""
    X, Y = diverging_problem()
    model = linear_model(1e308)
    before = params_of(model)
    with pytest.raises(tm.TrainingDiverged, match=r"\bepoch 0\b") as info:
        model.fit(X, Y, 10)
    assert info.value.epoch == 0
    np.testing.assert_array_equal(params_of(model), before)
    ref_loss = NumpyMLP([2, 1], ["linear"]).loss_and_grad(before, X, Y, "mean")[0]
    assert info.value.loss == pytest.approx(ref_loss, rel=1e-12)


# ---------------------------------------------------------------------------
# input checking
# ---------------------------------------------------------------------------
X6, Y6 = regression_data(6)


def _bad(x=X6, y=Y6, **kw):
    return (x, y, kw)


BAD_CALLS = {
    "X width": (_bad(x=np.zeros((6, 4))), ValueError, r"3.*4"),
    "Y width": (_bad(y=np.zeros((6, 3))), ValueError, r"2.*3"),
    "Y length": (_bad(y=np.zeros((5, 2))), ValueError, r"6.*5"),
    "X NaN": (_bad(x=np.where(np.eye(6, 3) > 0, np.nan, X6)), ValueError, "NaN"),
    "X inf": (_bad(x=np.where(np.eye(6, 3) > 0, -np.inf, X6)), ValueError, "inf"),
    "Y NaN": (_bad(y=np.full((6, 2), np.nan)), ValueError, "NaN"),
    "X 3-D": (_bad(x=np.zeros((6, 3, 1))), ValueError, "2-D"),
    "X text": (_bad(x=[["a", "b", "c"]] * 6), TypeError, "real numbers"),
    "X complex": (_bad(x=X6 + 1j), TypeError, "complex"),
    "X None": (_bad(x=[[None, 1.0, 2.0]] + X6[1:].tolist()), TypeError, "NoneType"),
    "labels text": (_bad(y=np.array(list("abcabc")), loss="cross_entropy"), TypeError, "integers"),
    "labels uint64": (
        _bad(y=np.array([0, 1, 2**64 - 1, 0, 1, 1], np.uint64), loss="cross_entropy"),
        ValueError,
        "18446744073709551615",
    ),
    "label too big": (_bad(y=np.array([0, 1, 2, 0, 1, 1]), loss="cross_entropy"), ValueError, r"0\.\.1"),
    "label negative": (_bad(y=np.array([0, 1, -1, 0, 1, 1]), loss="cross_entropy"), ValueError, None),
    "label fraction": (_bad(y=np.array([0, 1, 0.5, 0, 1, 1]), loss="cross_entropy"), ValueError, None),
    "label NaN": (_bad(y=np.array([0, 1, np.nan, 0, 1, 1]), loss="cross_entropy"), ValueError, None),
    "label inf": (_bad(y=np.array([0, 1, np.inf, 0, 1, 1]), loss="cross_entropy"), ValueError, "integers"),
    "labels bool": (_bad(y=np.array([0, 1, 1, 0, 1, 0], bool), loss="cross_entropy"), TypeError, "bool"),
    "labels timedelta": (
        _bad(y=np.array([0, 1, 1, 0, 1, 0], "timedelta64[s]"), loss="cross_entropy"),
        TypeError,
        "timedelta64",
    ),
    "X timedelta": (_bad(x=X6.astype(np.int64).astype("timedelta64[ms]")), TypeError, "timedelta64"),
    "X datetime": (_bad(x=X6.astype(np.int64).astype("datetime64[ms]")), TypeError, "datetime64"),
    "labels count": (_bad(y=np.array([0, 1, 1]), loss="cross_entropy"), ValueError, r"6.*3"),
    "one-hot width": (_bad(y=np.eye(3)[[0, 1, 2, 0, 1, 2]], loss="cross_entropy"), ValueError, r"2.*3"),
    "epochs str": (_bad(epochs="10"), TypeError, "epochs"),
    "epochs float": (_bad(epochs=2.5), TypeError, "epochs"),
    "epochs bool": (_bad(epochs=True), TypeError, "epochs"),
    "epochs negative": (_bad(epochs=-1), ValueError, "epochs"),
    "batch zero": (_bad(batch_size=0), ValueError, "batch_size"),
    "batch float": (_bad(batch_size=1.5), TypeError, "batch_size"),
    "report zero": (_bad(report_every=0), ValueError, "report_every"),
    "report float": (_bad(report_every=2.0), TypeError, "report_every"),
    "unknown loss": (_bad(loss="mae"), ValueError, "mae"),
    "loss type": (_bad(loss=3), TypeError, "loss"),
    "callback": (_bad(callback=5), TypeError, "callback"),
    "l1 negative": (_bad(l1=-0.1), ValueError, "l1"),
    "l2 NaN": (_bad(l2=float("nan")), ValueError, "l2"),
    "optimizer of other params": (_bad(optimizer="other"), ValueError, "optimizer"),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_fit_arguments_raise_before_training(case):
    (x, y, kw), error, match = BAD_CALLS[case]
    kw = dict(kw)
    model = small_model()
    if kw.get("optimizer") == "other":
        kw["optimizer"] = tm.optim.SGD(small_model().parameters(), lr=0.1)
    before = params_of(model)
    with pytest.raises(error, match=match):
        model.fit(x, y, **{"epochs": 3, **kw})
    np.testing.assert_array_equal(params_of(model), before)
    model.fit(X6, Y6, 1)  # the model is still fine
    assert not np.array_equal(params_of(model), before)


@pytest.mark.parametrize(
    ("loss", "Y"),
    [
        ("binary_cross_entropy", np.full((6, 2), 2.0)),  # probabilities must lie in [0, 1]
        ("hinge", np.zeros((6, 2))),  # labels must be -1 or +1
    ],
)
def test_fit_checks_targets_as_the_eager_loss_does(loss, Y):
    """Targets the eager loss rejects must not train silently under fit (validation in the front-end)."""
    model = small_model(out="sigmoid")
    eager_loss = getattr(tm.losses, loss)
    with pytest.raises(ValueError):
        eager_loss(model(X6[0]), Y[0].tolist())
    before = params_of(model)
    with pytest.raises(ValueError):
        model.fit(X6, Y, 3, loss=loss)
    np.testing.assert_array_equal(params_of(model), before)


# ---------------------------------------------------------------------------
# the program does not grow with the data
# ---------------------------------------------------------------------------
def test_program_size_does_not_depend_on_the_number_of_samples():
    sizes = {}
    rng = np.random.default_rng(0)
    for n in (100, 100_000):
        with tm.Graph() as g:
            model = xor_model()
            X = rng.uniform(0.0, 1.0, (n, 2))
            Y = (X[:, :1] > X[:, 1:]).astype(float)
            h = model.fit(X, Y, 2, loss="mse", report_every=1)
            assert h.epochs_run == 2 and np.all(np.isfinite(h.loss))
            P = model.predict(X[:10])
            assert P.shape == (10, 1)
            # the cached training and predict programs, whatever their cache keys
            cached = model.__dict__.get("_programs", {}).values()
            programs = [p[0] if isinstance(p, tuple) else p for p in cached]
            assert len(programs) == 2 and all(isinstance(p, tm.Program) for p in programs)
            sizes[n] = (sorted(len(p) for p in programs), g.n)
    assert sizes[100] == sizes[100_000]
    assert max(sizes[100][0]) < 100


# ---------------------------------------------------------------------------
# the low-level API: placeholders, compile, Program.run / Program.fit
# ---------------------------------------------------------------------------
W0 = [0.3, -0.2, 0.1]


def logistic_loss(w, x, y):
    """Logistic regression's loss for one sample, written with exp and log."""
    z = w[0] * x[0] + w[1] * x[1] + w[2]
    p = 1.0 / (1.0 + (-z).exp())
    return -(y * p.log() + (1.0 - y) * (1.0 - p).log()), p


def logistic_samples(n=8):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(n, 2))
    y = (x[:, 0] - 0.5 * x[:, 1] > 0).astype(float)
    return np.column_stack([x, y])


def logistic_program():
    xs = tm.placeholders(2)
    ys = tm.placeholders(1)
    w = [tm.Value(v) for v in W0]
    loss, p = logistic_loss(w, xs, ys[0])
    return xs, ys, w, loss, p


@pytest.mark.parametrize(("batch_size", "reduction"), [(None, "mean"), (3, "mean"), (3, "sum")])
def test_program_fit_matches_an_eager_loop(batch_size, reduction):
    samples = logistic_samples()
    xs, ys, w, loss, _ = logistic_program()
    program = tm.compile(loss, inputs=xs + ys, params=w)
    h = program.fit(
        samples, 25, lr=0.5, batch_size=batch_size, reduction=reduction, shuffle=False, report_every=1
    )
    assert h.epochs_run == 25
    assert h.loss[-1] < 0.7 * h.loss[0]

    v = [tm.Value(x) for x in W0]
    opt = tm.optim.SGD(v, lr=0.5)
    n = len(samples)
    b = n if batch_size is None else batch_size
    eager = []
    for _ in range(25):
        total = 0.0
        for s in range(0, n, b):
            rows = samples[s : s + b]
            batch = sum(logistic_loss(v, row[:2].tolist(), float(row[2]))[0] for row in rows)
            if reduction == "mean":
                batch = batch / len(rows)
            total += batch.data * (len(rows) if reduction == "mean" else 1.0)
            opt.zero_grad()
            batch.backward()
            opt.step()
        eager.append(total / n if reduction == "mean" else total)
    np.testing.assert_allclose(h.loss, eager, **CLOSE)
    np.testing.assert_allclose([p.data for p in w], [p.data for p in v], **CLOSE)


def test_program_run_gives_every_output_per_sample():
    samples = logistic_samples(100)  # more samples than one block of lanes
    xs, ys, w, loss, p = logistic_program()
    program = tm.compile([loss, p], inputs=xs + ys, params=w)
    assert program.n_inputs == 3 and program.n_outputs == 2 and len(program) > 0
    assert repr(program).startswith("Program(")
    out = program.run(samples)
    assert out.shape == (100, 2) and out.dtype == np.float64
    expected = [[t.data for t in logistic_loss(w, r[:2].tolist(), float(r[2]))] for r in samples]
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-14)
    assert program.run(np.zeros((0, 3))).shape == (0, 2)
    # run reads the parameters' current values, and trained values are seen by eager code
    w[2].data = 5.0
    np.testing.assert_allclose(
        program.run(samples[:1])[0, 1], logistic_loss(w, samples[0, :2].tolist(), 0.0)[1].data
    )
    program.fit(samples, 3, lr=0.1)
    expected = [[t.data for t in logistic_loss(w, r[:2].tolist(), float(r[2]))] for r in samples]
    np.testing.assert_allclose(program.run(samples), expected, rtol=1e-12, atol=1e-14)


def test_other_leaves_are_constants_copied_at_compile_time():
    x = tm.placeholders(1)
    c = tm.Value(2.0)
    program = tm.compile(x[0] * c, inputs=x)
    c.data = 5.0
    np.testing.assert_array_equal(program.run([[1.0], [3.0]]), [[2.0], [6.0]])


def test_program_size_does_not_depend_on_the_samples():
    xs, ys, w, loss, _ = logistic_program()
    program = tm.compile(loss, inputs=xs + ys, params=w)
    rows = len(program)
    program.fit(logistic_samples(1000), 2, lr=0.1)
    assert len(program) == rows


def test_compile_errors():
    xs, ys, w, loss, p = logistic_program()
    with pytest.raises(ValueError, match="leaf"):
        tm.compile(loss, inputs=[xs[0] * 2.0, xs[1], ys[0]], params=w)
    with pytest.raises(ValueError, match="leaf"):
        tm.compile(loss, inputs=xs + ys, params=[w[0] * 1.0, w[1], w[2]])
    with pytest.raises(ValueError, match="twice"):
        tm.compile(loss, inputs=xs + ys, params=[w[0], w[1], w[0]])
    with pytest.raises(ValueError, match="twice"):
        tm.compile(loss, inputs=[xs[0], xs[0], ys[0]], params=w)
    with pytest.raises(ValueError, match="twice|both"):
        tm.compile(loss, inputs=xs + ys, params=[*w, xs[0]])
    with tm.Graph():
        stranger = tm.Value(1.0)
    with pytest.raises(ValueError, match="graphs"):
        tm.compile(loss, inputs=xs + ys, params=[*w, stranger])
    with pytest.raises(ValueError, match="graphs"):
        tm.compile(stranger, inputs=xs + ys, params=w)
    with pytest.raises(TypeError):
        tm.compile(loss, inputs=[1.0, xs[1], ys[0]], params=w)
    with pytest.raises(ValueError):
        tm.compile([], inputs=xs, params=w)
    with pytest.raises(ValueError):
        tm.placeholders(0)


def test_program_fit_argument_errors():
    xs, ys, w, loss, _ = logistic_program()
    program = tm.compile(loss, inputs=xs + ys, params=w)
    samples = logistic_samples()
    with pytest.raises(ValueError, match="lr"):
        program.fit(samples, 3)
    with pytest.raises(ValueError, match="either"):
        program.fit(samples, 3, lr=0.1, optimizer=tm.optim.SGD(w, lr=0.1))
    with pytest.raises(ValueError, match="optimizer"):
        program.fit(samples, 3, optimizer=tm.optim.SGD(w[:2], lr=0.1))
    with pytest.raises(ValueError, match="reduction"):
        program.fit(samples, 3, lr=0.1, reduction="max")
    with pytest.raises(ValueError, match=r"3.*2"):
        program.fit(samples[:, :2], 3, lr=0.1)
    with pytest.raises(ValueError, match=r"3.*2"):
        program.run(samples[:, :2])
    with pytest.raises(ValueError):
        program.fit(np.zeros((0, 3)), 3, lr=0.1)
    assert [p.data for p in w] == W0


# ---------------------------------------------------------------------------
# optimisers and penalties
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [
        lambda params: tm.optim.Adam(params, lr=0.05),
        lambda params: tm.optim.SGD(params, lr=0.05, momentum=0.9),
    ],
    ids=["adam", "sgd_momentum"],
)
@pytest.mark.parametrize("batch_size", [None, 3])
def test_fit_with_an_optimizer_matches_eager_steps(make, batch_size):
    X, Y = regression_data(7)
    model = small_model()
    opt = make(model.parameters())
    h = model.fit(X, Y, 6, batch_size=batch_size, shuffle=False, report_every=1, optimizer=opt)
    eager = small_model()
    eager_opt = make(eager.parameters())
    loss, params = eager_train(
        eager,
        X,
        Y,
        6,
        lambda m, xb, yb: tm.losses.mse(_rows(m, xb), yb),
        batch_size=batch_size,
        optimizer=eager_opt,
    )
    np.testing.assert_allclose(h.loss, loss, **EXACT)
    np.testing.assert_allclose(params_of(model), params, **EXACT)
    assert opt.t == eager_opt.t
    np.testing.assert_allclose(opt.state, eager_opt.state, **EXACT)


@pytest.mark.parametrize("batch_size", [None, 3])
@pytest.mark.parametrize(
    ("loss", "l1", "l2"), [("mse", 0.01, 0.0), ("mse", 0.0, 0.03), ("mse", 0.01, 0.03), ("sse", 0.02, 0.01)]
)
def test_l1_l2_match_eager_penalties(loss, l1, l2, batch_size):
    X, Y = regression_data(7)
    model = small_model()
    h = model.fit(X, Y, 5, loss=loss, batch_size=batch_size, shuffle=False, report_every=1, l1=l1, l2=l2)
    reduction = "mean" if loss == "mse" else "sum"
    eager_loss, eager_params = eager_train(
        small_model(),
        X,
        Y,
        5,
        lambda m, xb, yb: tm.losses.mse(_rows(m, xb), yb, reduction=reduction),
        batch_size=batch_size,
        mean=loss == "mse",
        penalty=lambda m: tm.losses.l1_penalty(m, l1) + tm.losses.l2_penalty(m, l2),
    )
    np.testing.assert_allclose(h.loss, eager_loss, **CLOSE)
    np.testing.assert_allclose(params_of(model), eager_params, **CLOSE)
    plain = small_model()
    plain.fit(X, Y, 5, loss=loss, batch_size=batch_size, shuffle=False)
    assert not np.allclose(params_of(plain), eager_params)  # the penalty made a difference


# ---------------------------------------------------------------------------
# Wide batches (8 lanes or more take the vectorised shared-weight gradient path)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [8, 32, 64, 100, None])
def test_wide_batches_match_numpy_reference(batch_size):
    X, Y = regression_data(150, seed=3)
    model = small_model(lr=0.05)
    ref = reference_of(model)
    b = 150 if batch_size is None else batch_size
    ref_loss, ref_params = ref.sgd(params_of(model), X, Y, 3, 0.05, b, "mean")
    h = model.fit(X, Y, 3, loss="mse", batch_size=batch_size, shuffle=False, report_every=1)
    np.testing.assert_allclose(h.loss, ref_loss, **CLOSE)
    np.testing.assert_allclose(params_of(model), ref_params, **CLOSE)


# ---------------------------------------------------------------------------
# Dropout
# ---------------------------------------------------------------------------
def test_dropout_row_drops_and_scales_with_its_gradient():
    x, keep, drop = tm.Value(3.0), tm.Value(0.7), tm.Value(0.1)
    kept = tm.dropout(x, keep, 0.25)  # u >= p: scaled by 1 / (1 - p)
    dropped = tm.dropout(x, drop, 0.25)  # u < p: 0
    assert kept.data == 3.0 / 0.75 and dropped.data == 0.0
    (kept + dropped).backward()
    assert x.grad == 1.0 / 0.75
    assert keep.grad == 0.0 and drop.grad == 0.0
    with pytest.raises(ValueError, match="below 1"):
        tm.dropout(x, keep, 1.0)


def _dropout_fit(seed, rate, epochs=5):
    X, Y = regression_data(40, seed=5)
    model = tm.MLP(3, [16, 2], 0.1, "tanh", seed=2, output_activation="linear")
    h = model.fit(X, Y, epochs, loss="mse", batch_size=8, seed=seed, dropout=rate, report_every=1)
    return h.loss, params_of(model), model, X


def test_dropout_is_reproducible_with_a_seed_and_differs_otherwise():
    loss_a, params_a, _, _ = _dropout_fit(11, 0.3)
    loss_b, params_b, _, _ = _dropout_fit(11, 0.3)
    loss_c, params_c, _, _ = _dropout_fit(12, 0.3)
    np.testing.assert_array_equal(loss_a, loss_b)
    np.testing.assert_array_equal(params_a, params_b)
    assert not np.array_equal(params_a, params_c)


def test_dropout_zero_is_no_dropout_and_predict_never_drops():
    loss_0, params_0, _, _ = _dropout_fit(11, 0.0)
    X, Y = regression_data(40, seed=5)
    plain = tm.MLP(3, [16, 2], 0.1, "tanh", seed=2, output_activation="linear")
    h = plain.fit(X, Y, 5, loss="mse", batch_size=8, seed=11, report_every=1)
    np.testing.assert_array_equal(loss_0, h.loss)
    np.testing.assert_array_equal(params_0, params_of(plain))
    _, _, model, X = _dropout_fit(11, 0.5)
    first = model.predict(X)
    np.testing.assert_array_equal(first, model.predict(X))  # deterministic
    eager = np.array([[v.data for v in model(list(row))] for row in X])
    np.testing.assert_allclose(first, eager, rtol=1e-12, atol=1e-12)


def test_dropout_drops_about_the_rate_of_hidden_units():
    # one hidden unit, weight 1 on a constant input, output weight 1: the loss
    # gradient w.r.t. the output bias is (prediction - y) per sample, so the mean
    # prediction over many samples tells the fraction of kept units
    model = tm.MLP(1, [1, 1], 0.0, "linear", seed=0)
    w1, b1, w2, b2 = model.parameters()
    w1.data, b1.data, w2.data, b2.data = 1.0, 0.0, 1.0, 0.0
    n = 4000
    X = np.ones((n, 1))
    Y = np.zeros((n, 1))
    seen = []
    model.fit(X, Y, 1, loss="sse", dropout=0.3, seed=4, callback=lambda e, loss: seen.append(loss))
    # each sample's output is 1 / 0.7 if kept, else 0; sse sums their squares
    kept_fraction = seen[0] * 0.7**2 / n
    assert abs(kept_fraction - 0.7) < 0.03


def test_dropout_must_be_below_one():
    X, Y = regression_data(5)
    model = small_model()
    before = params_of(model)
    with pytest.raises(ValueError, match="dropout"):
        model.fit(X, Y, 2, dropout=1.0)
    np.testing.assert_array_equal(before, params_of(model))


def test_a_program_whose_parameters_were_freed_raises_clearly(own_graph):
    X, Y = regression_data(5)
    model = small_model()
    model.fit(X, Y, 2)
    own_graph.clear()
    with pytest.raises(RuntimeError, match="freed"):
        model.fit(X, Y, 2)
    with pytest.raises(RuntimeError, match="freed"):
        model.predict(X)


@pytest.mark.parametrize(("reduction", "steps"), [("mean", [1.0, 1.0]), ("sum", [4.0, 2.0])])
def test_a_loss_that_is_a_parameter_gets_its_gradient_from_every_sample(reduction, steps):
    """The loss row itself is a shared (LEAF) row: its seed gradient is summed over lanes."""
    with tm.Graph():
        (x,) = tm.placeholders(1)
        p = tm.Value(1.0)
        program = tm.compile(p, [x], [p])
        history = program.fit(np.zeros((6, 1)), 1, lr=0.1, batch_size=4, shuffle=False, reduction=reduction)
        assert p.data == pytest.approx(1.0 - 0.1 * sum(steps), abs=1e-15)
        # each sample's loss is p before its batch's step: 4 samples at 1.0, 2 after the first step
        after_first = 1.0 - 0.1 * steps[0]
        total = 4 * 1.0 + 2 * after_first
        assert history.loss[0] == pytest.approx(total / 6 if reduction == "mean" else total, abs=1e-15)


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_tracing_a_large_model_leaves_no_rows_behind(dropout):
    """fit and predict trace the model into rows they free again at once: room for
    the trace is reserved first, so no compaction can get in the way of the rewind."""
    with tm.Graph() as g:
        model = tm.MLP(64, [32, 10], 0.1, tm.Activation.TANH, seed=0, output_activation="linear")
        rows = g.n
        x = np.random.default_rng(0).random((40, 64))
        model.fit(x, np.arange(40) % 10, epochs=1, loss="cross_entropy", progress=False, dropout=dropout)
        assert (g.n, g.n_eval) == (rows, rows)
        model.predict(x)
        assert (g.n, g.n_eval) == (rows, rows)


def test_parameters_set_in_a_callback_are_what_training_continues_from():
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    Y = np.array([0.0, 1.0, 1.0, 0.0])
    with tm.Graph():
        model = tm.MLP(2, [4, 1], 0.1, tm.Activation.TANH, seed=1)
        twin = tm.MLP(2, [4, 1], 0.1, tm.Activation.TANH, seed=2)
        p = model.parameters()[0]

        def reset(epoch, loss):
            if epoch == 10:
                for a, b in zip(model.parameters(), twin.parameters()):
                    a.data = b.data  # e.g. restoring a snapshot

        model.fit(X, Y, epochs=30, report_every=5, callback=reset, progress=False)
        # from epoch 11 on it trains exactly as the twin does from its own start
        twin.fit(X, Y, epochs=19, progress=False)
        assert [a.data for a in model.parameters()] == [b.data for b in twin.parameters()]
        assert p.data == model.parameters()[0].data


def test_binary_cross_entropy_needs_a_sigmoid_output():
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    with tm.Graph():
        model = tm.MLP(2, [4, 1], 0.1, tm.Activation.TANH, seed=1, output_activation="linear")
        before = params_of(model)
        with pytest.raises(ValueError, match="output_activation='sigmoid'"):
            model.fit(
                X, np.array([0.0, 1.0, 1.0, 0.0]), epochs=3, loss="binary_cross_entropy", progress=False
            )
        np.testing.assert_array_equal(params_of(model), before)


def test_a_callback_that_clears_the_graph_and_stops_gets_its_history():
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    with tm.Graph() as g:
        model = tm.MLP(2, [4, 1], 0.1, tm.Activation.TANH, seed=1)

        def clear_and_stop(epoch, loss):
            if epoch == 3:
                g.clear()
                return False
            return True

        y = np.array([0.0, 1.0, 1.0, 0.0])
        history = model.fit(X, y, epochs=10, report_every=1, callback=clear_and_stop)
        assert history.stopped_early and history.epochs_run == 4


def test_compile_names_the_first_input_or_parameter_that_is_not_a_leaf():
    a, b = tm.Value(1.0), tm.Value(2.0)
    c = a * b
    with pytest.raises(ValueError, match="compile: parameter 1 is not a leaf"):
        tm.compile([c * 3.0], [a], [b, c])
    with pytest.raises(ValueError, match="compile: input 0 is not a leaf"):
        tm.compile([c * 3.0], [c], [a])


def test_compile_names_the_first_argument_that_is_not_a_value():
    a, b = tm.Value(1.0), tm.Value(2.0)
    with pytest.raises(TypeError, match="compile: parameter 1 is float, expected a Value"):
        tm.compile([a * b], [a], [b, 3.0])
