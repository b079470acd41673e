"""Validation data, early stopping and learning-rate schedules in fit, against references.

The references train epoch by epoch (``fit(epochs=1)``, one kernel call each, the
learning rate set by hand, the validation loss computed with ``predict``) and
apply the early-stopping rule in plain Python.
"""

import math

import numpy as np
import pytest

import tinyml as tm

RNG = np.random.default_rng(3)
X = RNG.normal(size=(24, 3))
Y = (X @ np.array([1.0, -2.0, 0.5]))[:, None] + 0.1 * RNG.normal(size=(24, 1))
XV = RNG.normal(size=(10, 3))
YV = (XV @ np.array([1.0, -2.0, 0.5]))[:, None]


def make(seed=0, lr=0.05):
    return tm.MLP(3, [5, 1], lr, "tanh", seed=seed, output_activation="linear")


def params(model):
    return np.array([p.data for p in model.parameters()])


def mse(model, x, y):
    return float(np.mean((model.predict(x) - y) ** 2))


def reference_run(epochs, lrs=None, batch_size=None):
    """Per epoch: training loss, validation loss after the update, parameters before and after."""
    model = make()
    opt = tm.optim.SGD(model.parameters(), 0.05)
    rows = []
    for e in range(epochs):
        if lrs is not None:
            opt.lr = lrs[e]
        before = params(model)
        h = model.fit(X, Y, epochs=1, optimizer=opt, batch_size=batch_size, shuffle=False, progress=False)
        rows.append((float(h.loss[0]), mse(model, XV, YV), before, params(model)))
    return rows


# -- schedules ----------------------------------------------------------------------
SCHEDULES = [
    ("StepLR", {"step_size": 3, "gamma": 0.5}),
    ("StepLR", {"step_size": 1}),
    ("ExponentialLR", {"gamma": 0.9}),
    ("CosineAnnealingLR", {"T_max": 7}),
    ("CosineAnnealingLR", {"T_max": 5, "eta_min": 0.01}),
]


@pytest.mark.parametrize("name, kwargs", SCHEDULES)
def test_schedules_follow_torch(name, kwargs):
    torch = pytest.importorskip("torch")
    w = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    t_opt = torch.optim.SGD([w], lr=0.1)
    t_sched = getattr(torch.optim.lr_scheduler, name)(t_opt, **kwargs)
    opt = tm.optim.SGD(make().parameters(), 0.1)
    sched = getattr(tm.optim.lr_scheduler, name)(opt, **kwargs)
    assert sched.get_last_lr() == pytest.approx(t_sched.get_last_lr(), rel=1e-12)
    ours, theirs = [], []
    for _ in range(25):  # past T_max, where the cosine rises again
        t_opt.step()
        t_sched.step()
        sched.step()
        ours.append(sched.get_last_lr())
        theirs.append(t_sched.get_last_lr())
        assert opt.lr == ours[-1][0]
    assert all(type(v) is list and len(v) == 1 for v in ours)
    np.testing.assert_allclose(np.array(ours), np.array(theirs), rtol=1e-12, atol=1e-15)


def test_schedule_chunk_equals_steps():
    opt = tm.optim.SGD(make().parameters(), 0.2)
    sched = tm.optim.lr_scheduler.StepLR(opt, 4, gamma=0.3)
    ahead = sched.schedule(10)
    seen = []
    for _ in range(10):
        seen.append(opt.lr)
        sched.step()
    np.testing.assert_allclose(ahead, seen, rtol=1e-15)


def test_scheduler_arguments_checked():
    opt = tm.optim.SGD(make().parameters(), 0.2)
    with pytest.raises(ValueError, match="step_size"):
        tm.optim.lr_scheduler.StepLR(opt, 0)
    with pytest.raises(TypeError, match="T_max"):
        tm.optim.lr_scheduler.CosineAnnealingLR(opt, 2.5)
    with pytest.raises(TypeError, match="the class Adam"):
        tm.optim.lr_scheduler.ExponentialLR(tm.optim.Adam, 0.9)
    model = make()
    other = tm.optim.SGD(model.parameters(), 0.1)
    with pytest.raises(ValueError, match="scheduler must be built over the optimizer"):
        model.fit(X, Y, epochs=1, optimizer=other, scheduler=tm.optim.lr_scheduler.StepLR(opt, 2))
    with pytest.raises(TypeError, match="lr_scheduler"):
        model.fit(X, Y, epochs=1, scheduler="cosine")


@pytest.mark.parametrize("batch_size", [None, 7])
def test_fit_with_scheduler_steps_once_per_epoch(batch_size):
    epochs = 12
    model = make()
    opt = tm.optim.SGD(model.parameters(), 0.05)
    sched = tm.optim.lr_scheduler.StepLR(opt, 5, gamma=0.5)
    lrs = sched.schedule(epochs)
    h = model.fit(X, Y, epochs=epochs, scheduler=sched, batch_size=batch_size, shuffle=False,
                  report_every=1, progress=False)  # fmt: skip
    ref = reference_run(epochs, lrs, batch_size)
    np.testing.assert_allclose(h.loss, [r[0] for r in ref], rtol=1e-12)
    np.testing.assert_allclose(params(model), ref[-1][3], rtol=1e-12, atol=1e-15)
    assert sched.last_epoch == epochs
    assert sched.get_last_lr() == [0.05 * 0.5 ** (epochs // 5)] and opt.lr == 0.05 * 0.5**2


# -- validation ---------------------------------------------------------------------
def test_val_loss_is_after_each_epochs_update():
    epochs = 9
    model = make()
    opt = tm.optim.SGD(model.parameters(), 0.05)
    h = model.fit(X, Y, epochs=epochs, optimizer=opt, shuffle=False, report_every=1,
                  validation_data=(XV, YV), progress=False)  # fmt: skip
    ref = reference_run(epochs)
    assert h.val_loss.shape == h.loss.shape == (epochs,)
    np.testing.assert_allclose(h.loss, [r[0] for r in ref], rtol=1e-12)
    np.testing.assert_allclose(h.val_loss, [r[1] for r in ref], rtol=1e-12)
    assert h.val_loss[-1] == pytest.approx(mse(model, XV, YV), rel=1e-12)


def test_val_loss_follows_report_every_and_penalty():
    model = make()
    h = model.fit(X, Y, epochs=7, report_every=3, l2=0.01, validation_data=(XV, YV), progress=False)
    np.testing.assert_array_equal(h.epoch, [0, 3, 6])
    assert len(h.val_loss) == 3
    penalty = 0.01 * float(np.sum(params(model) ** 2))
    assert h.val_loss[-1] == pytest.approx(mse(model, XV, YV) + penalty, rel=1e-12)
    assert len(model.fit(X, Y, epochs=2, progress=False).val_loss) == 0


def test_val_loss_without_dropout_and_with_labels():
    x = RNG.normal(size=(30, 4))
    labels = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0)
    model = tm.MLP(4, [6, 3], 0.1, "relu", seed=1, output_activation="linear")
    h = model.fit(x[:20], labels[:20], epochs=4, loss="cross_entropy", dropout=0.5, seed=2,
                  validation_data=(x[20:], labels[20:]), report_every=1, progress=False)  # fmt: skip
    logits = model.predict(x[20:])
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    ref = -float(np.mean(logp[np.arange(10), labels[20:]]))
    assert h.val_loss[-1] == pytest.approx(ref, rel=1e-12)


def test_validation_data_checked():
    model = make()
    with pytest.raises(TypeError, match="pair"):
        model.fit(X, Y, epochs=1, validation_data=XV)
    with pytest.raises(ValueError, match="validation_data X must have 3 columns"):
        model.fit(X, Y, epochs=1, validation_data=(XV[:, :2], YV))
    with pytest.raises(ValueError, match="X has 10 samples but Y has 4"):
        model.fit(X, Y, epochs=1, validation_data=(XV, YV[:4]))


# -- early stopping -----------------------------------------------------------------
def expected_stop(monitored, patience, min_delta):
    """(epochs run, best epoch) by the rule: stop after `patience` epochs without an
    improvement larger than min_delta."""
    best, best_epoch, wait = math.inf, None, 0
    for e, v in enumerate(monitored):
        if v < best - min_delta:
            best, best_epoch, wait = v, e, 0
        else:
            wait += 1
            if wait >= patience:
                return e + 1, best_epoch
    return len(monitored), best_epoch


@pytest.mark.parametrize("restore", [True, False])
def test_early_stopping_on_validation_loss(restore):
    epochs = 60
    lr = 0.6  # large enough that the validation loss goes up and down
    model = make(lr=lr)
    ref = reference_run_lr(epochs, lr)
    val = [r[1] for r in ref]
    patience, delta = 3, 1e-3
    runs, best_epoch = expected_stop(val, patience, delta)
    assert runs < epochs, "the reference must stop early for this test to mean anything"
    es = tm.EarlyStopping(patience=patience, min_delta=delta, restore_best=restore)
    h = model.fit(X, Y, epochs=epochs, shuffle=False, validation_data=(XV, YV), early_stopping=es,
                  report_every=10, progress=False)  # fmt: skip
    assert h.epochs_run == runs and h.stopped_early
    assert es.best_epoch == best_epoch == h.best_epoch
    assert es.stopped_epoch == runs - 1 and h.epoch[-1] == runs - 1
    assert es.best == pytest.approx(val[best_epoch], rel=1e-12)
    np.testing.assert_allclose(h.val_loss[-1], val[runs - 1], rtol=1e-12)
    want = ref[best_epoch][3] if restore else ref[runs - 1][3]
    np.testing.assert_allclose(params(model), want, rtol=1e-12, atol=1e-15)


def reference_run_lr(epochs, lr):
    model = make(lr=lr)
    rows = []
    for _ in range(epochs):
        before = params(model)
        h = model.fit(X, Y, epochs=1, shuffle=False, progress=False)
        rows.append((float(h.loss[0]), mse(model, XV, YV), before, params(model)))
    return rows


def test_early_stopping_on_training_loss_restores_start_of_best_epoch():
    epochs = 60
    lr = 0.6
    ref = reference_run_lr(epochs, lr)
    train = [r[0] for r in ref]
    runs, best_epoch = expected_stop(train, 2, 0.0)
    assert runs < epochs
    model = make(lr=lr)
    es = tm.EarlyStopping(patience=2)
    h = model.fit(X, Y, epochs=epochs, shuffle=False, early_stopping=es, progress=False)
    assert (h.epochs_run, es.best_epoch) == (runs, best_epoch)
    # the training loss of epoch k is measured at the parameters before its update
    np.testing.assert_allclose(params(model), ref[best_epoch][2], rtol=1e-12, atol=1e-15)
    assert mse(model, X, Y) == pytest.approx(train[best_epoch], rel=1e-10)


def test_early_stopping_that_never_fires_still_restores_best():
    model = make()
    es = tm.EarlyStopping(patience=1000)
    h = model.fit(
        X, Y, epochs=15, validation_data=(XV, YV), early_stopping=es, report_every=1, progress=False
    )
    assert not h.stopped_early and es.stopped_epoch is None and h.epochs_run == 15
    assert es.best_epoch == int(np.argmin(h.val_loss))
    assert mse(model, XV, YV) == pytest.approx(h.val_loss.min(), rel=1e-12)


def test_early_stopping_with_scheduler_steps_only_epochs_run():
    lr = 0.6
    model = make(lr=lr)
    opt = tm.optim.SGD(model.parameters(), lr)
    sched = tm.optim.lr_scheduler.ExponentialLR(opt, 1.0)
    h = model.fit(X, Y, epochs=60, shuffle=False, validation_data=(XV, YV), scheduler=sched,
                  early_stopping=tm.EarlyStopping(patience=3, min_delta=1e-3), progress=False)  # fmt: skip
    assert h.stopped_early and sched.last_epoch == h.epochs_run


def test_early_stopping_arguments_checked():
    with pytest.raises(ValueError, match="patience"):
        tm.EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match="min_delta"):
        tm.EarlyStopping(min_delta=-0.1)
    with pytest.raises(TypeError, match="EarlyStopping"):
        make().fit(X, Y, epochs=1, early_stopping=5)


# -- progress -------------------------------------------------------------------------
def test_short_fit_prints_nothing(capsys):
    make().fit(X, Y, epochs=50, progress=False)  # compiles (when the cache is cold), silently
    assert capsys.readouterr().err == ""
    make().fit(X, Y, epochs=50, progress=True)  # well under the one-second delay
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_progress_bar_shows_rate_eta_and_figures():
    import io
    import time

    out = io.StringIO()
    with tm.train.ProgressBar(200, desc="fit", unit="epoch", delay=0.0, file=out) as bar:
        bar.update(50, loss=0.25)
        time.sleep(0.02)
        bar.update(100, loss=0.125)
    text = out.getvalue()
    assert "100/200" in text and "epoch/s" in text and "loss=0.125" in text
    assert "<" in text  # tqdm's "elapsed<remaining"


def test_progress_bar_silent_before_its_delay():
    import io

    out = io.StringIO()
    bar = tm.train.ProgressBar(10, delay=60.0, file=out)
    bar.update(10, loss=1.0)
    bar.close()
    assert out.getvalue() == ""


def test_program_fit_takes_the_same_conveniences():
    """The low-level Program.fit: validation samples, early stopping and a schedule."""
    model = make(lr=0.6)
    xs = tm.placeholders(3, model.graph)
    ys = tm.placeholders(1, model.graph)
    program = tm.compile(tm.losses.mse(model(xs), ys), xs + ys, model.parameters())
    opt = tm.optim.SGD(model.parameters(), 0.6)
    es = tm.EarlyStopping(patience=3, min_delta=1e-3)
    sched = tm.optim.lr_scheduler.StepLR(opt, 1000)
    h = program.fit(np.hstack([X, Y]), 60, optimizer=opt, shuffle=False, validation_data=np.hstack([XV, YV]),
                    early_stopping=es, scheduler=sched, progress=False)  # fmt: skip
    ref = reference_run_lr(60, 0.6)
    runs, best_epoch = expected_stop([r[1] for r in ref], 3, 1e-3)
    assert (h.epochs_run, es.best_epoch) == (runs, best_epoch)
    np.testing.assert_allclose(params(model), ref[best_epoch][3], rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="validation_data: expected 4 columns"):
        program.fit(np.hstack([X, Y]), 1, lr=0.1, validation_data=XV, progress=False)
