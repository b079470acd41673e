"""The tape: a growable struct-of-arrays graph that the kernels sweep.

A row is a node. ``op[i]`` says what it computes, its parents are
``pidx[pstart[i]:pstart[i+1]]`` (always rows < i, so row order is a
topological order), ``aux[i]`` is an op constant, ``data[i]``/``grad[i]``
its value and gradient. Rows are appended by the front-end (``Value``,
``nn``, ``Tensor``) and evaluated lazily by the ``eager_evaluate`` kernel, in one
place, the first time a value is needed: every formula lives in the kernels.

Memory stays bounded without any user call: the graph keeps a list of the
``Value`` handles made on it, and when the arrays are full it first *compacts*
(keeps rows reachable from live handles, renumbers those handles) and only
grows if compaction freed too little. The list holds plain references, not
weak ones (an append costs ~15 ns, a weak reference ~100 ns, and a graph of
micrograd-sized expressions makes one handle per row): a handle that nothing
but this list refers to (``sys.getrefcount``) is dead, and goes, at compaction
and, for the handles made since the last time, every 256 rows (so that a loop's
temporaries are freed at once, not left to Python's cycle collector). The
price: a Graph and its Values form a reference cycle, so a dropped Graph is
freed by Python's cycle collector rather than at once. Code that appends
several rows at once calls :meth:`Graph.reserve` first, while every row it
still needs is held by a handle, so no compaction can happen between its
appends.
"""

from __future__ import annotations

import operator
import signal
import sys
import threading

import numpy as np

from . import kernels
from .ops import Op

_MIN_CAPACITY = 1024
_LEAF = int(Op.LEAF)


# Operators take their slow path (Graph._make_room) at least this often, in rows.
_PRUNE_EVERY = 256

_getrefcount = sys.getrefcount
row_of = operator.attrgetter("_row")  # a Value's row (map(row_of, values) runs in C)


class _Probe:
    __slots__ = ()


def _drop_unreferenced(handles: list, k: int) -> None:
    """Drop from ``handles[k:]`` the Values that nothing but ``handles`` refers to.

    One slice assignment, after the survivors are listed: an interrupt leaves
    the list whole. About 18 ns per handle (the dropped ones are freed here).
    """
    handles[k:] = [v for v in handles[k:] if _getrefcount(v) > _ALONE]


def _counts(handles: list, k: int) -> list:
    """``sys.getrefcount`` of each of ``handles[k:]``, counted as in ``_drop_unreferenced``."""
    return [_getrefcount(v) for v in handles[k:]]


# What _getrefcount reports there for an object that only its list refers to (4 on
# CPython 3.11; measured here rather than assumed, as interpreters count differently).
_ALONE = _counts([_Probe()], 0)[0]


try:  # the C functions under the signal module: its wrappers convert to enums, 11 us a block
    import _signal as _signals
except ImportError:  # not CPython
    _signals = signal
_SIGINT = int(signal.SIGINT)


class hold_interrupts:
    """``with hold_interrupts():`` defers Ctrl-C until the block is done.

    For work that must not stop halfway: a compaction moves rows and then
    renumbers the handles, an optimiser step updates its state and then the
    parameters. A SIGINT arriving meanwhile is remembered and delivered (the
    usual KeyboardInterrupt) when the block ends. Signals only reach the main
    thread, so elsewhere this does nothing.
    """

    def __enter__(self) -> hold_interrupts:
        self._previous = None
        self._pending = False
        if threading.current_thread() is threading.main_thread():
            current = _signals.getsignal(_SIGINT)
            if current is not None:  # None: a handler set outside Python, which we could not restore
                self._previous = _signals.signal(_SIGINT, self._hold)
        return self

    def _hold(self, signum, frame) -> None:
        self._pending = True

    def __exit__(self, *exc) -> None:
        if self._previous is None:
            return
        _signals.signal(_SIGINT, self._previous)
        if not self._pending:
            return
        if callable(self._previous):
            self._previous(signal.SIGINT, None)  # Python's default raises KeyboardInterrupt
        elif self._previous == signal.SIG_DFL:
            signal.raise_signal(signal.SIGINT)  # the default action: the process ends


def cached_rows(values, graph, cache, freed: str) -> tuple[np.ndarray, tuple]:
    """(rows, cache): the tape rows of the fixed list ``values`` as int64, read from
    ``cache`` = (graph generation, rows) while ``graph`` has not moved or freed rows
    since, else read anew (a RuntimeError ``freed`` if one was freed). For the owners
    that read thousands of parameter rows per step or per kernel call."""
    if cache is not None and cache[0] == graph.generation:
        return cache[1], cache
    rows = np.fromiter(map(row_of, values), np.int64, len(values))
    if len(rows) and rows.min() < 0:
        raise RuntimeError(freed)
    return rows, (graph.generation, rows)


def writable_arrays(state: dict) -> dict:
    """``state`` with every read-only array replaced by a writable copy.

    Arrays unpickled from read-only memory (``joblib.load(path, mmap_mode="r")``,
    pickle protocol 5 buffers over ``bytes``) cannot be written, and the tape
    and the kernels write theirs in place.
    """
    return {
        k: np.array(v) if isinstance(v, np.ndarray) and not v.flags.writeable else v for k, v in state.items()
    }


class Graph:
    """A tape of rows. Usually implicit: ``Value`` uses :func:`current_graph`.

    Use ``with tm.Graph() as g:`` to build into a graph of your own; Values of
    two graphs cannot be combined.
    """

    def __init__(self, capacity: int = _MIN_CAPACITY) -> None:
        if isinstance(capacity, (bool, np.bool_)) or not isinstance(capacity, (int, np.integer)):
            raise TypeError(f"Graph(capacity): expected an int number of rows, got {capacity!r:.40}")
        if capacity < 0:
            raise ValueError(f"Graph(capacity): expected a number of rows >= 0, got {capacity}")
        cap = max(int(capacity), 16)
        self.op = np.zeros(cap, np.uint8)
        self.aux = np.zeros(cap)
        self._set_values(np.zeros((cap, 1)), np.zeros((cap, 1)))
        self.mark = np.zeros(cap, np.int64)
        self.pstart = np.zeros(cap + 1, np.int64)
        self.pidx = np.zeros(2 * cap, np.int64)
        self.n = 0  # rows in use
        self.n_eval = 0  # rows < n_eval hold their forward value
        self.stamp = 0  # backward pass counter, for `mark`
        self.generation = 0  # bumped whenever rows move or are freed: caches of row numbers expire
        self.compactions = 0  # bumped whenever rows are renumbered (compaction, clear)
        self._handles: list = []  # the live Values after the last compaction, and every one made since
        self._pruned = 0  # _handles[:_pruned] were alive at the last pruning (_make_room)
        self._handle_limit = _MIN_CAPACITY  # wrap() prunes the dead from _handles past this length
        self._bind()

    # -- context manager: make this the graph new Values go into ------------
    def __enter__(self) -> Graph:
        _state.entered.append(_state.graph)  # per thread: one graph may be entered in several
        _state.graph = self
        return self

    def __exit__(self, *exc) -> None:
        if not _state.entered:
            raise RuntimeError("Graph.__exit__ without a matching __enter__ in this thread")
        _state.graph = _state.entered.pop()

    def __len__(self) -> int:
        return self.n

    @property
    def entries(self) -> int:
        """Parent entries in use: ``pstart[n]`` (appends write ``pstart[n + 1]`` and publish ``n`` alone)."""
        return self._pstart_mv[self.n]  # a memoryview read: an int, 20 ns (NumPy's takes 100)

    # -- copying and pickling -------------------------------------------------
    # A copy of a model (copy.deepcopy, pickle) carries its graph along: the
    # arrays are copied, and the Values copied with them register as the new
    # graph's handles (see Value.__reduce__). Rows held only by Values that
    # were not copied go with the copy's next compaction.
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        for k in ("_handles", "shared", "shared_grad", *_VIEWS):
            del state[k]
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        state.pop("entries", None)  # a counter in graphs pickled by earlier versions (now pstart[n])
        self.__dict__.update(writable_arrays(state))
        self._handles = []
        self._pruned = 0
        self._set_values(self.data, self.grad)
        self._bind()

    def __copy__(self) -> Graph:
        raise TypeError("a Graph cannot be copied shallowly (both would own one tape); use copy.deepcopy")

    def __repr__(self) -> str:
        return f"Graph(rows={self.n}, capacity={self.op.shape[0]}, handles={len(self._handles)})"

    @property
    def capacity(self) -> int:
        return int(self.op.shape[0])

    # -- making room ---------------------------------------------------------
    def reserve(self, rows: int, parents: int) -> None:
        """Make room for ``rows`` new rows with ``parents`` parent entries in all.

        May compact, which renumbers rows: call it only while every row you will
        still refer to is held by a ``Value`` handle.
        """
        if self.n + rows <= self.op.shape[0] and self.entries + parents <= self.pidx.shape[0]:
            return
        with hold_interrupts():  # compaction and growth: all of it, or none
            self.collect()
            need_rows = self.n + rows
            need_entries = self.entries + parents
            cap = self.op.shape[0]
            # grow when compaction left the arrays more than half full
            while need_rows > cap // 2:
                cap *= 2
            entries = self.pidx.shape[0]
            while need_entries > entries // 2:
                entries *= 2
            if cap != self.op.shape[0]:
                self._resize_rows(cap)
            if entries != self.pidx.shape[0]:
                self.pidx = _resized(self.pidx, entries)
            self._bind()

    def _resize_rows(self, cap: int) -> None:
        with hold_interrupts():  # every array of the new size, or none
            self.op = _resized(self.op, cap)
            self.aux = _resized(self.aux, cap)
            self._set_values(_resized(self.data, cap), _resized(self.grad, cap))
            self.mark = _resized(self.mark, cap)
            self.pstart = _resized(self.pstart, cap + 1)
            self._bind()

    def _set_values(self, data: np.ndarray, grad: np.ndarray) -> None:
        """Install the (rows, 1) value and gradient arrays, and the 1-D views of
        them through which the kernels read LEAF rows (``shared``, ``shared_grad``)."""
        self.data, self.grad = data, grad
        self.shared, self.shared_grad = data[:, 0], grad[:, 0]

    def _bind(self) -> None:
        """Make the fast-path views of the current arrays (after they were replaced).

        ``Value``'s operators append rows through these: a ``memoryview`` item
        write costs about 20 ns, a NumPy scalar one 35 ns. ``_rows_cap`` is the
        arrays' length as a plain int; ``_limit`` is the row count at which the
        operators next take their slow path (see :meth:`_make_room`).
        """
        self._op_mv = memoryview(self.op)
        self._pstart_mv = memoryview(self.pstart)
        self._pidx_mv = memoryview(self.pidx)
        self._aux_mv = memoryview(self.aux)
        self._data_mv = memoryview(self.shared)
        self._grad_mv = memoryview(self.shared_grad)
        self._rows_cap = int(self.op.shape[0])
        self._limit = min(self._rows_cap, self.n + _PRUNE_EVERY)

    def _prune(self) -> None:
        """Drop from ``_handles`` the Values nothing else refers to (their rows stay)."""
        _drop_unreferenced(self._handles, 0)
        self._pruned = len(self._handles)
        self._handle_limit = 2 * len(self._handles) + _MIN_CAPACITY

    def _make_room(self) -> None:
        """The operators' slow path, taken when ``n`` reaches ``_limit``: every
        ``_PRUNE_EVERY`` rows, and when the tape is full.

        It drops the unreferenced handles made since the last call, so that a
        temporary Value is freed within a few hundred rows: left in the list
        until a compaction, a loop's temporaries would pile up as survivors of
        Python's cycle collector, whose collections then visit each of them (about
        100 ns per operator on micrograd's expression, more than the append).
        Then it makes room for one more row (compacting or growing, see
        :meth:`reserve`) and sets the next ``_limit``.
        """
        _drop_unreferenced(self._handles, self._pruned)
        self.reserve(1, 2)
        self._pruned = len(self._handles)
        self._limit = min(self._rows_cap, self.n + _PRUNE_EVERY)

    def collect(self) -> int:
        """Drop every row that no live ``Value`` depends on; returns rows freed.

        Runs automatically when the tape is full; safe to call at any time
        from user code (but not in the middle of a multi-row append).
        """
        _drop_unreferenced(self._handles, 0)
        live = self._handles
        rows = np.fromiter(map(row_of, live), np.int64, len(live))
        if (rows < 0).any():  # freed handles (a rewind) still held by the user
            live = [v for v in live if v._row >= 0]
            rows = rows[rows >= 0]
        keep = np.zeros(self.n, np.bool_)
        keep[rows] = True
        with hold_interrupts():  # rows move, then handles follow: both or neither
            before = self.n
            m, n_eval, new_index = kernels.compact(
                self.op, self.pstart, self.pidx, self.aux, self.data, self.grad, keep, self.n, self.n_eval
            )
            m = int(m)
            self._vacate(m, before)
            for v, row in zip(live, new_index[rows].tolist()):
                v._row = row
            self._handles = live
            self._pruned = len(live)
            self._handle_limit = 2 * len(live) + _MIN_CAPACITY
            self.n = m
            self._limit = min(self._rows_cap, m + _PRUNE_EVERY)
            self.n_eval = int(n_eval)
            self.mark[:] = 0
            self.stamp = 0
            self.generation += 1
            self.compactions += 1
            return before - self.n

    def clear(self) -> None:
        """Free every row; all existing Values of this graph become invalid.

        Parameters too: models built in this graph must be rebuilt. Automatic
        compaction makes this unnecessary for memory; it is a hard reset.
        """
        with hold_interrupts():  # every handle and row, or none
            for v in self._handles:
                v._row = -1
            self._handles = []
            self._pruned = 0
            self._vacate(0, self.n)
            self.n = 0
            self._limit = min(self._rows_cap, _PRUNE_EVERY)
            self.n_eval = 0
            self.generation += 1
            self.compactions += 1

    def checkpoint(self) -> tuple[int, int]:
        """A mark for :meth:`rewind`: the current length and compaction count."""
        return (self.n, self.compactions)

    def rewind(self, checkpoint: tuple[int, int]) -> bool:
        """Free the rows appended since ``checkpoint``; their Values become invalid.

        For temporary work such as tracing a step for ``tm.compile``: the rows go
        at once, without waiting for a compaction; rows before the checkpoint are
        untouched. Returns False, and frees nothing, if a compaction renumbered
        the rows in between (unreferenced rows then go with the next one).
        """
        mark, compactions = checkpoint
        if compactions != self.compactions:
            return False
        if not 0 <= mark <= self.n:
            raise ValueError(f"rewind: checkpoint row {mark} is beyond the tape's {self.n} rows")
        with hold_interrupts():  # every handle and row, or none
            live = []
            for v in self._handles:
                if v._row >= mark:
                    v._row = -1
                else:
                    live.append(v)
            self._handles = live
            self._pruned = 0
            self._vacate(mark, self.n)
            self.n = mark
            self._limit = min(self._rows_cap, mark + _PRUNE_EVERY)
            self.n_eval = min(self.n_eval, mark)
            self.generation += 1  # cached row numbers may point at freed rows
        return True

    def _vacate(self, lo: int, hi: int) -> None:
        """Restore the empty-row state (LEAF, aux 0, grad 0) of rows lo..hi-1."""
        self.op[lo:hi] = Op.LEAF
        self.aux[lo:hi] = 0.0
        self.grad[lo:hi] = 0.0

    # -- appending rows (no room check: call reserve() first) -----------------
    # Rows at and beyond ``n`` always hold op LEAF (0), aux 0 and grad 0 (the
    # arrays start zeroed; compaction and clear() re-zero what they vacate), so
    # appending a row writes only what differs from that.
    #
    # Interrupt safety: each append first writes the free rows and entries
    # beyond ``n``/``entries``, which no reader looks at, and then publishes them
    # by setting ``n`` (and ``n_eval``) in one final statement with no call in it
    # (``entries`` is ``pstart[n]``, so it follows) (CPython
    # runs a signal handler only at calls and loop jumps, a trace function only
    # between lines). Interrupted before that, it puts the rows it touched back
    # to their free state, again with no call: the tape is exactly as before the
    # call, or else exactly as after it. This costs nothing on the hot path,
    # unlike holding interrupts per append (two signal.signal calls).
    def push_leaf(self, value: float) -> int:
        n = self.n
        self.data[n, 0] = value
        self.pstart[n + 1] = self.entries
        n_eval = n + 1 if self.n_eval == n else self.n_eval  # a leaf needs no evaluation
        self.n, self.n_eval = n + 1, n_eval  # publish
        return n

    def push_leaves(self, values: np.ndarray) -> range:
        """Append one leaf row per element of the 1-D float64 array ``values``."""
        n = self.n
        k = values.shape[0]
        self.data[n : n + k, 0] = values
        self.pstart[n + 1 : n + k + 1] = self.entries
        n_eval = n + k if self.n_eval == n else self.n_eval
        self.n, self.n_eval = n + k, n_eval  # publish
        return range(n, n + k)

    def push(self, op: int, parents, aux: float = 0.0) -> int:
        """Append a row of ``op`` over parent rows ``parents`` (a sequence of ints)."""
        n = self.n
        s = self.entries
        k = len(parents)
        try:
            if k == 1:
                self.pidx[s] = parents[0]
            elif k == 2:
                self.pidx[s] = parents[0]
                self.pidx[s + 1] = parents[1]
            else:
                self.pidx[s : s + k] = parents
            self.pstart[n + 1] = s + k
            self.op[n] = op
            if aux:
                self.aux[n] = aux
            self.n = n + 1  # publish (entries is pstart[n])
        except BaseException:  # interrupted before publishing: row n back to free (no call here)
            self.op[n] = _LEAF
            self.aux[n] = 0.0
            raise
        return n

    def push_many(self, op: int, parents: np.ndarray, aux: float | np.ndarray = 0.0) -> range:
        """Append one row of ``op`` per line of ``parents`` (int64, shape (m, k)); no room check.

        The bulk form of :meth:`push`: call ``reserve(m, m * k)`` first. ``aux`` is
        one constant for every row or an array of m constants.
        """
        m, k = parents.shape
        n = self.n
        s = self.entries
        try:
            self.pidx[s : s + m * k] = parents.reshape(-1)
            self.pstart[n + 1 : n + m + 1] = s + k * np.arange(1, m + 1, dtype=np.int64)
            self.op[n : n + m] = op
            self.aux[n : n + m] = aux
            self.grad[n : n + m] = 0.0
            self.n = n + m  # publish (entries is pstart[n])
        except BaseException:  # interrupted before publishing: rows n.. back to free (no call here)
            self.op[n : n + m] = _LEAF
            self.aux[n : n + m] = 0.0
            self.grad[n : n + m] = 0.0
            raise
        return range(n, n + m)

    # -- evaluation --------------------------------------------------------------
    # The eager entry points take the arrays loose (see kernels.eager_evaluate):
    # one call per .data read or backward(), so their fixed cost is the point.
    def evaluate(self) -> None:
        """Compute every row appended since the last evaluation."""
        if self.n_eval < self.n:
            if _first_use["eager_evaluate"]:
                _first_use["eager_evaluate"] = False
                kernels.notice_compile("eager_evaluate")
            kernels.eager_evaluate(
                self.op, self.pstart, self.pidx, self.aux, self.data, self.grad, self.n_eval, self.n
            )
            self.n_eval = self.n

    def backward(self, root: int) -> None:
        """Evaluate pending rows, then accumulate d(root)/d(leaf) into every leaf."""
        self.stamp = stamp = self.stamp + 1
        n = self.n
        if _first_use["eager_gradients"]:
            _first_use["eager_gradients"] = False
            kernels.notice_compile("eager_gradients")
        kernels.eager_gradients(
            self.op,
            self.pstart,
            self.pidx,
            self.aux,
            self.data,
            self.grad,
            self.mark,
            stamp,
            self.n_eval,
            n,
            root,
        )
        self.n_eval = n


# Whether each eager entry is yet to be called in this process (then kernels.notice_compile
# says so if it is about to compile). A dict lookup here, not a call per .data read or
# backward(): kernels.notice_pending stays true in a program that never trains.
_first_use = {"eager_evaluate": True, "eager_gradients": True}

_VIEWS = ("_op_mv", "_pstart_mv", "_pidx_mv", "_aux_mv", "_data_mv", "_grad_mv")


def _resized(a: np.ndarray, length: int) -> np.ndarray:
    out = np.zeros((length,) + a.shape[1:], a.dtype)
    k = min(length, a.shape[0])
    out[:k] = a[:k]
    return out


class _State(threading.local):
    def __init__(self) -> None:
        self.graph = Graph()  # where new Values go
        self.entered: list[Graph] = []  # the graphs current before each `with graph:` still open


_state = _State()


def current_graph() -> Graph:
    """The graph that new Values are built in (per thread; see ``Graph``)."""
    return _state.graph
