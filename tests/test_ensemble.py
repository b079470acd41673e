"""tm.Ensemble: every member ends as the same model trained alone by ``fit`` (the reference).

Solo ``fit`` is itself checked against NumPy, eager and PyTorch references in
test_train.py / test_torch.py; here each member of an ensemble is compared
with a copy of it trained alone with the same arguments.
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import tinyml as tm

from .train_helpers import XOR_X, XOR_Y, params_of


@pytest.fixture(autouse=True)
def own_graph():
    with tm.Graph():
        yield


def members(n, sizes=(4, 1), n_in=2, lr=0.1, act="tanh", out=None, init="uniform01"):
    lrs = np.broadcast_to(lr, (n,))
    return [
        tm.MLP(n_in, list(sizes), float(lrs[s]), act, seed=s, output_activation=out, init=init)
        for s in range(n)
    ]


def solo_fit(model, X, Y, **kwargs):
    """Train a deep copy of ``model`` alone; returns (copy, history or the TrainingDiverged)."""
    alone = copy.deepcopy(model)
    make = kwargs.get("optimizer")
    if callable(make):  # a factory, as the ensemble takes it: one optimiser for this model
        kwargs["optimizer"] = make(alone.parameters())
    try:
        return alone, alone.fit(X, Y, progress=False, **kwargs)
    except tm.TrainingDiverged as e:
        return alone, e


def regression(n=9, n_in=3, n_out=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_in))
    return X, np.tanh(X @ rng.normal(size=(n_in, n_out)))


def classes(n=10, n_in=3, k=3, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, n_in)), rng.integers(0, k, size=n)


CASES = {
    "xor sse sgd full batch": dict(data="xor", loss="sse", sizes=(4, 1)),
    "mse adam batch 4 shuffled": dict(
        data="reg", loss="mse", sizes=(5, 2), out="linear", batch_size=4, seed=7,
        optimizer=lambda ps: tm.optim.Adam(ps, lr=0.01),
    ),
    "cross entropy rmsprop batch 3": dict(
        data="cls", loss="cross_entropy", sizes=(4, 3), out="linear", batch_size=3, seed=2,
        optimizer=lambda ps: tm.optim.RMSprop(ps, lr=0.01, momentum=0.5, centered=True),
    ),
    "bce sgd momentum l1 l2": dict(
        data="bin", loss="binary_cross_entropy", sizes=(3, 1), out="sigmoid", batch_size=2, seed=3,
        optimizer=lambda ps: tm.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True), l1=0.001, l2=0.01,
    ),
    "hinge adamw one sample per step": dict(
        data="hinge", loss="hinge", sizes=(3, 1), out="linear", batch_size=1, seed=4,
        optimizer=lambda ps: tm.optim.AdamW(ps, lr=0.01, weight_decay=0.1, amsgrad=True),
    ),
}  # fmt: skip


def data_for(kind):
    if kind == "xor":
        return XOR_X, XOR_Y
    if kind == "reg":
        return regression()
    if kind == "cls":
        return classes()
    X, y = classes(k=2, seed=5)
    if kind == "bin":
        return X, y[:, None].astype(float)
    return X, 2.0 * y[:, None] - 1.0  # hinge: -1 / +1


@pytest.mark.parametrize("case", list(CASES))
def test_members_end_as_the_same_models_trained_alone(case):
    spec = dict(CASES[case])
    X, Y = data_for(spec.pop("data"))
    sizes = spec.pop("sizes")
    out = spec.pop("out", None)
    models = members(5, sizes, X.shape[1], lr=[0.1, 0.05, 0.1, 0.2, 0.05], out=out)
    alone = [solo_fit(m, X, Y, epochs=60, report_every=7, **spec) for m in models]
    history = tm.Ensemble(models).fit(X, Y, epochs=60, report_every=7, progress=False, **spec)
    for i, (model, (ref, ref_history)) in enumerate(zip(models, alone)):
        assert np.abs(params_of(model) - params_of(ref)).max() <= 1e-12, f"member {i}"
        np.testing.assert_allclose(history.loss[i], ref_history.loss, rtol=1e-12, atol=1e-14)
        np.testing.assert_array_equal(history.epoch, ref_history.epoch)
    assert history.loss.shape == (5, len(history.epoch))
    assert history.epochs_run == 60


def test_an_optimizer_list_is_updated_as_solo_fits_update_theirs():
    X, Y = regression()
    models = members(3, (4, 2), 3, out="linear")
    opts = [tm.optim.Adam(m.parameters(), lr=0.02 * (i + 1)) for i, m in enumerate(models)]
    refs = [copy.deepcopy((m, o)) for m, o in zip(models, opts)]
    tm.Ensemble(models).fit(X, Y, epochs=25, batch_size=4, seed=1, optimizer=opts, progress=False)
    for (ref, ref_opt), model, opt in zip(refs, models, opts):
        ref.fit(X, Y, epochs=25, batch_size=4, seed=1, optimizer=ref_opt, progress=False)
        assert np.abs(params_of(model) - params_of(ref)).max() <= 1e-12
        np.testing.assert_allclose(opt.state, ref_opt.state, rtol=1e-12, atol=1e-15)
        assert opt.t == ref_opt.t == 25 * 3


def test_per_member_l2_and_dropout_match_solo_fits_with_those_values():
    X, Y = regression(n=8)
    l2 = np.array([0.0, 0.01, 0.1, 0.0])
    rates = np.array([0.0, 0.2, 0.5, 0.3])
    models = members(4, (6, 2), 3, out="linear")
    alone = [
        solo_fit(m, X, Y, epochs=40, batch_size=3, seed=9, loss="mse", l2=a, dropout=r)
        for m, a, r in zip(models, l2, rates)
    ]
    tm.Ensemble(models).fit(
        X, Y, epochs=40, batch_size=3, seed=9, loss="mse", l2=l2, dropout=rates, progress=False
    )
    for model, (ref, _) in zip(models, alone):
        assert np.abs(params_of(model) - params_of(ref)).max() <= 1e-12
    # dropout really acted: without it the member trained differently
    plain = copy.deepcopy(members(4, (6, 2), 3, out="linear")[2])
    plain.fit(X, Y, epochs=40, batch_size=3, seed=9, loss="mse", l2=0.1, progress=False)
    assert np.abs(params_of(plain) - params_of(models[2])).max() > 1e-6


def test_a_diverging_member_is_frozen_as_a_solo_fit_leaves_it_and_the_others_train_on():
    X, Y = regression()
    models = members(4, (4, 2), 3, lr=[0.05, 40.0, 0.05, 1e3], out="linear", init="fan_in")
    alone = [solo_fit(m, X, Y, epochs=80, loss="sse", report_every=10) for m in models]
    ens = tm.Ensemble(models)
    history = ens.fit(X, Y, epochs=80, loss="sse", report_every=10, progress=False)
    failed = [isinstance(h, tm.TrainingDiverged) for _, h in alone]
    assert failed == [False, True, False, True]  # the set-up: two of them diverge alone
    np.testing.assert_array_equal(ens.diverged, failed)
    for i, (model, (ref, ref_history)) in enumerate(zip(models, alone)):
        # diverging parameters grow large: 1e-12 relative
        np.testing.assert_allclose(params_of(model), params_of(ref), rtol=1e-12, atol=1e-12, err_msg=f"{i}")
        assert np.all(np.isfinite(params_of(model)))
        if failed[i]:
            assert ens.epochs_run[i] == ref_history.epoch
            assert ens.fail_loss[i] == ref_history.loss or not np.isfinite(ref_history.loss)
            recorded = len(ref_history.history.loss)
            np.testing.assert_allclose(history.loss[i, :recorded], ref_history.history.loss, rtol=1e-12)
            assert np.all(np.isnan(history.loss[i, recorded:]))
        else:
            assert ens.epochs_run[i] == 80
            np.testing.assert_allclose(history.loss[i], ref_history.loss, rtol=1e-12)


def test_predict_is_each_members_predict():
    X, Y = regression(n=11)
    models = members(6, (5, 2), 3, out="linear")
    ens = tm.Ensemble(models)
    ens.fit(X, Y, epochs=5, loss="mse", progress=False)
    out = ens.predict(X)
    assert out.shape == (6, 11, 2)
    for i, m in enumerate(models):
        np.testing.assert_array_equal(out[i], m.predict(X))
    # and follows parameters changed afterwards
    models[1].parameters()[0].data += 1.0
    np.testing.assert_array_equal(ens.predict(X)[1], models[1].predict(X))


def test_loss_is_each_members_loss_on_the_whole_set():
    X, Y = regression(n=7)
    models = members(3, (4, 2), 3, out="linear")
    ens = tm.Ensemble(models)
    for name, ref in (("mse", lambda p: np.mean((p - Y) ** 2, axis=(1, 2))),
                      ("sse", lambda p: np.sum((p - Y) ** 2, axis=(1, 2))),):  # fmt: skip
        expected = ref(ens.predict(X))
        # the library's "mse" averages over outputs and samples, "sse" sums over outputs per sample
        if name == "mse":
            np.testing.assert_allclose(ens.loss(X, Y, name), expected, rtol=1e-12)
        else:
            np.testing.assert_allclose(ens.loss(X, Y, name), expected, rtol=1e-12)


def test_members_must_share_one_architecture():
    with pytest.raises(
        ValueError, match=r"member 2 has layer_sizes=\[3, 1\] where member 0 has layer_sizes=\[4, 1\]"
    ):
        tm.Ensemble(members(2) + [tm.MLP(2, [3, 1], seed=1)])
    with pytest.raises(ValueError, match="member 1 has activation='relu'"):
        tm.Ensemble([tm.MLP(2, [4, 1], activation="tanh"), tm.MLP(2, [4, 1], activation="relu")])
    with pytest.raises(ValueError, match="member 1 has n_inputs=3"):
        tm.Ensemble([tm.MLP(2, [4, 1]), tm.MLP(3, [4, 1])])
    m = tm.MLP(2, [4, 1])
    with pytest.raises(ValueError, match="same model object"):
        tm.Ensemble([m, m])
    with pytest.raises(ValueError, match="at least one model"):
        tm.Ensemble([])
    with pytest.raises(TypeError, match="member 1 is str"):
        tm.Ensemble([m, "model"])
    with pytest.raises(TypeError, match="a list of models"):
        tm.Ensemble(m)


def test_fit_rejects_misuse():
    ens = tm.Ensemble(members(3))
    with pytest.raises(TypeError, match="one optimizer per member"):
        ens.fit(XOR_X, XOR_Y, optimizer=tm.optim.SGD(ens.models[0].parameters(), lr=0.1))
    with pytest.raises(ValueError, match="got 2 optimizers for 3 members"):
        ens.fit(XOR_X, XOR_Y, optimizer=[tm.optim.SGD(m.parameters(), lr=0.1) for m in ens.models[:2]])
    with pytest.raises(ValueError, match="optimizer 1 must be built over exactly member 1"):
        ens.fit(XOR_X, XOR_Y, optimizer=[tm.optim.SGD(ens.models[0].parameters(), lr=0.1)] * 3)
    with pytest.raises(ValueError, match="one kind"):
        ens.fit(XOR_X, XOR_Y, optimizer=[
            tm.optim.SGD(ens.models[0].parameters(), lr=0.1), tm.optim.Adam(ens.models[1].parameters()),
            tm.optim.SGD(ens.models[2].parameters(), lr=0.1)])  # fmt: skip
    with pytest.raises(ValueError, match=r"l2 must be a number or an array of 3"):
        ens.fit(XOR_X, XOR_Y, l2=[0.1, 0.2])
    with pytest.raises(ValueError, match="dropout must be below 1"):
        ens.fit(XOR_X, XOR_Y, dropout=[0.1, 1.0, 0.2])
    with pytest.raises(ValueError, match="X must have 2 columns"):
        ens.fit(np.zeros((4, 3)), XOR_Y)


def test_callback_gets_every_members_loss_and_can_stop():
    models = members(3)
    seen = []

    def callback(epoch, losses):
        seen.append((epoch, losses))
        return epoch < 20

    history = tm.Ensemble(models).fit(
        XOR_X, XOR_Y, epochs=100, loss="sse", report_every=10, callback=callback, progress=False
    )
    assert [e for e, _ in seen] == [0, 10, 20]
    assert all(v.shape == (3,) for _, v in seen)
    np.testing.assert_array_equal(seen[-1][1], history.loss[:, -1])
    assert history.stopped_early and history.epochs_run == 21


def test_a_model_unpickled_from_read_only_memory_predicts_and_trains():
    model = tm.MLP(2, [4, 1], 0.1, seed=0)
    expected = model.predict(XOR_X)
    blob = pickle.dumps(model, protocol=5, buffer_callback=(buffers := []).append)
    frozen = [memoryview(bytes(b.raw())) for b in buffers]  # bytes: a read-only buffer
    loaded = pickle.loads(blob, buffers=frozen)
    np.testing.assert_array_equal(loaded.predict(XOR_X), expected)
    loaded.fit(XOR_X, XOR_Y, epochs=3, progress=False)
    loaded.parameters()[0].data = 0.5


def test_a_model_loaded_with_joblib_mmap_predicts(tmp_path):
    joblib = pytest.importorskip("joblib")
    model = tm.MLP(2, [4, 1], 0.1, seed=0)
    path = tmp_path / "model.joblib"
    joblib.dump(model, path)  # before any predict: no traced program in the pickle
    loaded = joblib.load(path, mmap_mode="r")
    np.testing.assert_array_equal(loaded.predict(XOR_X), model.predict(XOR_X))


def test_members_beyond_one_block_of_lanes_train_as_alone():
    # more members than kernels.MEMBER_BLOCK: several blocks, learning-rate groups across them
    n = tm.kernels.MEMBER_BLOCK + 45
    lrs = np.where(np.arange(n) % 3 == 0, 0.1, 0.3)
    lrs[n - 2] = 1e4  # diverges, in the second block
    models = members(n, lr=lrs, out="linear", init="fan_in")
    picks = [0, 1, tm.kernels.MEMBER_BLOCK - 1, tm.kernels.MEMBER_BLOCK, n - 2, n - 1]
    alone = {i: solo_fit(models[i], XOR_X, XOR_Y, epochs=30, loss="sse", batch_size=2, seed=5) for i in picks}
    ens = tm.Ensemble(models)
    history = ens.fit(XOR_X, XOR_Y, epochs=30, loss="sse", batch_size=2, seed=5, progress=False)
    for i, (ref, ref_history) in alone.items():
        np.testing.assert_allclose(
            params_of(models[i]), params_of(ref), rtol=1e-12, atol=1e-12, err_msg=f"{i}"
        )
        assert ens.diverged[i] == isinstance(ref_history, tm.TrainingDiverged)
    assert ens.diverged.sum() == 1 and ens.diverged[n - 2]
    assert np.all(np.isfinite(history.loss[np.arange(n) != n - 2]))


def test_zero_epochs_change_nothing_and_record_nothing():
    models = members(3)
    before = [params_of(m) for m in models]
    ens = tm.Ensemble(models)
    history = ens.fit(XOR_X, XOR_Y, epochs=0, progress=False)
    assert history.loss.shape == (3, 0) and history.epochs_run == 0
    for m, b in zip(models, before):
        np.testing.assert_array_equal(params_of(m), b)
    assert np.all(ens.epochs_run == 0) and not ens.diverged.any()


def test_optimizers_must_have_taken_the_same_number_of_steps():
    models = members(2)
    opts = [tm.optim.Adam(m.parameters()) for m in models]
    opts[1].t = 3
    with pytest.raises(ValueError, match="optimizer 1 has taken 3 steps, optimizer 0 0"):
        tm.Ensemble(models).fit(XOR_X, XOR_Y, optimizer=opts)


def test_validation_loss_per_member_matches_solo_fits():
    X, Y = regression(n=9)
    Xv, Yv = regression(n=5, seed=3)
    models = members(3, (4, 2), 3, lr=[0.05, 0.1, 0.2], out="linear")
    alone = [
        solo_fit(m, X, Y, epochs=30, loss="mse", report_every=7, validation_data=(Xv, Yv)) for m in models
    ]
    history = tm.Ensemble(models).fit(
        X, Y, epochs=30, loss="mse", report_every=7, validation_data=(Xv, Yv), progress=False
    )
    assert history.val_loss.shape == (3, len(history.epoch))
    for i, (_, ref_history) in enumerate(alone):
        np.testing.assert_allclose(history.val_loss[i], ref_history.val_loss, rtol=1e-12, err_msg=f"{i}")


def test_validation_with_learning_rates_out_of_order_keeps_each_member_its_own():
    # members are laid out grouped by learning rate (lane l holds member perm[l]); the validation
    # loss between calls must not write the members back into the lanes in member order
    X, Y = regression(n=9)
    Xv, Yv = regression(n=5, seed=3)
    models = members(3, (4, 2), 3, lr=[0.2, 0.05, 0.1], out="linear")
    alone = [
        solo_fit(m, X, Y, epochs=30, loss="mse", report_every=7, validation_data=(Xv, Yv)) for m in models
    ]
    ens = tm.Ensemble(models)
    history = ens.fit(X, Y, epochs=30, loss="mse", report_every=7, validation_data=(Xv, Yv), progress=False)
    for i, (ref, ref_history) in enumerate(alone):
        np.testing.assert_allclose(params_of(ens.models[i]), params_of(ref), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(history.val_loss[i], ref_history.val_loss, rtol=1e-12, err_msg=f"{i}")


def test_a_member_whose_step_overflows_keeps_its_parameters_and_the_others_train_on():
    # finite loss and gradients, but lr * gradient overflows: the step itself is what fails.
    # 6 samples: below 8 lanes fit's dense blocks add in the rows' order, as the ensemble does;
    # from 8 lanes on its tiles round otherwise, and these large steps (targets of 100, a sum
    # loss) amplify that to 3e-9 in 20 epochs
    X, Y = regression(n=6)
    Y = 100.0 * Y
    models = members(3, (4, 2), 3, lr=[0.01, 1e308, 0.01], out="linear", init="fan_in")
    before = params_of(models[1]).copy()
    alone = [solo_fit(m, X, Y, epochs=20, loss="sse") for m in models]
    assert [isinstance(h, tm.TrainingDiverged) for _, h in alone] == [False, True, False]
    assert np.isfinite(alone[1][1].loss)  # the set-up: the loss was finite, the update was not
    ens = tm.Ensemble(models)
    history = ens.fit(X, Y, epochs=20, loss="sse", progress=False)
    np.testing.assert_array_equal(ens.diverged, [False, True, False])
    np.testing.assert_array_equal(params_of(models[1]), before)
    np.testing.assert_array_equal(params_of(models[1]), params_of(alone[1][0]))
    assert ens.epochs_run[1] == 0 and ens.fail_loss[1] == alone[1][1].loss
    assert np.all(np.isnan(history.loss[1]))
    for i in (0, 2):
        np.testing.assert_allclose(params_of(models[i]), params_of(alone[i][0]), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(history.loss[i], alone[i][1].loss, rtol=1e-12)


@pytest.mark.parametrize("act", ["relu", "sigmoid", "tanh"])
def test_each_hidden_activation_and_odd_fan_ins_match_solo_fits(act):
    # 3 inputs and 5 hidden units: the ensemble's backward pairs two inputs per pass, so an odd
    # fan-in leaves one INPUT (first layer) and one computed input (second layer) on its own
    X, Y = regression(n=8, n_in=3, n_out=2)
    models = members(3, (5, 2), 3, lr=[0.05, 0.1, 0.02], act=act, out="linear", init="fan_in")
    alone = [solo_fit(m, X, Y, epochs=25, batch_size=3, seed=5, loss="mse") for m in models]
    history = tm.Ensemble(models).fit(X, Y, epochs=25, batch_size=3, seed=5, loss="mse", progress=False)
    for i, (ref, ref_history) in enumerate(alone):
        np.testing.assert_allclose(params_of(models[i]), params_of(ref), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(history.loss[i], ref_history.loss, rtol=1e-12, err_msg=f"{i}")


def test_a_report_period_past_int64_reports_the_last_epoch_only():
    # as fit: 10**30 used to raise OverflowError from the epoch arithmetic
    import numpy as np

    import tinyml as tm

    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    Y = np.array([[0.0], [1.0], [1.0], [0.0]])
    ens = tm.Ensemble([tm.MLP(2, [3, 1], 0.1, seed=s) for s in range(2)])
    history = ens.fit(X, Y, epochs=5, loss="sse", report_every=10**30)
    assert list(history.epoch) == [0, 4]
