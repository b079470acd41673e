"""Workload 7: many models at once. Two tables.

ensemble: 1,000 copies of the Rust XOR network (2-4-1 tanh, SSE, full-batch
SGD lr 0.1, float64), member i initialised as ``MLP(2, [4, 1], 0.1, "tanh",
seed=i, init="uniform01")``, trained for the same epochs by

- ``tm.Ensemble(models).fit`` (one kernel call trains every member),
- JAX: ``jit`` of ``lax.fori_loop`` over ``vmap(step)`` (one step per epoch for all members),
- a Python loop of ``model.fit`` (timed over a few members, per model-epoch).

The unit is nanoseconds per model-epoch. Checks: every implementation starts
from the same weights; after 30 epochs every member's parameters agree with
the ensemble's (1e-9 relative; later some trajectories part: member 0's
turns a 1e-15 rounding difference of tanh into 5e-5 by epoch 100); each fit
of the loop ends with exactly the ensemble member's parameters (1e-12); the
fraction of members that solve XOR (SSE < 0.05) agrees with the ensemble's
within 5 points, and the median relative difference of the final losses is
printed (this network's trajectories part for many seeds, tinyml's and a
pure-Python reference's too).

ensemble.sweep: ``tm.sweep`` over a grid of 16 XOR points (learning rate x
seed) on a Dask LocalCluster (processes, loopback) of 1 worker and of 2
workers (one thread each), and with threads on this machine (client=None);
seconds per sweep, cluster start-up excluded, worker warm-up included. The
scaling 1 worker / 2 workers is reported.
"""

from __future__ import annotations

import numpy as np

from .core import (
    Entry,
    Settings,
    Unavailable,
    Workload,
    close,
    combine,
    guarded,
    measure,
    median,
    require,
    time_goal,
)
from .xor_peers import X, Y

KEY = "ensemble"
GOAL = 1.0  # tinyml Ensemble at most this many times JAX's time per model-epoch
LR = 0.1
SOLVED = 0.05  # SSE below which a member counts as having solved XOR
CHECK_EPOCHS = 30  # member 0's trajectory turns a 1e-15 difference into 5e-5 between 30 and 100


def members(n: int):
    import tinyml as tm

    with tm.Graph():
        return [tm.MLP(2, [4, 1], LR, "tanh", seed=s, init="uniform01") for s in range(n)]


def flat(models) -> np.ndarray:
    return np.stack([[p.data for p in m.parameters()] for m in models])


def sse(params: np.ndarray) -> np.ndarray:
    """Each member's SSE over the 4 samples, from flat parameters (n, 17), in NumPy."""
    w1 = params[:, :12].reshape(-1, 4, 3)  # per hidden neuron: w_1, w_2, b
    w2 = params[:, 12:]  # w_1..w_4, b
    h = np.tanh(np.einsum("mjk,sk->msj", w1[:, :, :2], X) + w1[:, None, :, 2])
    o = np.tanh(np.einsum("mj,msj->ms", w2[:, :4], h) + w2[:, None, 4])
    return np.sum((o - Y[:, 0]) ** 2, axis=1)


def run(settings: Settings) -> list[Workload]:
    return [_ensemble(settings), _sweep(settings)]


# ---------------------------------------------------------------------------
# Ensemble vs JAX vmap vs a loop of fit
# ---------------------------------------------------------------------------
def _ensemble(settings: Settings) -> Workload:
    n = settings.pick(1_000, 20)
    epochs = settings.pick(5_000, 200)
    w = Workload(
        KEY,
        f"8. {n:,} XOR members (2-4-1 tanh, SSE, SGD lr 0.1, float64), {epochs:,} epochs: per model-epoch",
        unit="ns",
        reference="tinyml Ensemble",
    )
    flat0 = flat(members(n))
    state: dict = {}
    guarded(w, "tinyml Ensemble", lambda e: _tinyml(e, settings, n, epochs, flat0, state))
    guarded(w, "jax jit(vmap) fori_loop", lambda e: _jax(e, settings, n, epochs, flat0, state))
    guarded(w, "tinyml fit, a loop", lambda e: _loop(e, settings, n, epochs, state))
    w.notes.append("final loss: the members' mean SSE after the last update")
    time_goal(w, settings, "tinyml Ensemble", "jax jit(vmap) fori_loop", GOAL, "tinyml Ensemble vs JAX vmap")
    return w


def _tinyml(e: Entry, settings: Settings, n: int, epochs: int, flat0, state) -> None:
    import tinyml as tm

    def prepare():
        return tm.Ensemble(members(n))

    check = prepare()
    check.fit(X, Y, epochs=CHECK_EPOCHS, loss="sse", progress=False)
    state["check"] = flat(check.models)

    def train(ens):
        ens.fit(X, Y, epochs=epochs, loss="sse", progress=False)
        return ens

    times, ens = measure(prepare, train, settings.repeats)
    state["final"] = flat(ens.models)
    e.times, e.epochs = times, epochs
    e.value = median(times) / (n * epochs) * 1e9
    e.loss = float(np.mean(sse(state["final"])))
    e.check = combine(close(flat(members(n)), flat0, 0, 0, "initial weights"))


def _jax(e: Entry, settings: Settings, n: int, epochs: int, flat0, state) -> None:
    jax = require("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    if "check" not in state:
        raise Unavailable("the tinyml Ensemble did not run: nothing to check against", status="failed")

    def loss(p, x, y):
        w1, b1, w2, b2 = p
        h = jnp.tanh(x @ w1.T + b1)
        o = jnp.tanh(h @ w2.T + b2)
        return jnp.sum((o - y) ** 2)

    grad = jax.grad(loss)

    def step(p, x, y):
        return jax.tree_util.tree_map(lambda a, g: a - LR * g, p, grad(p, x, y))

    many = jax.vmap(step, in_axes=(0, None, None))

    @jax.jit
    def train(p, x, y, epochs):
        return jax.lax.fori_loop(0, epochs, lambda _, q: many(q, x, y), p)

    def to_jax(params):
        w1 = params[:, :12].reshape(-1, 4, 3)
        w2 = params[:, 12:]
        return tuple(jnp.asarray(a) for a in (w1[:, :, :2], w1[:, :, 2], w2[:, None, :4], w2[:, 4:5]))

    def from_jax(p):
        w1, b1, w2, b2 = (np.asarray(a) for a in p)
        first = np.concatenate([w1, b1[:, :, None]], axis=2).reshape(len(w1), 12)
        return np.concatenate([first, w2[:, 0, :], b2], axis=1)

    x, y = jnp.asarray(X), jnp.asarray(Y)
    out = train(to_jax(flat0), x, y, CHECK_EPOCHS)
    checks = [close(from_jax(out), state["check"], 1e-9, 1e-12, f"parameters after {CHECK_EPOCHS} epochs")]

    def run_jax(p):
        r = train(p, x, y, epochs)
        r[0].block_until_ready()
        return r

    times, out = measure(lambda: to_jax(flat0), run_jax, settings.repeats)
    final = from_jax(out)
    e.times, e.epochs = times, epochs
    e.value = median(times) / (n * epochs) * 1e9
    e.loss = float(np.mean(sse(final)))
    e.note = "jit(fori_loop(vmap(step))), float64"
    if "final" in state:
        mine, theirs_loss = sse(state["final"]), sse(final)
        rel = float(np.median(np.abs(theirs_loss - mine) / np.maximum(np.abs(mine), 1e-300)))
        e.note += f"; final losses vs the ensemble's: median relative difference {rel:.1e}"
        ours, theirs = np.mean(sse(state["final"]) < SOLVED), np.mean(sse(final) < SOLVED)
        if abs(ours - theirs) > max(0.05, 3 / n):
            checks.append(
                f"FAILED: {100 * theirs:.0f}% of members solved XOR, the ensemble {100 * ours:.0f}%"
            )
    e.check = combine(*checks)


def _loop(e: Entry, settings: Settings, n: int, epochs: int, state) -> None:
    if "final" not in state:
        raise Unavailable("the tinyml Ensemble did not run: nothing to check against", status="failed")
    k = min(n, settings.pick(20, 5))

    def train(models):
        for m in models:
            m.fit(X, Y, epochs=epochs, loss="sse", progress=False)
        return models

    times, models = measure(lambda: members(k), train, settings.repeats)
    e.times, e.epochs = times, epochs
    e.value = median(times) / (k * epochs) * 1e9
    got = flat(models)
    e.loss = float(np.mean(sse(got)))
    e.check = close(got, state["final"][:k], 1e-12, 1e-12, "each fit's parameters vs its ensemble member's")
    e.note = f"timed over the first {k} members, per model-epoch"


# ---------------------------------------------------------------------------
# A sweep on 1 vs 2 Dask workers
# ---------------------------------------------------------------------------
def _sweep(settings: Settings) -> Workload:
    epochs = settings.pick(300_000, 200)
    grid = {"lr": [0.05, 0.1, 0.2, 0.4], "seed": list(range(4))}
    w = Workload(
        KEY + ".sweep",
        f"8b. tm.sweep of 16 XOR points (lr x seed), {epochs:,} epochs: seconds per sweep",
        unit="s",
        reference="dask, 1 worker",
    )
    results: dict = {}
    for workers in (1, 2):
        guarded(w, f"dask, {workers} worker{'s' if workers > 1 else ''}",
                lambda e, k=workers: _dask(e, settings, k, grid, epochs, results))  # fmt: skip
    guarded(w, "threads (client=None)", lambda e: _threads(e, settings, grid, epochs, results))
    one, two = w.entry("dask, 1 worker"), w.entry("dask, 2 workers")
    if one is not None and two is not None and one.value and two.value:
        w.extra["scaling"] = one.value / two.value
        w.notes.append(f"scaling, 1 worker / 2 workers: {one.value / two.value:.2f}x (2 would be perfect)")
    return w


def _build(lr, seed):
    import tinyml as tm

    return tm.MLP(2, [4, 1], lr, "tanh", seed=seed, init="uniform01")


def _record_check(result, results) -> str:
    losses = np.array([r["final_loss"] for r in result.records])
    if "losses" not in results:
        results["losses"] = losses
        return "ok"
    return close(losses, results["losses"], 1e-12, 1e-12, "final losses vs the first sweep's")


def _dask(e: Entry, settings: Settings, workers: int, grid, epochs, results) -> None:
    distributed = require("distributed")
    import tinyml as tm

    # the scheduler always serves HTTP; port 0 picks a free one (8787 may be taken)
    cluster = distributed.LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    )
    client = distributed.Client(cluster)
    try:

        def sweep(_):
            return tm.sweep(_build, grid, X, Y, client=client, epochs=epochs, loss="sse", progress=False)

        times, result = measure(lambda: None, sweep, settings.repeats)
    finally:
        client.close()
        cluster.close()
    e.times, e.epochs = times, epochs
    e.value = median(times)
    e.loss = float(np.mean([r["final_loss"] for r in result.records]))
    e.check = _record_check(result, results)


def _threads(e: Entry, settings: Settings, grid, epochs, results) -> None:
    import tinyml as tm

    def sweep(_):
        return tm.sweep(_build, grid, X, Y, epochs=epochs, loss="sse", progress=False)

    times, result = measure(lambda: None, sweep, settings.repeats)
    e.times, e.epochs = times, epochs
    e.value = median(times)
    e.loss = float(np.mean([r["final_loss"] for r in result.records]))
    e.check = _record_check(result, results)
