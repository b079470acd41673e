"""tm.sweep: every point trained as the same model trained alone by ``fit``; threads and Dask.

The Dask tests start a real LocalCluster (worker processes, loopback only)
and are skipped when dask.distributed is not installed.
"""

from __future__ import annotations

import copy
import os
import sys
import time

import numpy as np
import pytest

import tinyml as tm
from tinyml.sweep import grid_points

from .train_helpers import XOR_X, XOR_Y, params_of

GRID = {"lr": [0.05, 0.2], "hidden": [3, 4], "seed": [0, 1, 2]}
FIT = dict(epochs=40, loss="sse", batch_size=2, seed=3)


def build(lr, hidden, seed):
    return tm.MLP(2, [hidden, 1], lr, "tanh", seed=seed, init="uniform01")


def alone(point, X=XOR_X, Y=XOR_Y):
    with tm.Graph():
        model = build(**point)
        model.fit(X, Y, progress=False, **FIT)
    return model


def sse(model, X=XOR_X, Y=XOR_Y):
    return float(np.sum((model.predict(X) - Y) ** 2))


def check_against_solo_fits(result, X=XOR_X, Y=XOR_Y):
    assert len(result.records) == 12
    for i, rec in enumerate(result.records):
        point = {k: rec[k] for k in GRID}
        ref = alone(point, X, Y)
        np.testing.assert_allclose(params_of(result.model(i)), params_of(ref), rtol=1e-12, atol=1e-12)
        # final_loss: the trained model's loss on the whole training set (SSE: summed over samples)
        assert rec["final_loss"] == pytest.approx(sse(ref, X, Y), rel=1e-10)
        assert rec["epochs_run"] == 40 and rec["diverged"] is False


def test_grid_points_are_every_combination_in_order():
    points = grid_points(GRID)
    assert len(points) == 12
    assert points[0] == {"lr": 0.05, "hidden": 3, "seed": 0}
    assert points[1] == {"lr": 0.05, "hidden": 3, "seed": 1}
    assert points[-1] == {"lr": 0.2, "hidden": 4, "seed": 2}


def test_threads_sweep_matches_solo_fits_and_best_is_the_lowest_loss():
    result = tm.sweep(build, GRID, XOR_X, XOR_Y, progress=False, **FIT)
    check_against_solo_fits(result)
    losses = [r["final_loss"] for r in result.records]
    assert result.best is result.records[int(np.argmin(losses))]
    assert result.retried == []


def test_validation_loss_and_best_by_it():
    rng = np.random.default_rng(0)
    Xv = rng.uniform(size=(5, 2))
    Yv = rng.uniform(size=(5, 1))
    result = tm.sweep(
        build, GRID, XOR_X, XOR_Y, validation_data=(Xv, Yv), chunk_size=5, progress=False, **FIT
    )
    for i, rec in enumerate(result.records):
        assert rec["val_loss"] == pytest.approx(sse(result.model(i), Xv, Yv), rel=1e-10)
    assert result.best is min(result.records, key=lambda r: r["val_loss"])


def test_diverged_points_are_flagged_and_never_best():
    grid = {"lr": [0.1, 1e4], "hidden": [3], "seed": [0]}
    result = tm.sweep(
        lambda lr, hidden, seed: tm.MLP(2, [hidden, 1], lr, "tanh", seed=seed, output_activation="linear"),
        grid, XOR_X, XOR_Y, progress=False, **FIT,
    )  # fmt: skip
    assert [r["diverged"] for r in result.records] == [False, True]
    assert result.records[1]["epochs_run"] < 40
    assert result.best is result.records[0]


def test_sweep_rejects_misuse():
    with pytest.raises(TypeError, match="grid must be a dict"):
        tm.sweep(build, [0.1], XOR_X, XOR_Y)
    with pytest.raises(ValueError, match=r"grid\['lr'\] is empty"):
        tm.sweep(build, {"lr": [], "hidden": [3], "seed": [0]}, XOR_X, XOR_Y)
    with pytest.raises(TypeError, match="returned str"):
        tm.sweep(lambda lr: "model", {"lr": [0.1]}, XOR_X, XOR_Y)
    with pytest.raises(TypeError, match="build must be callable"):
        tm.sweep(None, {"lr": [0.1]}, XOR_X, XOR_Y)


# ---------------------------------------------------------------------------
# Dask
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    # the scheduler always serves HTTP; port 0 picks a free one (8787 may be taken)
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0"
    )
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def test_dask_sweep_matches_solo_fits(client):
    result = tm.sweep(build, GRID, XOR_X, XOR_Y, client=client, progress=False, **FIT)
    check_against_solo_fits(result)
    assert result.retried == []


def test_dask_sweep_survives_a_worker_that_dies(client, tmp_path):
    marker = str(tmp_path / "died")

    def die_once(epoch, losses):  # runs on the worker, in the fit of one chunk
        if epoch >= 10:
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL))  # one worker only, atomically
            except FileExistsError:
                return
            os._exit(1)

    result = tm.sweep(
        build, GRID, XOR_X, XOR_Y, client=client, chunk_size=6, progress=False, callback=die_once,
        report_every=10, **FIT,
    )  # fmt: skip
    assert os.path.exists(marker)  # a worker did die
    check_against_solo_fits(result)
    # the points of the chunk that was running there: one architecture's (hidden 3 or 4)
    assert result.retried in ([0, 1, 2, 6, 7, 8], [3, 4, 5, 9, 10, 11])


def test_models_are_deep_copyable_after_a_dask_sweep(client):
    result = tm.sweep(build, {"lr": [0.1], "hidden": [3], "seed": [0, 1]}, XOR_X, XOR_Y, client=client,
                      progress=False, **FIT)  # fmt: skip
    twin = copy.deepcopy(result.model(1))
    np.testing.assert_array_equal(twin.predict(XOR_X), result.model(1).predict(XOR_X))


def test_progress_bar_counts_finished_chunks(capsys, monkeypatch):
    pytest.importorskip("tqdm")
    # the bar stays silent for runs under a second; show this short one at once
    monkeypatch.setattr(
        sys.modules["tinyml.sweep"],  # the module (tm.sweep is the function)
        "progress_bar",
        lambda total, desc, unit: tm.train.ProgressBar(total, desc, unit, delay=0.0),
    )
    tm.sweep(build, GRID, XOR_X, XOR_Y, chunk_size=3, progress=True, **FIT)
    err = capsys.readouterr().err
    assert "sweep" in err and "4/4" in err


def test_validation_data_is_checked_before_any_training():
    calls = []
    with pytest.raises(ValueError, match="validation_data X must have 2 columns"):
        tm.sweep(build, GRID, XOR_X, XOR_Y, validation_data=(np.zeros((3, 3)), np.zeros((3, 1))),
                 callback=lambda e, losses: calls.append(e), progress=False, **FIT)  # fmt: skip
    with pytest.raises(ValueError, match="1 columns"):
        tm.sweep(build, GRID, XOR_X, XOR_Y, validation_data=(np.zeros((3, 2)), np.zeros((3, 2))),
                 callback=lambda e, losses: calls.append(e), progress=False, **FIT)  # fmt: skip
    assert calls == []  # no chunk trained a single epoch


def test_a_failing_chunk_stops_the_others_instead_of_waiting_for_them():
    # chunks [0, 1] and [2]: the one-member chunk fails at once; the other would train for
    # 200 reports, but stops after the kernel call under way once the sweep knows of the failure
    failed = []
    after = []

    def callback(epoch, losses):
        if len(losses) == 1:
            failed.append(epoch)
            raise RuntimeError("chunk failed")
        if failed:
            after.append(epoch)
            if len(after) == 1:
                time.sleep(0.5)  # time for the sweep to see the failure

    with pytest.raises(RuntimeError, match="chunk failed"):
        tm.sweep(build, {"lr": [0.1], "hidden": [3], "seed": [0, 1, 2]}, XOR_X, XOR_Y, chunk_size=2,
                 callback=callback, epochs=20_000, report_every=100, progress=False)  # fmt: skip
    assert len(after) <= 2
