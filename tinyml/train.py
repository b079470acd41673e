"""Compiled training: trace one sample's step once, then run every epoch in Numba.

The low-level API works for any loss built from Values::

    xs = tm.placeholders(2)              # input slots, fed per sample
    ys = tm.placeholders(1)
    loss = tm.losses.mse(model(xs), ys)  # ONE sample's loss, any expression
    program = tm.compile(loss, inputs=xs + ys, params=model.parameters())
    history = program.fit(samples, epochs=1000, lr=0.1)   # samples: (n, 3)

``compile`` copies the rows the loss depends on into a separate program
tape; its size does not depend on the number of samples. ``Program.fit``
replays it with one lane per sample of a batch, sums the parameter gradients
over the batch and updates the parameters, for a chunk of epochs per kernel
call. Between chunks it reports progress, calls the callback and lets Ctrl-C
through; the parameters are written back to the graph after every chunk, so
the model is always consistent. ``MLP.fit`` is this, with the model and a
built-in loss traced for you.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from . import dense, kernels
from .graph import Graph, cached_rows, current_graph, writable_arrays
from .ops import Op
from .optim import SGD
from .tensor import Tensor
from .value import Value, real_array, real_dtype, same_graph, wrap

MAX_LANES = 64
CHUNK_SECONDS = 0.2  # target wall time of one kernel call between reports


class TrainingDiverged(FloatingPointError):
    """Training met a non-finite loss, gradient or parameter.

    ``epoch`` is the 0-based epoch where it happened; the parameters are those
    from before the failing step (all finite); ``history`` is what was
    recorded up to then.
    """

    def __init__(self, message: str, epoch: int, loss: float, history: History) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.loss = loss
        self.history = history


@dataclass
class History:
    """Losses recorded by ``fit``: ``epoch`` (0-based) and ``loss`` before that epoch's update.

    ``val_loss`` (when ``fit`` had ``validation_data``, else empty) is the
    validation loss at the parameters after the update of the same epochs;
    ``best_epoch`` is the epoch early stopping found best (None without it).
    ``seconds`` is the training time, without the time a first fit in a
    process spends compiling (or loading) the training kernel.
    """

    epoch: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    loss: np.ndarray = field(default_factory=lambda: np.zeros(0))
    epochs_run: int = 0
    stopped_early: bool = False
    seconds: float = 0.0
    val_loss: np.ndarray = field(default_factory=lambda: np.zeros(0))
    best_epoch: int | None = None

    def __len__(self) -> int:
        return len(self.epoch)

    def __repr__(self) -> str:
        last = f", last loss {self.loss[-1]:.6g}" if len(self.loss) else ""
        return f"History({self.epochs_run} epochs, {len(self.epoch)} records{last})"


class EarlyStopping:
    """Stop ``fit`` after ``patience`` epochs without an improvement larger than ``min_delta``.

    It watches the validation loss when ``fit`` has ``validation_data``, else
    the training loss; the check runs inside the compiled loop, after every
    epoch. With ``restore_best`` the model ends with the parameters that gave
    the best loss seen (for the training loss: the parameters at the start of
    that epoch, where it is measured). After a fit, ``best``, ``best_epoch``
    and ``stopped_epoch`` (None if training ran to the end) describe it.
    """

    def __init__(self, patience: int = 10, min_delta: float = 0.0, restore_best: bool = True) -> None:
        self.patience = _count(patience, "EarlyStopping: patience", minimum=0)
        self.min_delta = _nonneg(min_delta, "EarlyStopping: min_delta")
        self.restore_best = bool(restore_best)
        self.best = math.inf
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None

    def _record(self, stop: np.ndarray, stopped_epoch: int | None) -> None:
        self.best = float(stop[3])
        self.best_epoch = int(stop[5]) if stop[5] >= 0 else None
        self.stopped_epoch = stopped_epoch

    def __repr__(self) -> str:
        return (
            f"EarlyStopping(patience={self.patience}, min_delta={self.min_delta}, "
            f"restore_best={self.restore_best})"
        )


@dataclass(frozen=True)
class FitOptions:
    """Every option of one training run, checked once when it is built.

    ``MLP.fit`` and ``Program.fit`` build one from their keyword arguments and
    hand it down; other front-ends (``Module.fit``) do the same and call
    :meth:`Program.fit_with`. Numbers are normalised (``int``/``float``), so
    what the training loop reads is always valid. ``lr`` is plain SGD's
    learning rate, used when no ``optimizer`` is given.
    """

    epochs: int = 1000
    lr: float | None = None
    optimizer: object = None
    batch_size: int | None = None
    reduction: str = "mean"
    report_every: int = 500
    callback: Callable[[int, float], object] | None = None
    shuffle: bool = True
    seed: int | None = None
    l1: float = 0.0
    l2: float = 0.0
    dropout: float = 0.0
    progress: bool = True
    validation_data: object = None
    early_stopping: EarlyStopping | None = None
    scheduler: object = None

    def __post_init__(self) -> None:
        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        put("epochs", _count(self.epochs, "epochs", minimum=0))
        # any period past the last epoch means the same (report the last one only): kept
        # within int64, which the training kernel and NumPy's epoch arithmetic use
        put("report_every", min(_count(self.report_every, "report_every", 1, maximum=None), MAX_COUNT))
        if self.batch_size is not None:
            put("batch_size", _count(self.batch_size, "batch_size", minimum=1))
        if self.reduction not in ("mean", "sum"):
            raise ValueError(f"fit: reduction must be 'mean' or 'sum', got {self.reduction!r}")
        if self.callback is not None and not callable(self.callback):
            raise TypeError("fit: callback must be callable(epoch, loss)")
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer, np.random.Generator))
        ):
            raise TypeError(f"fit: seed must be an int or None, got {type(self.seed).__name__}")
        put("l1", _nonneg(self.l1, "l1"))
        put("l2", _nonneg(self.l2, "l2"))
        rate = _nonneg(self.dropout, "dropout")
        if rate >= 1.0:
            raise ValueError(f"fit: dropout must be below 1, got {rate}")
        put("dropout", rate)
        if self.lr is not None:
            put("lr", _nonneg(self.lr, "lr"))
        opt = self.optimizer
        if isinstance(opt, type):
            raise TypeError(
                f"fit: optimizer must be an optimiser object, got the class {opt.__name__} itself; "
                f"build one over the parameters, e.g. optimizer=tm.optim.{opt.__name__}(model.parameters())"
            )
        if opt is not None and not (hasattr(opt, "hyper") and hasattr(opt, "state") and hasattr(opt, "kind")):
            raise TypeError(
                f"fit: optimizer must be one from tm.optim (e.g. tm.optim.Adam(model.parameters())), "
                f"got {type(opt).__name__}"
            )
        if self.early_stopping is not None and not isinstance(self.early_stopping, EarlyStopping):
            raise TypeError(
                "fit: early_stopping must be a tm.EarlyStopping(patience=..., min_delta=...), "
                f"got {type(self.early_stopping).__name__}"
            )
        sched = self.scheduler
        if sched is not None:
            from .lr_scheduler import LRScheduler

            if not isinstance(sched, LRScheduler):
                raise TypeError(
                    "fit: scheduler must be one from tm.optim.lr_scheduler (e.g. StepLR(optimizer, 10)), "
                    f"got {type(sched).__name__}"
                )
            if opt is None:
                put("optimizer", sched.optimizer)
            elif opt is not sched.optimizer:
                raise ValueError("fit: the scheduler must be built over the optimizer given to fit")
        put("shuffle", bool(self.shuffle))
        put("progress", bool(self.progress))


_Tape = kernels.Tape  # the tape of a program with lanes: eight arrays, see kernels.Tape


def placeholders(count: int, graph: Graph | None = None) -> list[Value]:
    """``count`` input slots (leaf Values, 0.0) whose values ``Program`` feeds per sample."""
    count = _count(count, "placeholders: count", minimum=1)
    g = current_graph() if graph is None else graph
    g.reserve(int(count), 0)
    return [wrap(g, r) for r in g.push_leaves(np.zeros(count))]


class Program:
    """A traced step: outputs over input placeholders and parameters, as a flat tape.

    Build it with :func:`compile`. ``run(samples)`` evaluates the outputs for
    every sample; ``fit(samples, ...)`` trains the parameters on the first
    output as a per-sample loss.
    """

    def __init__(
        self,
        outputs: Sequence[Value],
        inputs: Sequence[Value],
        params: Sequence[Value],
        noise: Sequence[Value] = (),
        masks: Sequence[Value] = (),
        stats: Sequence[Value] = (),
        eval_links: Sequence[tuple[Value, Value]] = (),
    ) -> None:
        outputs = list(outputs)
        inputs = list(inputs)
        params = list(params)
        noise = list(noise) + list(masks)  # (leaves the program fills itself)
        stats = list(stats)
        eval_links = list(eval_links)
        linked = [v for pair in eval_links for v in pair]
        if not outputs:
            raise ValueError("compile: give at least one output Value")
        for what, seq in (("output", outputs), ("input", inputs), ("parameter", params), ("noise", noise)):
            if seq and set(map(type, seq)) != {Value}:  # (in C: a wide layer has 100k parameters)
                i, v = next((i, v) for i, v in enumerate(seq) if type(v) is not Value)
                raise TypeError(f"compile: {what} {i} is {type(v).__name__}, expected a Value")
        graph = same_graph(outputs + inputs + params + noise)
        rows_in = [v._row for v in inputs]
        rows_p = [v._row for v in params]
        rows_u = [v._row for v in noise]
        for what, rows in (("input", rows_in), ("parameter", rows_p), ("noise", rows_u)):
            r = np.asarray(rows, np.int64)  # Value.is_leaf for all at once (a layer has thousands)
            bad = np.flatnonzero((r < 0) | (graph.op[np.maximum(r, 0)] != kernels.LEAF))
            if len(bad):
                raise ValueError(
                    f"compile: {what} {bad[0]} is not a leaf; inputs and parameters must be created "
                    "with tm.Value(...) or tm.placeholders(...)"
                )
        if len(set(rows_in + rows_p + rows_u)) != len(rows_in) + len(rows_p) + len(rows_u):
            raise ValueError(
                "compile: a Value appears twice among the inputs, parameters and noise "
                "(each may be only one of them, once)"
            )
        keep = np.zeros(graph.n, np.bool_)  # extract copies leaves' data only: no evaluation needed
        keep[rows_in + rows_p + rows_u] = True
        keep[[v._row for v in outputs + stats + linked]] = True
        op, pstart, pidx, aux, leaf_values, index = _extract(graph, keep)
        protected = np.zeros(len(op), np.bool_)
        protected[index[rows_in + rows_p + rows_u + [v._row for v in outputs + stats + linked]]] = True
        op, pstart, pidx, aux, leaf_values, fused = _fuse_activations(
            op, pstart, pidx, aux, leaf_values, protected
        )
        index = np.where(index >= 0, fused[np.maximum(index, 0)], -1)
        self.graph = graph
        self.params = params
        self.n_inputs = len(inputs)
        self.n_outputs = len(outputs)
        self._op, self._pstart, self._pidx, self._aux, self._leaf_values = op, pstart, pidx, aux, leaf_values
        self.in_rows = index[rows_in]
        self.param_rows = index[rows_p]
        self.out_rows = index[[v._row for v in outputs]]
        rows_u = np.asarray(rows_u, np.int64)
        self.noise_rows = index[rows_u[: len(rows_u) - len(masks)]]
        self.mask_rows = index[rows_u[len(rows_u) - len(masks) :]]
        # batch statistics: RUNNING_STAT rows, whose values training reads from
        # ``stat_source()`` at the start and hands to ``stat_sink(values)`` after each chunk
        self.stat_rows = index[np.asarray([v._row for v in stats], np.int64)]
        # eval mode (the validation pass): row eval_rows[j] takes the value of the
        # RUNNING_STAT row eval_sources[j] instead of its batch statistic
        self.eval_rows = index[np.asarray([a._row for a, _ in eval_links], np.int64)]
        self.eval_sources = index[np.asarray([b._row for _, b in eval_links], np.int64)]
        self.stat_source: Callable[[], np.ndarray] | None = None
        self.stat_sink: Callable[[np.ndarray], None] | None = None
        op[self.in_rows] = kernels.INPUT  # one value per lane; every other leaf is shared
        op[self.noise_rows] = kernels.INPUT
        op[self.mask_rows] = kernels.INPUT
        # a batch's samples must share one block of lanes where rows reduce across them
        self.across_lanes = bool(np.isin(op, (kernels.LANE_SUM, kernels.RUNNING_STAT)).any())
        nonleaf = np.nonzero((op != kernels.LEAF) & (op != kernels.INPUT))[0]
        self.first = int(nonleaf[0]) if len(nonleaf) else len(op)
        # the layers among the rows fit sweeps (first..loss row), run as dense blocks;
        # dense_blocks = False runs every row by the row sweeps (the definition)
        self._blocks = dense.find_blocks(op, pstart, pidx, aux, self.first, int(self.out_rows[0]) + 1)
        self.dense_blocks = True
        self._tapes: dict[int, _Tape] = {}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_tapes"] = {}  # lane-width caches: rebuilt on first use
        state.pop("_rows_cache", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(writable_arrays(state))

    def __len__(self) -> int:
        """Rows in the program tape (independent of the number of samples)."""
        return len(self._op)

    def __repr__(self) -> str:
        return (
            f"Program(rows={len(self)}, inputs={self.n_inputs}, outputs={self.n_outputs}, "
            f"parameters={len(self.params)})"
        )

    # -- tapes with lanes ---------------------------------------------------------
    def _tape(self, lanes: int) -> _Tape:
        """The program with ``lanes`` columns, parameters refreshed from the graph."""
        tape = self._tapes.get(lanes)
        if tape is None:
            rows = len(self._op)
            data = np.zeros((rows, lanes))
            shared = self._leaf_values.copy()
            tape = _Tape(
                self._op,
                self._pstart,
                self._pidx,
                self._aux,
                data,
                np.zeros_like(data),
                shared,
                np.zeros(rows),
            )
            self._tapes = {lanes: tape}  # keep one lane width only
        tape.shared[self.param_rows] = self._current_values()
        return tape

    def _param_rows_in_graph(self) -> np.ndarray:
        """Where the parameters live in the graph now (compaction may have moved them).
        Cached until the graph moves or frees rows (its ``generation``): a fit reads them
        after every kernel call, and a wide network has a hundred thousand."""
        freed = "this program's parameters were freed (their graph was cleared); compile it again"
        cache = self.__dict__.get("_rows_cache")
        rows, self._rows_cache = cached_rows(self.params, self.graph, cache, freed)
        return rows

    def _current_values(self) -> np.ndarray:
        return self.graph.data[self._param_rows_in_graph(), 0].copy()

    def _write_back(self, values: np.ndarray) -> None:
        """Store trained values in the graph's parameter rows (rows built earlier keep theirs)."""
        g = self.graph
        g.evaluate()
        g.data[self._param_rows_in_graph(), 0] = values

    def _samples(self, samples, what: str) -> np.ndarray:
        a = _finite_matrix(samples, what)
        if a.shape[1] != self.n_inputs:
            raise ValueError(f"{what}: expected {self.n_inputs} columns (one per input), got {a.shape[1]}")
        return a

    # -- evaluation -------------------------------------------------------------------
    def run(self, samples) -> np.ndarray:
        """Outputs for every sample: ``samples`` (n, n_inputs) -> (n, n_outputs)."""
        x = self._samples(samples, "run")
        if len(self.noise_rows):
            raise ValueError(
                "run: this program draws dropout noise, which is for training; "
                "compile the outputs without dropout to evaluate them"
            )
        if self.across_lanes:
            raise ValueError(
                "run: this program computes batch statistics, which are for training; "
                "trace the model in eval mode to evaluate it"
            )
        out = np.empty((x.shape[0], self.n_outputs))
        if x.shape[0]:
            if kernels.notice_pending:
                kernels.notice_compile("predict_batch")
            tape = self._tape(min(MAX_LANES, x.shape[0]))
            order = np.arange(x.shape[0], dtype=np.int64)
            kernels.predict_batch(tuple(tape), self.in_rows, self.out_rows, self.first, x, order, out)
        return out

    # -- training ---------------------------------------------------------------------
    def fit(
        self,
        samples,
        epochs: int,
        *,
        lr: float | None = None,
        optimizer=None,
        batch_size: int | None = None,
        reduction: str = "mean",
        report_every: int = 500,
        callback: Callable[[int, float], object] | None = None,
        shuffle: bool = True,
        seed: int | None = None,
        l1: float = 0.0,
        l2: float = 0.0,
        progress: bool = True,
        validation_data=None,
        early_stopping: EarlyStopping | None = None,
        scheduler=None,
    ) -> History:
        """Train the parameters on output 0, a per-sample loss, reduced over each batch.

        ``reduction="mean"`` averages the per-sample losses of a batch, ``"sum"``
        adds them. Give ``lr`` (plain SGD) or an ``optimizer`` from ``tm.optim``
        over exactly this program's parameters. ``batch_size=None`` is one
        full-batch step per epoch. ``validation_data`` is a samples array like
        ``samples`` (its loss, reduced the same way, fills ``History.val_loss``).
        See ``MLP.fit`` for the other arguments.
        """
        options = FitOptions(
            epochs=epochs,
            lr=lr,
            optimizer=optimizer,
            batch_size=batch_size,
            reduction=reduction,
            report_every=report_every,
            callback=callback,
            shuffle=shuffle,
            seed=seed,
            l1=l1,
            l2=l2,
            progress=progress,
            validation_data=validation_data,
            early_stopping=early_stopping,
            scheduler=scheduler,
        )
        return self.fit_with(samples, options)

    def fit_with(self, samples, options: FitOptions) -> History:
        """``fit`` with every option in one checked :class:`FitOptions` (the entry point
        that ``MLP.fit`` and other front-ends share)."""
        if not isinstance(options, FitOptions):
            raise TypeError(f"fit_with: options must be a FitOptions, got {type(options).__name__}")
        x = self._samples(samples, "fit")
        n = x.shape[0]
        if n == 0:
            raise ValueError("fit: no samples given")
        epochs = options.epochs
        report_every = options.report_every
        callback = options.callback
        batch = n if options.batch_size is None else min(options.batch_size, n)
        penalty = np.array([options.l1, options.l2])
        opt = self._optimizer(options.lr, options.optimizer)
        # one stream of seeds, from the user's seed: shuffling, then dropout noise
        seeds = np.random.default_rng(options.seed).integers(0, 2**62, size=2)
        shuffle_seed = int(seeds[0]) if options.shuffle and batch < n else -1
        noise_seed = int(seeds[1])
        lanes = batch if self.across_lanes else min(MAX_LANES, batch)
        tape = self._tape(lanes)
        if len(self.stat_rows):
            tape.data[self.stat_rows, :] = np.asarray(self.stat_source(), np.float64)[:, None]
        values = tape.shared[self.param_rows]  # a copy, just refreshed from the graph
        order = np.arange(n, dtype=np.int64)
        feed = (self.in_rows, x, order, self.noise_rows, self.mask_rows)
        p = len(self.params)
        params = (self.param_rows, values, np.zeros(p), np.zeros_like(opt.state))
        optargs = (int(opt.kind), opt.state, opt.hyper)
        run = np.array(
            [self.out_rows[0], self.first, batch, options.reduction == "mean", shuffle_seed, noise_seed],
            np.int64,
        )

        # per-epoch extras for the kernel: schedule, validation, early stopping
        val = np.zeros((0, self.n_inputs))
        if options.validation_data is not None:
            val = self._samples(options.validation_data, "validation_data")
            if val.shape[0] == 0:
                raise ValueError("fit: validation_data holds no samples")
        val_op, val_pidx, val_aux = self._eval_tape()
        es = options.early_stopping
        stop = np.zeros(7)
        if es is not None:
            stop[:4] = 1.0, es.patience, es.min_delta, math.inf
            stop[5] = -1.0
        best = np.zeros((2, p)) if es is not None else np.zeros((2, 0))
        best_stats = np.zeros((2, len(self.stat_rows) if es is not None else 0))
        scheduler = options.scheduler
        none = np.zeros(0)

        found = self._blocks if self.dense_blocks else dense.rows_only(self.first, int(self.out_rows[0]) + 1)
        blocks = dense.plan(found, lanes)
        work = (np.zeros(1, np.int64), np.empty(lanes), np.arange(val.shape[0], dtype=np.int64))

        stopped = False
        status = 0
        epochs_rec: list[np.ndarray] = []
        losses_rec: list[np.ndarray] = []
        val_rec: list[np.ndarray] = []
        reporter = progress_bar(epochs, "fit") if options.progress else None
        start = time.perf_counter()
        first_use = not kernels.train_epochs.signatures  # its first call compiles or loads it
        if first_use and kernels.notice_pending:
            kernels.notice_compile("train_epochs")
        epoch = 0
        chunk = 1 if epochs else 0
        try:
            while epoch < epochs:
                end = min(epochs, epoch + chunk)
                if callback is not None:  # stop at the next report, so the callback can end training
                    nxt = epoch if epoch % report_every == 0 else epoch + report_every - epoch % report_every
                    end = min(end, nxt + 1)
                losses = np.empty(end - epoch)
                val_losses = np.empty(end - epoch) if val.shape[0] else none
                lrs = scheduler.schedule(end - epoch) if scheduler is not None else none
                watch = (lrs, val, val_aux, val_losses, stop, best)
                watch += (val_op, val_pidx, self.stat_rows, best_stats)
                t0 = time.perf_counter()
                steps = np.array([opt.t], np.int64)
                stop[6] = 0.0
                try:
                    done, status = kernels.train_epochs(
                        tuple(tape), feed, params, optargs, run, penalty, epoch, end, steps, losses, watch,
                        blocks, work,
                    )  # fmt: skip
                finally:
                    # also on Ctrl-C, which Python raises as soon as the kernel returns:
                    # values, optimizer state, step count and schedule all describe the same steps
                    opt.t = int(steps[0])
                    self._write_back(values)
                    if scheduler is not None:
                        scheduler.advance(int(stop[6]))
                    if len(self.stat_rows):
                        self.stat_sink(tape.data[self.stat_rows, 0].copy())
                elapsed = time.perf_counter() - t0
                if first_use:  # (a chunk of 1 epoch): that time was the compilation's
                    start += elapsed
                    first_use = False
                ep = np.arange(epoch, epoch + done)
                keep = (ep % report_every == 0) | (ep == epochs - 1)
                if status == 3:
                    keep[-1] = True  # early stopping: the last epoch run is always recorded
                epochs_rec.append(ep[keep])
                losses_rec.append(losses[:done][keep])
                if val.shape[0]:
                    val_rec.append(val_losses[:done][keep])
                if status in (1, 2):
                    bad = epoch + done
                    history = _history(epochs_rec, losses_rec, val_rec, bad, time.perf_counter() - start)
                    what = "the loss or a gradient" if status == 1 else "a parameter update"
                    raise TrainingDiverged(
                        f"training diverged at epoch {bad}: {what} became non-finite "
                        f"(loss {float(losses[done]):.6g}); the parameters are those from before "
                        "that step. Try a smaller learning rate or check the data.",
                        bad,
                        float(losses[done]),
                        history,
                    )
                stopped = status == 3
                if callback is not None:
                    for e, v in zip(ep[keep].tolist(), losses[:done][keep].tolist()):
                        if callback(e, v) is False:
                            stopped = True
                    if not stopped and end < epochs:
                        # the callback may have set parameters (p.data = ..., load_parameters):
                        # training goes on from the graph's values, not the kernel's copy
                        values[:] = self._current_values()
                        tape.shared[self.param_rows] = values
                epoch += done
                if reporter is not None:
                    reporter.update(epoch, loss=float(losses[done - 1]))
                if stopped:
                    break
                # grow or shrink the chunk towards CHUNK_SECONDS per kernel call
                rate = done / max(elapsed, 1e-6)
                chunk = int(min(max(1, rate * CHUNK_SECONDS), 4 * max(chunk, 1), 10_000_000))
        finally:
            if reporter is not None:
                reporter.close()
        if es is not None:
            es._record(stop, epoch - 1 if status == 3 else None)
            if es.restore_best and es.best_epoch is not None:
                values[:] = best[0]
                tape.shared[self.param_rows] = values
                self._write_back(values)
                if len(self.stat_rows):  # and the buffers (running statistics) of that epoch
                    tape.data[self.stat_rows, :] = best_stats[0][:, None]
                    self.stat_sink(best_stats[0].copy())
        history = _history(epochs_rec, losses_rec, val_rec, epoch, time.perf_counter() - start)
        history.stopped_early = stopped and epoch < epochs
        if es is not None:
            history.best_epoch = es.best_epoch
        return history

    def _eval_tape(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(op, pidx, aux) of this program in eval mode, for the validation pass: dropout
        rows at rate 0, running statistics frozen (INPUT rows: the forward sweep leaves
        them be) and each batch statistic row an identity (MUL_C by 1) of its running one."""
        op = self._op.copy()
        pidx = self._pidx.copy()
        aux = self._aux.copy()
        aux[op == kernels.DROPOUT] = 0.0
        op[self.stat_rows] = kernels.INPUT
        op[self.eval_rows] = kernels.MUL_C
        aux[self.eval_rows] = 1.0
        pidx[self._pstart[self.eval_rows]] = self.eval_sources
        return op, pidx, aux

    def _optimizer(self, lr, optimizer):
        if not self.params:
            raise ValueError("fit: this program has no parameters to train (compile it with params=[...])")
        if optimizer is None:
            if lr is None:
                raise ValueError("fit: give a learning rate (lr=...) or an optimizer")
            return SGD(self.params, _nonneg(lr, "lr"))
        if lr is not None:
            raise ValueError("fit: give either lr or optimizer, not both")
        opt_params = list(getattr(optimizer, "params", ()))
        if len(opt_params) != len(self.params) or any(a is not b for a, b in zip(opt_params, self.params)):
            raise ValueError(
                "fit: the optimizer must be built over exactly the parameters being trained, in the same "
                "order (e.g. tm.optim.Adam(model.parameters(), lr=1e-3))"
            )
        return optimizer


def compile(  # noqa: A001 - the natural name; use as tm.compile
    outputs: Value | Sequence[Value],
    inputs: Sequence[Value],
    params: Sequence[Value] = (),
    noise: Sequence[Value] = (),
) -> Program:
    """Trace ``outputs`` (a loss Value, or a list of Values) over ``inputs`` into a Program.

    ``inputs`` are leaves (usually from :func:`placeholders`) fed per sample;
    ``params`` are the leaves to train; ``noise`` are leaves that ``fit`` fills
    with fresh uniform [0, 1) draws for every sample and step (the ``u`` of
    :func:`dropout`). Every other leaf is a constant, copied as it is now.
    """
    if type(outputs) is Value:
        outputs = [outputs]
    elif isinstance(outputs, (str, bytes)) or not isinstance(outputs, Iterable):
        raise TypeError(f"compile: outputs must be a Value or a list of Values, got {type(outputs).__name__}")
    return Program(outputs, inputs, params, noise)


def dropout(x: Value, u: Value, p: float) -> Value:
    """Inverted dropout of ``x``: ``x / (1 - p)`` where the draw ``u >= p``, else 0.

    ``u`` is a uniform [0, 1) draw, usually a ``noise`` placeholder of
    :func:`compile` that training refills per sample and step.
    """
    p = _nonneg(p, "dropout rate")
    if p >= 1.0:
        raise ValueError(f"dropout rate must be below 1, got {p}")
    g = same_graph((x, u))
    g.reserve(1, 2)
    return wrap(g, g.push(Op.DROPOUT, (x._row, u._row), p))


def _extract(graph: Graph, keep: np.ndarray):
    """Copy the rows marked in ``keep`` and all their ancestors into a new tape.

    Returns ``(op, pstart, pidx, aux, leaf_values, new_index)``: the copy in the
    same (topological) order with its parents renumbered, the leaves' values
    (float64[rows], 0 for other rows), and the map from old to new rows (-1 for rows not copied). The ancestor
    sweep is a kernel; the copy is plain NumPy (no kernel to compile).
    """
    n = graph.n
    return _extract_rows(
        graph.op[:n], graph.pstart[: n + 1], graph.pidx, graph.aux[:n], graph.data[:n, 0], keep
    )


def _extract_rows(op, pstart, pidx, aux, values, keep: np.ndarray):
    """:func:`_extract` over plain arrays (a graph's, or a program's own)."""
    n = len(keep)
    kernels.mark_ancestors(pstart, pidx, keep, n)
    rows = np.nonzero(keep)[0]
    new_index = np.full(n, -1, np.int64)
    new_index[rows] = np.arange(len(rows))
    starts = pstart[rows]
    counts = pstart[rows + 1] - starts
    new_pstart = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(counts, out=new_pstart[1:])
    # the parent entries of every kept row, in order: start of its run + offset in it
    gather = np.repeat(starts - new_pstart[:-1], counts) + np.arange(new_pstart[-1])
    new_pidx = new_index[pidx[gather]]
    new_op = op[rows].copy()
    leaf_values = np.where(new_op == kernels.LEAF, values[rows], 0.0)
    return new_op, new_pstart, new_pidx, aux[rows].copy(), leaf_values, new_index


_FUSABLE = (kernels.TANH, kernels.SIGMOID, kernels.RELU)


def _fuse_activations(op, pstart, pidx, aux, leaf_values, protected: np.ndarray):
    """Fold each tanh/sigmoid/relu row into the activation-free NEURON row it reads,
    where that row has no other reader and is not an input, parameter or output.

    ``Linear`` then ``Tanh`` becomes the one fused NEURON row ``MLP`` builds, so a
    model runs as fast whichever way it was written. Returns the new tape and the
    map from old program rows to new ones (-1: row dropped).
    """
    n = len(op)
    identity = np.arange(n, dtype=np.int64)
    cand = np.nonzero(np.isin(op, _FUSABLE) & (np.diff(pstart) == 1))[0]
    if len(cand):
        parent = pidx[pstart[cand]]
        readers = np.bincount(pidx, minlength=n)
        ok = (
            (op[parent] == kernels.NEURON)
            & (aux[parent] == 0.0)
            & (readers[parent] == 1)
            & ~protected[parent]
        )
        cand, parent = cand[ok], parent[ok]
    if not len(cand):
        return op, pstart, pidx, aux, leaf_values, identity
    aux = aux.copy()
    aux[parent] = op[cand]
    alias = identity.copy()
    alias[cand] = parent
    pidx = alias[pidx]
    keep = np.zeros(n, np.bool_)
    keep[alias[protected]] = True
    op, pstart, pidx, aux, leaf_values, index = _extract_rows(op, pstart, pidx, aux, leaf_values, keep)
    return op, pstart, pidx, aux, leaf_values, index[alias]


def _history(epochs_rec, losses_rec, val_rec, epochs_run: int, seconds: float) -> History:
    ep = np.concatenate(epochs_rec) if epochs_rec else np.zeros(0, np.int64)
    ls = np.concatenate(losses_rec) if losses_rec else np.zeros(0)
    vl = np.concatenate(val_rec) if val_rec else np.zeros(0)
    return History(ep.astype(np.int64), ls, epochs_run, False, seconds, val_loss=vl)


def _finite_matrix(a, what: str) -> np.ndarray:
    x = real_array(a, what)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"{what}: expected a 2-D array (samples, features), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        bad = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(f"{what}: contains NaN or inf (first at row {bad[0]}, column {bad[1]})")
    return np.ascontiguousarray(x)


MAX_COUNT = 2**62  # epochs, batch sizes: int64 in the kernels, with room for epoch + chunk


def _count(x, what: str, minimum: int, maximum: int | None = MAX_COUNT) -> int:
    """``x`` as an int in ``[minimum, maximum]``; ``maximum=None``: no upper bound."""
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise TypeError(f"{what} must be an int, got {type(x).__name__}")
    if x < minimum:
        raise ValueError(f"{what} must be at least {minimum}, got {x}")
    if maximum is not None and x > maximum:
        raise ValueError(f"{what} must be at most 2**62, got {x}")
    return int(x)


def _nonneg(x, what: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise TypeError(f"{what} must be a number, got {type(x).__name__}")
    v = float(x)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{what} must be a finite number >= 0, got {x}")
    return v


class ProgressBar:
    """A ``tqdm.auto`` progress bar (a widget in notebooks) that stays silent for short runs.

    Nothing is shown unless the run lasts longer than ``delay`` seconds; then
    tqdm shows the count, rate and time left, plus the figures given to
    :meth:`update` (e.g. the loss). Training loops call ``update`` between
    kernel calls, never per epoch. Ensembles and sweeps reuse it with their
    own ``desc`` and ``unit``.
    """

    def __init__(self, total: int, desc: str = "fit", unit: str = "epoch", delay: float = 1.0, file=None):
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=total,
            desc=desc,
            unit=unit,
            delay=delay,
            file=sys.stderr if file is None else file,
            dynamic_ncols=True,
            leave=True,
        )

    def update(self, done: int, **figures: float) -> None:
        """``done`` units finished in all (not since the last call); ``figures`` shown after the bar."""
        if figures:
            self.bar.set_postfix({k: f"{v:.6g}" for k, v in figures.items()}, refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress_bar(total: int, desc: str = "fit", unit: str = "epoch") -> ProgressBar:
    """The progress bar every training loop of tinyml shows (see :class:`ProgressBar`)."""
    return ProgressBar(total, desc, unit)


# ---------------------------------------------------------------------------
# MLP.fit / MLP.predict: trace the model and a built-in loss, then Program.fit
# ---------------------------------------------------------------------------
def _per_sample_losses() -> dict[str, tuple[Callable, str]]:
    """Built-in losses: name -> (one sample's loss from (outputs, targets), batch reduction)."""
    from . import losses

    return {
        "mse": (lambda o, t: losses.mse(o, t, reduction="mean"), "mean"),
        "sse": (lambda o, t: losses.mse(o, t, reduction="sum"), "sum"),
        "cross_entropy": (lambda o, t: losses.cross_entropy([o], [t]), "mean"),
        "binary_cross_entropy": (lambda o, t: losses.binary_cross_entropy(o, t), "mean"),
        "hinge": (lambda o, t: losses.hinge(o, t), "mean"),
    }


def _targets(model, y, loss: str | Callable, n: int) -> np.ndarray:
    """Check ``y`` against the model and loss; integer labels become one-hot rows."""
    k = model.n_outputs
    if loss == "cross_entropy":
        if k == 1:
            raise ValueError(
                "fit: cross_entropy needs a model with one output per class (a softmax over one output "
                "is always 1, so the loss is always 0); for two classes, build the model with "
                "output_activation='sigmoid' and use loss='binary_cross_entropy' with 0/1 targets, "
                "or give it 2 outputs"
            )
        arr = np.asarray(y)
        if (
            arr.ndim == 2
            and arr.shape[1] == 1
            and real_dtype(arr.dtype)
            and (np.issubdtype(arr.dtype, np.integer) or np.all(np.mod(arr, 1) == 0))
        ):
            raise ValueError(
                f"fit: cross_entropy labels have shape {arr.shape}; give integer labels as a 1-D array of "
                f"shape ({arr.shape[0]},) (e.g. y.ravel()), or one-hot rows of {k} columns"
            )
        if arr.ndim == 1:
            if arr.shape[0] != n:
                raise ValueError(f"fit: X has {n} samples but Y has {arr.shape[0]} labels")
            if not real_dtype(arr.dtype) or arr.dtype == np.bool_:  # bools refused, as by PyTorch
                raise TypeError(
                    f"fit: cross_entropy labels must be integers, got an array of dtype {arr.dtype}"
                    + (" (give class indices: y.astype(int))" if arr.dtype == np.bool_ else "")
                )
            whole = np.issubdtype(arr.dtype, np.integer) or (
                np.all(np.isfinite(arr)) and np.all(np.mod(arr, 1) == 0)  # isfinite first: mod(inf) warns
            )
            if not whole:
                raise ValueError("fit: cross_entropy labels of shape (n,) must be integers")
            if n and (arr.min() < 0 or arr.max() >= k):  # before any cast: 2**64 - 1 is not -1
                raise ValueError(
                    f"fit: labels must be in 0..{k - 1} for a model with {k} outputs, "
                    f"got {arr.min()}..{arr.max()}"
                )
            labels = arr.astype(np.int64)
            onehot = np.zeros((n, k))
            onehot[np.arange(n), labels] = 1.0
            return onehot
    t = _finite_matrix(y, "Y")
    if t.shape[0] != n:
        raise ValueError(f"fit: X has {n} samples but Y has {t.shape[0]}")
    if t.shape[1] != k:
        raise ValueError(f"fit: Y must have {k} columns (the model's outputs), got {t.shape[1]}")
    # the same checks the eager losses make on number targets
    if loss == "binary_cross_entropy" and not np.all((t >= 0.0) & (t <= 1.0)):
        raise ValueError("fit: binary_cross_entropy targets must lie in [0, 1]")
    if loss == "binary_cross_entropy" and model.output_activation != "sigmoid":
        raise ValueError(
            "fit: binary_cross_entropy takes probabilities, but the model's outputs are "
            f"{model.output_activation.value}; build it with output_activation='sigmoid'"
        )
    if loss == "hinge" and not np.all(np.abs(t) == 1.0):
        raise ValueError("fit: hinge labels must be -1 or +1")
    return t


def _trace(model, loss: str | Callable, rate: float = 0.0) -> tuple[Program, str]:
    """The model's training program for ``loss`` (cached per built-in loss and dropout rate)."""
    cache = model.__dict__.setdefault("_programs", {})
    key = (loss, rate)
    if isinstance(loss, str) and key in cache:
        return cache[key]
    table = _per_sample_losses()
    if isinstance(loss, str):
        if loss not in table:
            raise ValueError(f"fit: unknown loss {loss!r}; choose one of {sorted(table)} or pass a callable")
        per_sample, reduction = table[loss]
    elif callable(loss):
        per_sample, reduction = loss, "mean"
    else:
        raise TypeError(f"fit: loss must be a name or a callable(outputs, targets) -> Value, got {loss!r}")
    g = model.graph
    g.reserve(*_trace_room(model, rate))
    mark = g.checkpoint()
    xs = placeholders(model.n_inputs, g)
    ys = placeholders(model.n_outputs, g)
    noise = []
    if rate > 0.0:
        # hidden layer by hidden layer: the layer, then a dropout row per unit
        outputs = xs
        for k, layer in enumerate(model.layers):
            outputs = layer(outputs)
            if k < len(model.layers) - 1:
                u = placeholders(len(outputs), g)
                noise += u
                outputs = [dropout(o, v, rate) for o, v in zip(outputs, u)]
    else:
        outputs = model(xs)
    value = per_sample(outputs, ys)
    if type(value) is not Value:
        raise TypeError(f"fit: the loss must return a Value, got {type(value).__name__}")
    program = Program([value], xs + ys, model.parameters(), noise)
    g.rewind(mark)  # the traced rows live on in the program only
    if isinstance(loss, str):
        cache[key] = (program, reduction)
    return program, reduction


def _trace_room(model, rate: float) -> tuple[int, int]:
    """At least the rows and parent entries that tracing ``model`` with a built-in
    loss appends. Reserved before the checkpoint, so no compaction can happen
    while tracing: the rewind that follows then frees the traced rows at once
    (after a compaction it could not, and the next write-back would evaluate
    them, compiling the eager evaluation kernel for nothing)."""
    k = model.n_outputs
    rows = model.n_inputs + k + 4 * k + 8  # placeholders, then the loss
    entries = 8 * k + 16
    for layer in model.layers:
        rows += layer.room[0]
        entries += layer.room[1]
        if rate > 0.0:  # a noise placeholder and a dropout row per unit
            rows += 2 * layer.n_outputs
            entries += 2 * layer.n_outputs
    return rows, entries


def fit_model(model, X, Y, loss, options: FitOptions) -> History:
    """``MLP.fit``: check X and Y against the model, trace it with ``loss``, train."""
    x = _finite_matrix(X, "X")
    if x.shape[1] != model.n_inputs:
        raise ValueError(f"fit: X must have {model.n_inputs} columns (the model's inputs), got {x.shape[1]}")
    y = _targets(model, Y, loss, x.shape[0])
    program, reduction = _trace(model, loss, options.dropout)
    if options.validation_data is not None:
        pair = options.validation_data
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise TypeError("fit: validation_data must be a pair (X_val, Y_val)")
        xv = _finite_matrix(pair[0], "validation_data X")
        if xv.shape[1] != model.n_inputs:
            raise ValueError(
                f"fit: validation_data X must have {model.n_inputs} columns (the model's inputs), "
                f"got {xv.shape[1]}"
            )
        yv = _targets(model, pair[1], loss, xv.shape[0])
        options = replace(options, validation_data=np.hstack([xv, yv]))
    if options.optimizer is None:
        options = replace(options, lr=_nonneg(model.learning_rate, "the model's learning_rate"))
    return program.fit_with(np.hstack([x, y]), replace(options, reduction=reduction))


def predict_model(model, X) -> np.ndarray:
    x = _finite_matrix(X, "X")
    if x.shape[1] != model.n_inputs:
        raise ValueError(f"predict: X must have {model.n_inputs} columns, got {x.shape[1]}")
    return _predict_program(model).run(x)


def _predict_program(model) -> Program:
    """The model's outputs over input placeholders, traced once (cached on the model)."""
    cache = model.__dict__.setdefault("_programs", {})
    if "predict" not in cache:
        model.graph.reserve(*_trace_room(model, 0.0))
        mark = model.graph.checkpoint()
        xs = placeholders(model.n_inputs, model.graph)
        cache["predict"] = Program(model(xs), xs, model.parameters())
        model.graph.rewind(mark)
    return cache["predict"]


class BufferVersion:
    """Every change to any module buffer bumps ``version``: programs traced with the old
    numbers (a batch norm in eval mode reads its running statistics as constants)
    are then traced again."""

    version = 0

    @classmethod
    def bump(cls) -> None:
        cls.version += 1


class _Tracing(threading.local):
    """Set while ``fit`` traces a module's training step: layers that draw noise
    (dropout) or reduce over the batch (batch norm) build their compiled form."""

    def __init__(self) -> None:
        self.noise: list[Value] | None = None  # dropout draws, refilled per sample and step
        # batch norm: {"mask": lane-mask Value, "lanes": its LANE_SUM, "rows": [(RUNNING_STAT
        # Value, module, buffer name, channel)], "eval": [(batch-statistic Value, the RUNNING_STAT
        # Value it reads in eval mode)]} while tracing a training step
        self.stats: dict | None = None


tracing = _Tracing()


# ---------------------------------------------------------------------------
# Module.fit / Module.predict: any module, traced for one sample (a lane each)
# ---------------------------------------------------------------------------
def _samples_of(X, what: str) -> np.ndarray:
    """``X`` batch first, (n, ...), as a finite float64 array."""
    x = real_array(X, what)
    if x.ndim == 1:
        x = x[:, None]
    if not np.all(np.isfinite(x)):
        bad = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(f"{what}: contains NaN or inf (first at {tuple(int(i) for i in bad)})")
    return np.ascontiguousarray(x)


def _trace_module(module, sample_shape: tuple[int, ...], training: bool):
    """Placeholders for one sample and the module's output rows over them.

    Returns ``(graph, mark, xs, outputs, noise, stats)``; the caller builds its Program
    and rewinds to ``mark``. Dropout layers add noise placeholders while tracing, batch
    norm layers a lane mask and running-statistics rows (``stats``, see ``module.tracing``).
    """
    g = module.graph
    mark = g.checkpoint()
    xs = placeholders(int(np.prod(sample_shape)), g)
    was = [(m, m.training) for m in module.modules()]
    module.train(training)
    tracing.noise = [] if training else None
    tracing.stats = {"mask": None, "lanes": None, "rows": [], "eval": []} if training else None
    try:
        out = module(Tensor._make(g, list(xs), (1, *sample_shape)))
        noise = tracing.noise or []
        stats = tracing.stats
    finally:
        tracing.noise = None
        tracing.stats = None
        for m, mode in was:
            object.__setattr__(m, "training", mode)
    name = type(module).__name__
    if type(out) is Value:
        outputs = [out]
    elif isinstance(out, Tensor):
        if out.shape[0] != 1:
            raise ValueError(f"{name}.forward: a batch of 1 sample gave an output of shape {out.shape}")
        outputs = out.flat_values()
    else:
        raise TypeError(f"{name}.forward must return a Tensor (batch first), got {type(out).__name__}")
    return g, mark, xs, outputs, noise, stats


def _module_program(module, sample_shape, loss, training: bool):
    """(program, reduction, n_outputs, sigmoid outputs) for ``loss`` (None: outputs only)."""
    cache = module.__dict__.setdefault("_programs", {})
    key = (
        loss if isinstance(loss, str) or loss is None else id(loss),
        sample_shape,
        training,
        None if training else BufferVersion.version,  # an eval-mode program holds running statistics
    )
    if key in cache and (loss is None or isinstance(loss, str)):
        return cache[key]
    table = _per_sample_losses()
    if loss is None:
        per_sample, reduction = None, "mean"
    elif isinstance(loss, str):
        if loss not in table:
            raise ValueError(f"fit: unknown loss {loss!r}; choose one of {sorted(table)} or pass a callable")
        per_sample, reduction = table[loss]
    elif callable(loss):
        per_sample, reduction = loss, "mean"
    else:
        raise TypeError(f"fit: loss must be a name or a callable(outputs, targets) -> Value, got {loss!r}")
    params = module.parameters()
    g, mark, xs, outputs, noise, stats = _trace_module(module, sample_shape, training)
    masks = [] if stats is None or stats["mask"] is None else [stats["mask"]]
    stat_rows = [] if stats is None else stats["rows"]
    k = len(outputs)
    sigmoid = all(
        g.op[v._row] == Op.SIGMOID or (g.op[v._row] == Op.NEURON and g.aux[v._row] == Op.SIGMOID)
        for v in outputs
    )
    stat_values = [r[0] for r in stat_rows]
    links = [] if stats is None else stats["eval"]
    if per_sample is None:
        program = Program(outputs, xs, params, noise, masks, stat_values, links)
    else:
        ys = placeholders(k, g)
        value = per_sample(outputs, ys)
        if type(value) is not Value:
            raise TypeError(f"fit: the loss must return a Value, got {type(value).__name__}")
        program = Program([value], xs + ys, params, noise, masks, stat_values, links)
    g.rewind(mark)  # the traced rows live on in the program only
    if stat_rows:
        where = [(owner, name, ch) for _, owner, name, ch in stat_rows]

        def source() -> np.ndarray:
            return np.array([owner._buffers[name][ch] for owner, name, ch in where])

        def sink(values: np.ndarray) -> None:
            for (owner, name, ch), v in zip(where, values.tolist()):
                owner._buffers[name][ch] = v
            BufferVersion.bump()

        program.stat_source, program.stat_sink = source, sink
    result = (program, reduction, k, sigmoid)
    if loss is None or isinstance(loss, str):
        cache[key] = result
    return result


class _Outputs:
    """What ``_targets`` needs to know of a model: its outputs."""

    def __init__(self, k: int) -> None:
        self.n_outputs = k
        self.output_activation = "sigmoid"  # checked by fit_module itself


def fit_module(module, X, Y, loss, options: FitOptions) -> History:
    """``Module.fit``: trace one sample's step in training mode, then ``Program.fit_with``."""
    x = _samples_of(X, "X")
    program, reduction, k, sigmoid = _module_program(module, x.shape[1:], loss, True)
    if loss == "binary_cross_entropy" and not sigmoid:
        raise ValueError(
            f"fit: binary_cross_entropy takes probabilities, but {type(module).__name__}'s outputs are "
            "not sigmoids; end the model with tm.Sigmoid()"
        )
    y = _targets(_Outputs(k), Y, loss, x.shape[0])
    n = x.shape[0]
    if program.across_lanes:
        batch_size = options.batch_size
        smallest = n if batch_size is None or batch_size >= n else (n % batch_size or batch_size)
        if smallest < 2:
            raise ValueError(
                f"fit: {type(module).__name__} computes batch statistics (batch norm), which need at least "
                f"2 samples per batch; with {n} samples and batch_size={batch_size} a batch has {smallest}. "
                "Choose another batch_size"
            )
    if options.validation_data is not None:
        pair = options.validation_data
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise TypeError("fit: validation_data must be a pair (X_val, Y_val)")
        xv = _samples_of(pair[0], "validation_data X")
        if xv.shape[1:] != x.shape[1:]:
            raise ValueError(
                f"fit: validation_data X has samples of shape {xv.shape[1:]}, X has {x.shape[1:]}"
            )
        yv = _targets(_Outputs(k), pair[1], loss, xv.shape[0])
        options = replace(options, validation_data=np.hstack([xv.reshape(xv.shape[0], -1), yv]))
    samples = np.hstack([x.reshape(n, -1), y])
    return program.fit_with(samples, replace(options, reduction=reduction))


def predict_module(module, X) -> np.ndarray:
    """``Module.predict``: the outputs of every sample in eval mode, (n, outputs)."""
    x = _samples_of(X, "X")
    program = _module_program(module, x.shape[1:], None, False)[0]
    return program.run(x.reshape(x.shape[0], -1))
