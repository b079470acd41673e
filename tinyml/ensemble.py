"""Many models of one architecture trained at once: ``tm.Ensemble(models).fit(X, Y, ...)``.

The members' training program is traced once (from member 0) and laid out
with one lane per member: each member's parameters are a column of the tape,
the samples are broadcast to every lane, and one kernel call
(:func:`tinyml.kernels.train_members`) runs the epochs of every member, with
the sweeps of a solo ``fit``. Member i therefore ends with the parameters
the same model would have after ``model.fit`` with the same arguments (to
rounding: the tests hold it to 1e-12). A member whose loss, gradient or
update becomes non-finite stops there with the parameters from before the
failing step, exactly as a solo fit that raises ``TrainingDiverged``, and is
flagged in ``diverged``; the others train on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from . import kernels
from .nn import MLP
from .optim import HYPER_SIZE, SGD, STATE_COLUMNS, Optimizer
from .train import (
    MAX_COUNT,
    MAX_LANES,
    History,
    Program,
    _count,
    _finite_matrix,
    _nonneg,
    _predict_program,
    _Tape,
    _targets,
    _trace,
    progress_bar,
)

CHUNK_SECONDS = 0.2  # target wall time of one kernel call between reports
ARCHITECTURE = ("n_inputs", "layer_sizes", "activation", "output_activation")


def _check_models(models) -> list[MLP]:
    if isinstance(models, MLP):
        raise TypeError("Ensemble takes a list of models, got one MLP; wrap it: tm.Ensemble([model])")
    try:
        models = list(models)
    except TypeError:
        raise TypeError(f"Ensemble takes a list of tm.MLP models, got {type(models).__name__}") from None
    if not models:
        raise ValueError("Ensemble needs at least one model")
    for i, m in enumerate(models):
        if not isinstance(m, MLP):
            raise TypeError(f"Ensemble: member {i} is {type(m).__name__}, expected a tm.MLP")
    first = models[0]
    seen = {id(first)}
    for i, m in enumerate(models[1:], 1):
        if id(m) in seen:
            raise ValueError(f"Ensemble: member {i} is the same model object as an earlier member")
        seen.add(id(m))
        for name in ARCHITECTURE:
            a, b = getattr(first, name), getattr(m, name)
            if a != b:
                raise ValueError(
                    f"Ensemble: members must share one architecture, but member {i} has "
                    f"{name}={_show(b)} where member 0 has {name}={_show(a)}"
                )
    return models


def _show(v) -> str:
    return repr(v.value) if hasattr(v, "value") else repr(v)


def _per_member(x, what: str, n: int, below_one: bool = False) -> np.ndarray:
    """A number or one number per member, as float64[n], checked finite and >= 0."""
    if np.ndim(x) == 0:
        out = np.full(n, _nonneg(x, what))
    else:
        arr = np.asarray(x)
        if arr.shape != (n,):
            raise ValueError(
                f"fit: {what} must be a number or an array of {n} (one per member), got {arr.shape}"
            )
        out = np.array([_nonneg(v.item() if hasattr(v, "item") else v, what) for v in arr], np.float64)
    if below_one and np.any(out >= 1.0):
        raise ValueError(f"fit: {what} must be below 1, got {out.max()}")
    return out


class _MemberTape:
    """A program laid out for lanes of members: parameters first (rows 0..P-1, code
    MEMBER), then the other leaves, then the computed rows in their order."""

    def __init__(self, program: Program, lanes: int) -> None:
        op, pstart, pidx = program._op, program._pstart, program._pidx
        rows = len(op)
        params = np.asarray(program.param_rows, np.int64)
        leaf = (op == kernels.LEAF) | (op == kernels.INPUT)
        is_param = np.zeros(rows, np.bool_)
        is_param[params] = True
        others = np.nonzero(leaf & ~is_param)[0]
        computed = np.nonzero(~leaf)[0]
        old = np.concatenate([params, others, computed]).astype(np.int64)
        new_of_old = np.empty(rows, np.int64)
        new_of_old[old] = np.arange(rows)
        starts = pstart[old]
        counts = pstart[old + 1] - starts
        new_pstart = np.zeros(rows + 1, np.int64)
        np.cumsum(counts, out=new_pstart[1:])
        gather = np.repeat(starts - new_pstart[:-1], counts) + np.arange(new_pstart[-1])
        new_op = op[old].copy()
        n_params = len(params)
        new_op[:n_params] = kernels.MEMBER
        new_op[new_op == kernels.DROPOUT] = kernels.DIV  # x / (1 - rate), or x / inf when dropped
        self.n_params = n_params
        self.in_rows = new_of_old[program.in_rows]
        self.noise_rows = new_of_old[program.noise_rows]
        self.out_rows = new_of_old[program.out_rows]
        self.first = n_params + len(others)
        data = np.zeros((rows, lanes))
        grad = np.zeros((rows, lanes))
        self.tape = _Tape(
            new_op,
            new_pstart,
            new_of_old[pidx[gather]],
            program._aux[old].copy(),
            data,
            grad,
            program._leaf_values[old].copy(),
            np.zeros(rows),
        )


class Ensemble:
    """Members of one architecture, trained together: ``tm.Ensemble([tm.MLP(...) for s in seeds])``.

    ``fit`` takes the arguments of ``MLP.fit`` and trains every member in one
    kernel call; each member keeps its own weights and ``learning_rate``,
    and ``l1``, ``l2`` and ``dropout`` may be given per member as arrays.
    ``predict(X)`` is (n_members, n_samples, n_outputs). ``models[i]`` is
    member i, an ordinary model; ``diverged[i]`` says the last ``fit`` stopped
    it at a non-finite loss (its parameters are those from before that step),
    ``epochs_run[i]`` how many epochs it completed and ``fail_loss[i]`` the
    loss of its failing step (NaN for members that did not stop).
    """

    def __init__(self, models: Sequence[MLP]) -> None:
        self.models = _check_models(models)
        m = len(self.models)
        self.diverged = np.zeros(m, np.bool_)
        self.epochs_run = np.zeros(m, np.int64)
        self.fail_loss = np.full(m, np.nan)  # a stopped member's failing loss (as TrainingDiverged.loss)
        self._tapes: dict = {}
        self._stop = None  # a threading.Event that ends fit between kernel calls (set by tm.sweep)

    def __len__(self) -> int:
        return len(self.models)

    def __repr__(self) -> str:
        return f"Ensemble({len(self)} x {self.models[0]!r}, {int(self.diverged.sum())} diverged)"

    @property
    def n_members(self) -> int:
        return len(self.models)

    # -- parameters between the members' graphs and the tape -------------------------------
    def _values(self) -> np.ndarray:
        """Every member's parameters, float64[M, P], read from their graphs."""
        return np.stack([m.graph.data[m.parameter_rows(), 0] for m in self.models])

    def _write_back(self, values: np.ndarray) -> None:
        """values float64[M, P] into the members' graphs, one assignment per graph."""
        by_graph: dict[int, tuple] = {}
        for i, m in enumerate(self.models):
            g = m.graph
            entry = by_graph.setdefault(id(g), (g, [], []))
            entry[1].append(m.parameter_rows())
            entry[2].append(i)
        for g, rows, members in by_graph.values():
            g.evaluate()  # rows built earlier keep the parameters they were built with
            g.data[np.concatenate(rows), 0] = values[members].reshape(-1)

    def _layout(self, key, program: Program) -> _MemberTape:
        layout = self._tapes.get(key)
        if layout is None:
            layout = _MemberTape(program, len(self.models))
            self._tapes[key] = layout
        return layout

    # -- evaluation ----------------------------------------------------------------------------
    def predict(self, X) -> np.ndarray:
        """Every member's outputs for every row of ``X``: float64 (n_members, n_samples, n_outputs)."""
        first = self.models[0]
        x = _finite_matrix(X, "X")
        if x.shape[1] != first.n_inputs:
            raise ValueError(f"predict: X must have {first.n_inputs} columns, got {x.shape[1]}")
        layout = self._layout("predict", _predict_program(first))
        return self._forward(layout, layout.out_rows, x)

    def _forward(self, layout: _MemberTape, out_rows: np.ndarray, samples: np.ndarray) -> np.ndarray:
        tape = layout.tape
        tape.data[: layout.n_params] = self._values().T
        tape.data[layout.noise_rows] = 1.0  # dropout divisors: keep every unit (evaluation)
        out = np.empty((len(self.models), samples.shape[0], len(out_rows)))
        kernels.predict_members(tape, layout.in_rows, out_rows, layout.first, samples, out)
        return out

    def loss(self, X, Y, loss: str | Callable = "mse") -> np.ndarray:
        """Each member's loss on the whole of ``X``, ``Y`` (as ``fit`` reduces it, without
        penalties or dropout): float64[n_members]."""
        first = self.models[0]
        x = _finite_matrix(X, "X")
        if x.shape[1] != first.n_inputs:
            raise ValueError(f"loss: X must have {first.n_inputs} columns, got {x.shape[1]}")
        y = _targets(first, Y, loss, x.shape[0])
        program, reduction = _trace(first, loss, 0.0)
        # a tape of its own: fit's tape holds the members in its lane order between kernel calls
        layout = self._layout(("evaluate", loss), program)
        per_sample = self._forward(layout, layout.out_rows[:1], np.hstack([x, y]))[:, :, 0]
        return per_sample.mean(axis=1) if reduction == "mean" else per_sample.sum(axis=1)

    # -- training ------------------------------------------------------------------------------
    def fit(
        self,
        X,
        Y,
        epochs: int = 1000,
        loss: str | Callable = "mse",
        batch_size: int | None = None,
        report_every: int = 500,
        callback: Callable[[int, np.ndarray], object] | None = None,
        shuffle: bool = True,
        seed: int | None = None,
        *,
        optimizer=None,
        l1=0.0,
        l2=0.0,
        dropout=0.0,
        progress: bool = True,
        validation_data=None,
    ) -> History:
        """Train every member as ``MLP.fit`` would train it alone; returns a History.

        ``history.loss`` is (n_members, n_records), NaN from a member's failing
        epoch on. ``optimizer``: None (SGD with each member's ``learning_rate``),
        a list with one optimiser per member (each over that member's
        parameters, all of one kind and step count), or a callable
        ``params -> optimiser`` called once per member. ``l1``, ``l2``,
        ``dropout``: a number or one per member. ``callback(epoch, losses)``
        gets float64[n_members] at each report and may return False to stop.
        ``validation_data=(X_val, Y_val)`` fills ``history.val_loss``
        (n_members, n_records): each member's validation loss at the
        parameters after each recorded epoch's update (NaN once stopped).
        Early stopping and learning-rate schedulers are not available for
        ensembles.
        """
        models = self.models
        first = models[0]
        n_members = len(models)
        x = _finite_matrix(X, "X")
        if x.shape[1] != first.n_inputs:
            raise ValueError(
                f"fit: X must have {first.n_inputs} columns (the model's inputs), got {x.shape[1]}"
            )
        n = x.shape[0]
        if n == 0:
            raise ValueError("fit: no samples given")
        y = _targets(first, Y, loss, n)
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("fit: validation_data must be a pair (X_val, Y_val)")
            xv = _finite_matrix(validation_data[0], "X_val")
            if xv.shape[1] != first.n_inputs:
                raise ValueError(f"fit: X_val must have {first.n_inputs} columns, got {xv.shape[1]}")
            val = (xv, validation_data[1])
            _targets(first, val[1], loss, xv.shape[0])  # checked now, not after the first chunk
        epochs = _count(epochs, "epochs", minimum=0)
        report_every = min(_count(report_every, "report_every", 1, maximum=None), MAX_COUNT)  # as fit's
        batch = n if batch_size is None else min(_count(batch_size, "batch_size", minimum=1), n)
        if callback is not None and not callable(callback):
            raise TypeError("fit: callback must be callable(epoch, losses)")
        rates = _per_member(dropout, "dropout", n_members, below_one=True)
        penalty = np.stack([_per_member(l1, "l1", n_members), _per_member(l2, "l2", n_members)])
        with_dropout = bool(np.any(rates > 0.0))
        program, reduction = _trace(first, loss, float(rates.max()) if with_dropout else 0.0)
        layout = self._layout((loss, with_dropout), program)
        opts, kind, hyper, state, t0 = self._optimizers(optimizer, layout.n_params)

        # lanes grouped by optimiser hyperparameters (e.g. learning rate): one update call per group
        groups, inverse = np.unique(hyper, axis=0, return_inverse=True)
        inverse = np.asarray(inverse).reshape(-1)
        perm = np.argsort(inverse, kind="stable")  # lane l holds member perm[l]
        group_start = np.zeros(len(groups) + 1, np.int64)
        np.cumsum(np.bincount(inverse, minlength=len(groups)), out=group_start[1:])

        p = layout.n_params
        tape = layout.tape
        tape.data[:p] = self._values()[perm].T
        columns = state.shape[2]
        lane_state = np.ascontiguousarray(state[:, perm, :]).reshape(p * n_members, columns)
        seeds = np.random.default_rng(seed).integers(0, 2**62, size=2)
        shuffle_seed = int(seeds[0]) if shuffle and batch < n else -1
        status = np.zeros(n_members, np.int64)
        fail = np.zeros((n_members, 2), np.int64)
        fail_loss = np.zeros(n_members)
        steps = np.array([t0], np.int64)
        feed = (
            layout.in_rows,
            np.hstack([x, y]),
            np.arange(n, dtype=np.int64),
            layout.noise_rows,
            rates[perm],
        )
        members = (np.ascontiguousarray(penalty[:, perm]), status, fail, fail_loss, steps)
        optargs = (kind, lane_state, np.ascontiguousarray(groups), group_start)
        run = np.array(
            [
                layout.out_rows[0],
                layout.first,
                batch,
                reduction == "mean",
                shuffle_seed,
                int(seeds[1]),
                min(MAX_LANES, batch),
                bool(np.any(penalty != 0.0)),
            ],
            np.int64,
        )
        unperm = np.argsort(perm)

        def write_back() -> None:
            self._write_back(tape.data[:p].T[unperm])
            stopped = status[unperm] != 0
            self.diverged = stopped
            if opts is not None:
                trained = lane_state.reshape(p, n_members, columns)[:, unperm, :]
                stop_t = fail[unperm, 1]
                for i, o in enumerate(opts):
                    o.state = trained[:, i, :].copy()
                    o.t = int(stop_t[i]) if stopped[i] else int(steps[0])

        epochs_rec: list[np.ndarray] = []
        losses_rec: list[np.ndarray] = []
        val_rec: list[np.ndarray] = []
        reporter = progress_bar(epochs, desc="ensemble") if progress else None
        start = time.perf_counter()
        epoch = 0
        chunk = 1 if epochs else 0
        stopped_early = False
        try:
            while epoch < epochs:
                end = min(epochs, epoch + chunk)
                if callback is not None or val is not None:  # stop at the next report (see below)
                    nxt = epoch if epoch % report_every == 0 else epoch + report_every - epoch % report_every
                    end = min(end, nxt + 1)
                losses = np.empty((end - epoch, n_members))
                t_call = time.perf_counter()
                done = kernels.train_members(tape, feed, members, optargs, run, epoch, end, losses)
                elapsed = time.perf_counter() - t_call
                requested = end - epoch
                ep = np.arange(epoch, epoch + done)
                keep = (ep % report_every == 0) | (ep == epochs - 1)
                epochs_rec.append(ep[keep])
                losses_rec.append(losses[:done][keep][:, unperm].T)
                if val is not None and keep.any():  # a chunk ends right after its one report
                    write_back()  # (the members' graphs are written once per report, not per call)
                    v = self.loss(val[0], val[1], loss)
                    gone = (status[unperm] != 0) & (fail[unperm, 0] <= ep[keep][-1])
                    val_rec.append(np.where(gone, np.nan, v)[:, None])
                epoch += done
                if done < requested:  # every member stopped
                    break
                if callback is not None:
                    write_back()  # the callback may look at the members
                    for e, col in zip(ep[keep].tolist(), losses[:done][keep][:, unperm]):
                        if callback(e, col.copy()) is False:
                            stopped_early = True
                if reporter is not None and done:
                    live = losses[done - 1][status == 0]
                    reporter.update(epoch, best_loss=float(live.min()) if len(live) else float("nan"))
                if stopped_early or (self._stop is not None and self._stop.is_set()):
                    break
                rate = done / max(elapsed, 1e-6)
                chunk = int(min(max(1, rate * CHUNK_SECONDS), 4 * max(chunk, 1), 10_000_000))
        finally:
            write_back()  # (also after Ctrl-C or an error: the epochs of the calls that returned)
            if reporter is not None:
                reporter.close()
            stopped = status[unperm] != 0
            self.epochs_run = np.where(stopped, fail[unperm, 0], epoch).astype(np.int64)
            self.fail_loss = np.where(stopped, fail_loss[unperm], np.nan)
        ep = np.concatenate(epochs_rec) if epochs_rec else np.zeros(0, np.int64)
        ls = np.concatenate(losses_rec, axis=1) if losses_rec else np.zeros((n_members, 0))
        history = History(ep.astype(np.int64), ls, epoch, stopped_early and epoch < epochs,
                          time.perf_counter() - start)  # fmt: skip
        if val is not None:
            history.val_loss = np.concatenate(val_rec, axis=1) if val_rec else np.zeros((n_members, 0))
        return history

    def _optimizers(self, optimizer, n_params: int):
        """(optimisers or None, kind, hyper float64[M, h], state float64[P, M, s], t)."""
        models = self.models
        n = len(models)
        if optimizer is None:
            hyper = np.zeros((n, HYPER_SIZE))
            hyper[:, 0] = [_nonneg(m.learning_rate, "learning_rate") for m in models]
            return None, int(SGD.kind), hyper, np.zeros((n_params, n, STATE_COLUMNS[SGD.kind])), 0
        if isinstance(optimizer, Optimizer):
            raise TypeError(
                "fit: an ensemble needs one optimizer per member: pass a list of them, or a callable "
                "such as lambda params: tm.optim.Adam(params, lr=1e-3)"
            )
        if callable(optimizer):
            opts = [optimizer(m.parameters()) for m in models]
        else:
            try:
                opts = list(optimizer)
            except TypeError:
                raise TypeError(
                    "fit: optimizer must be None, a list of optimizers or a callable, "
                    f"got {type(optimizer).__name__}"
                ) from None
        if len(opts) != n:
            raise ValueError(f"fit: got {len(opts)} optimizers for {n} members")
        for i, (o, m) in enumerate(zip(opts, models)):
            if not isinstance(o, Optimizer):
                raise TypeError(f"fit: optimizer {i} is {type(o).__name__}, expected a tm.optim optimizer")
            ps = m.parameters()
            if len(o.params) != len(ps) or any(a is not b for a, b in zip(o.params, ps)):
                raise ValueError(
                    f"fit: optimizer {i} must be built over exactly member {i}'s parameters, in order"
                )
            if o.kind != opts[0].kind:
                raise ValueError(
                    f"fit: optimizer {i} is {type(o).__name__}, optimizer 0 {type(opts[0]).__name__}; "
                    "an ensemble's members use one kind"
                )
            if o.t != opts[0].t:
                raise ValueError(
                    f"fit: optimizer {i} has taken {o.t} steps, optimizer 0 {opts[0].t}; give fresh ones"
                )
        hyper = np.stack([o.hyper for o in opts]).astype(np.float64)
        state = np.stack([o.state for o in opts], axis=1).astype(np.float64)
        return opts, int(opts[0].kind), hyper, state, int(opts[0].t)
