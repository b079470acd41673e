"""Grids of models: ``tm.sweep(build, grid, X, Y, client=None, **fit_kwargs)``.

``build(**point)`` makes a model for every combination of the grid; points of
one architecture are trained together as :class:`tinyml.Ensemble` chunks.
Without a client the chunks run in threads on this machine, one per core
(the kernels release the GIL). With a ``dask.distributed.Client`` the chunks
go to the cluster's workers, the same call on a ``LocalCluster`` or a real
one: each worker loads the kernels once before the chunks arrive, a chunk
travels as arrays (initial parameters, the architecture, the data) rather
than as pickled graphs, Dask reruns a chunk whose worker died (the result
lists those points in ``retried``), and progress is shown as chunks finish.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

import numpy as np

from .ensemble import Ensemble
from .graph import Graph
from .nn import MLP
from .train import _finite_matrix, _targets, progress_bar


@dataclass
class SweepResult:
    """What :func:`sweep` found: one record per grid point, in grid order.

    ``records[i]``: the point's values, ``final_loss`` (the loss of the trained
    model on the whole training set, without penalties or dropout),
    ``epochs_run``, ``diverged`` and, with validation data, ``val_loss``.
    ``best`` is the record with the lowest validation loss (the final loss
    without validation data), ignoring diverged points; ``model(i)`` is point
    i's trained model; ``retried`` lists the points whose chunk Dask ran again
    after a worker died.
    """

    records: list[dict]
    models: list[MLP] = field(repr=False)
    retried: list[int] = field(default_factory=list)

    @property
    def best(self) -> dict:
        key = "val_loss" if self.records and "val_loss" in self.records[0] else "final_loss"
        scores = np.array([r[key] if not r["diverged"] else np.nan for r in self.records], np.float64)
        if not np.any(np.isfinite(scores)):
            raise ValueError("sweep: every point diverged; there is no best one")
        return self.records[int(np.nanargmin(np.where(np.isfinite(scores), scores, np.nan)))]

    def model(self, i: int) -> MLP:
        """Point i's trained model."""
        return self.models[i]

    def __len__(self) -> int:
        return len(self.records)


def grid_points(grid: Mapping[str, object]) -> list[dict]:
    """Every combination of a dict of lists, the last key varying fastest."""
    if not isinstance(grid, Mapping):
        raise TypeError(f"sweep: grid must be a dict of lists, got {type(grid).__name__}")
    if not grid:
        return [{}]
    keys = list(grid)
    values = []
    for k in keys:
        if not isinstance(k, str):
            raise TypeError(f"sweep: grid keys must be argument names (str), got {k!r}")
        v = grid[k]
        if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
            raise TypeError(f"sweep: grid[{k!r}] must be a list of values, got {type(v).__name__}")
        v = list(v)
        if not v:
            raise ValueError(f"sweep: grid[{k!r}] is empty; give at least one value")
        values.append(v)
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def _architecture(model: MLP) -> tuple:
    return (type(model), model.n_inputs, tuple(model.layer_sizes), model.activation, model.output_activation)


def _spec(model: MLP) -> dict:
    """What a worker needs to make the same model again: its constructor's arguments."""
    return {
        "n_inputs": model.n_inputs,
        "layer_sizes": list(model.layer_sizes),
        "learning_rate": model.learning_rate,
        "activation": model.activation.value,
        "output_activation": model.output_activation.value,
    }


def sweep(
    build: Callable[..., MLP],
    grid: Mapping[str, object],
    X,
    Y,
    *,
    client=None,
    validation_data=None,
    chunk_size: int | None = None,
    progress: bool = True,
    **fit_kwargs,
) -> SweepResult:
    """Train ``build(**point)`` for every point of ``grid`` on ``X``, ``Y``; returns a SweepResult.

    ``fit_kwargs`` go to every chunk's ``Ensemble.fit`` (``epochs``, ``loss``,
    ``batch_size``, ``optimizer`` as a callable ``params -> optimiser``, ...).
    ``validation_data=(X_val, Y_val)`` adds each point's ``val_loss``.
    ``client``: None (threads on this machine, one per core) or a
    ``dask.distributed.Client``. ``chunk_size``: members per ensemble chunk
    (default: the points of an architecture split evenly over the cores or
    twice the cluster's worker threads).
    """
    if not callable(build):
        raise TypeError(f"sweep: build must be callable(**point) -> model, got {type(build).__name__}")
    points = grid_points(grid)
    fit_kwargs.setdefault("progress", False)  # one progress bar: the sweep's
    if fit_kwargs.get("progress"):
        raise ValueError("sweep: progress of the fits is not shown; pass progress= to sweep itself")
    x = _finite_matrix(X, "X")
    val = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError("sweep: validation_data must be a pair (X_val, Y_val)")
        val = (_finite_matrix(validation_data[0], "X_val"), np.asarray(validation_data[1]))
    models = []
    for point in points:
        with Graph(64):  # its own graph: chunks train in parallel, a graph is written by one
            model = build(**point)
        if not isinstance(model, MLP):
            raise TypeError(f"sweep: build({point}) returned {type(model).__name__}, expected a tm.MLP")
        models.append(model)
    groups: dict[tuple, list[int]] = {}
    for i, m in enumerate(models):
        groups.setdefault(_architecture(m), []).append(i)
    workers = (os.cpu_count() or 1) if client is None else 2 * max(1, sum(client.nthreads().values()))
    if chunk_size is not None:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
            raise ValueError(f"sweep: chunk_size must be an int >= 1, got {chunk_size!r}")
    if val is not None:  # checked now, not after hours of training
        for members in groups.values():
            first = models[members[0]]
            if val[0].shape[1] != first.n_inputs:
                raise ValueError(
                    f"sweep: validation_data X must have {first.n_inputs} columns (the model's inputs), "
                    f"got {val[0].shape[1]}"
                )
            _targets(first, val[1], fit_kwargs.get("loss", "mse"), val[0].shape[0])
    chunks = []
    for members in groups.values():
        size = chunk_size or math.ceil(len(members) / min(len(members), workers))
        chunks += [members[k : k + size] for k in range(0, len(members), size)]
    if client is None:
        outcomes, retried = _run_threads(models, chunks, x, Y, val, fit_kwargs, progress)
    else:
        outcomes, retried = _run_dask(client, models, chunks, x, np.asarray(Y), val, fit_kwargs, progress)
    records: list[dict] = [{} for _ in points]
    for chunk, out in zip(chunks, outcomes):
        for j, i in enumerate(chunk):
            rec = dict(points[i])
            rec["final_loss"] = float(out["final_loss"][j])
            rec["epochs_run"] = int(out["epochs_run"][j])
            rec["diverged"] = bool(out["diverged"][j])
            if val is not None:
                rec["val_loss"] = float(out["val_loss"][j])
            records[i] = rec
    return SweepResult(records, models, sorted(retried))


def _train(models, x, y, val, fit_kwargs, stop: threading.Event | None = None) -> dict:
    """Train one chunk as an ensemble; the numbers its records need. Setting ``stop``
    ends its training after the kernel call under way (Ctrl-C, or another chunk failed)."""
    ens = Ensemble(models)
    ens._stop = stop
    ens.fit(x, y, **fit_kwargs)
    loss = fit_kwargs.get("loss", "mse")
    out = {
        "final_loss": ens.loss(x, y, loss),
        "epochs_run": ens.epochs_run.copy(),
        "diverged": ens.diverged.copy(),
    }
    if val is not None:
        out["val_loss"] = ens.loss(val[0], val[1], loss)
    return out


def _progress_bar(total: int, progress: bool):
    return progress_bar(total, desc="sweep", unit="chunk") if progress else None


def _run_threads(models, chunks, x, y, val, fit_kwargs, progress):
    bar = _progress_bar(len(chunks), progress)
    outcomes: list[dict | None] = [None] * len(chunks)
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=min(len(chunks), os.cpu_count() or 1))
    try:
        futures = {
            pool.submit(_train, [models[i] for i in chunk], x, y, val, fit_kwargs, stop): k
            for k, chunk in enumerate(chunks)
        }
        for f in as_completed(futures):
            outcomes[futures[f]] = f.result()
            if bar is not None:
                bar.update(sum(o is not None for o in outcomes))
    except BaseException:
        # Ctrl-C or a failed chunk: the running chunks stop after their current kernel call
        # and the queued ones never start (waiting for them all could take hours)
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if bar is not None:
            bar.close()
    return outcomes, []


# ---------------------------------------------------------------------------
# Dask: chunks as arrays, kernels warmed once per worker, retries reported
# ---------------------------------------------------------------------------
def _train_remote(spec: dict, values: np.ndarray, x, y, val, fit_kwargs) -> dict:
    """On a worker: make the chunk's models from arrays, train them, return arrays."""
    with Graph(64):
        models = [
            MLP(
                spec["n_inputs"],
                spec["layer_sizes"],
                lr,
                spec["activation"],
                output_activation=spec["output_activation"],
            )
            for lr in spec["learning_rates"]
        ]
    ens = Ensemble(models)
    ens._write_back(values)
    out = _train(models, x, y, val, fit_kwargs)
    out["values"] = ens._values()
    return out


def warm_worker() -> bool:
    """Load (or compile, on a cold cache) the ensemble kernels in this process: a tiny fit."""
    x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = np.array([[0.0], [1.0], [1.0], [0.0]])
    with Graph(64):
        ens = Ensemble([MLP(2, [2, 1], 0.1, seed=s) for s in range(2)])
    ens.fit(x, y, epochs=1, progress=False)
    ens.loss(x, y)
    return True


def _suspicious(dask_scheduler, keys) -> dict:
    """On the scheduler: how often each task was on a worker that died."""
    tasks = dask_scheduler.tasks
    return {k: int(tasks[k].suspicious) for k in keys if k in tasks}


def _run_dask(client, models, chunks, x, y, val, fit_kwargs, progress):
    try:
        from distributed import as_completed as dask_completed
    except ImportError:  # pragma: no cover - a client without distributed cannot exist
        raise ImportError(
            "sweep(client=...) needs dask.distributed: pip install 'tinyml-tape[distributed]'"
        ) from None
    client.run(warm_worker)  # every worker loads the kernels once, before any chunk lands
    futures = []
    for chunk in chunks:
        ms = [models[i] for i in chunk]
        spec = _spec(ms[0])
        spec["learning_rates"] = [m.learning_rate for m in ms]
        values = Ensemble(ms)._values()
        futures.append(client.submit(_train_remote, spec, values, x, y, val, fit_kwargs, pure=False))
    index = {f.key: k for k, f in enumerate(futures)}
    outcomes: list[dict | None] = [None] * len(chunks)
    bar = _progress_bar(len(chunks), progress)
    try:
        for f in dask_completed(futures):
            outcomes[index[f.key]] = f.result()
            if bar is not None:
                bar.update(sum(o is not None for o in outcomes))
        suspicious = client.run_on_scheduler(_suspicious, keys=list(index))
    finally:
        if bar is not None:
            bar.close()
    retried = [i for key, k in index.items() if suspicious.get(key, 0) > 0 for i in chunks[k]]
    for chunk, out in zip(chunks, outcomes):
        Ensemble([models[i] for i in chunk])._write_back(out["values"])
    return outcomes, retried
