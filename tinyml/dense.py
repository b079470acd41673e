"""Dense blocks: find a program's layers in its scalar rows, so training can run each as one block.

The tape stays scalar; this is the program compiler seeing more than rows. A
run of consecutive NEURON rows (or AFFINE rows) with one activation, whose
biases and weights are LEAF rows and whose inputs are one and the same
ascending range of rows below the run, is a dense layer: ``kernels.dense_forward``
computes it as a matrix product and ``kernels.dense_backward`` its gradients as
outer products (see "Dense blocks" in ``tinyml/kernels.py`` for the layout and
for why the results equal the row-by-row sweeps'). A CROSS_ENTROPY row over
consecutive logit rows (with a class index, or consecutive input rows of
targets) is a block too: its loss over all lanes class by class, so ``exp``
vectorises, and its forward's exps kept for its backward. Everything else stays a
range of rows for the row sweeps. A plan is computed once per program, in
NumPy, at compile time.
"""

from __future__ import annotations

import numpy as np

from . import kernels

SEG_ROWS = kernels.SEG_ROWS
SEG_BLOCK = kernels.SEG_BLOCK


def find_blocks(op, pstart, pidx, aux, lo: int, hi: int):
    """The layers among rows ``lo..hi-1``: (segments int64[S, 3], blocks int64[K, 8], wrows int64[W]).

    See ``kernels.train_epochs``'s ``dense`` argument for the meaning of each column.
    """
    leaf = op == kernels.LEAF
    segs: list[tuple[int, int, int]] = []
    blocks: list[tuple[int, ...]] = []
    wrows: list[np.ndarray] = []
    at = 0
    scratch = 0  # rows of scratch the cross-entropy blocks so far take
    start = lo  # first row not yet in a segment
    i = lo
    while i < hi:
        loss = _cross_entropy_row(op, pstart, pidx, aux, i)
        if loss is not None:
            z0, k, t0, label = loss
            if start < i:
                segs.append((SEG_ROWS, start, i))
            segs.append((SEG_BLOCK, len(blocks), 0))
            blocks.append((i, 1, z0, k, kernels.CROSS_ENTROPY, scratch, t0, label))
            scratch += k + 3
            start = i = i + 1
            continue
        layout = _layer_row(op, pstart, pidx, aux, leaf, i)
        if layout is None:
            i += 1
            continue
        act, x0, fan = layout
        j = i + 1
        while j < hi and x0 + fan <= i and _layer_row(op, pstart, pidx, aux, leaf, j) == layout:
            if op[j] != op[i]:
                break
            j += 1
        if x0 + fan > i:  # reads rows at or above its own start: not a layer's unit
            i += 1
            continue
        if start < i:
            segs.append((SEG_ROWS, start, i))
        units = j - i
        params = np.empty(units * (fan + 1), np.int64)
        for h in range(units):
            parents = pidx[pstart[i + h] : pstart[i + h + 1]]
            params[h] = parents[0]  # the bias
            params[units + h * fan : units + (h + 1) * fan] = parents[1 : 1 + fan]
        segs.append((SEG_BLOCK, len(blocks), 0))
        blocks.append((i, units, x0, fan, act, at, *_packing(params, units, fan)))
        wrows.append(params)
        at += len(params)
        start = i = j
    if start < hi:
        segs.append((SEG_ROWS, start, hi))
    return (
        np.array(segs, np.int64).reshape(-1, 3),
        np.array(blocks, np.int64).reshape(-1, 8),
        np.concatenate(wrows) if wrows else np.zeros(0, np.int64),
    )


def _packing(params: np.ndarray, units: int, fan: int) -> tuple[int, int]:
    """(wb, stride) if unit h's weights and then its bias are the rows wb + h * stride + 0..fan
    (how ``Layer`` allocates them), else (-1, 0): a packed block reads them in place."""
    weights = params[units:].reshape(units, fan)
    rows = np.concatenate([weights, params[:units, None]], axis=1)
    wb = int(rows[0, 0])
    stride = int(rows[1, 0] - wb) if units > 1 else fan + 1
    want = wb + stride * np.arange(units)[:, None] + np.arange(fan + 1)
    if stride < fan + 1 or not np.array_equal(rows, want):
        return -1, 0
    return wb, stride


def _cross_entropy_row(op, pstart, pidx, aux, i):
    """(first logit row, classes k, first target row or -1, class index or -1) if row i is a
    CROSS_ENTROPY row over k consecutive per-lane logit rows, with a class index or k
    consecutive INPUT target rows (which take no gradient); else None."""
    if op[i] != kernels.CROSS_ENTROPY:
        return None
    parents = pidx[pstart[i] : pstart[i + 1]]
    label = int(aux[i])
    k = len(parents) if label >= 0 else len(parents) // 2
    if k < 1 or (label < 0 and len(parents) != 2 * k):
        return None
    z0 = int(parents[0])
    if not np.array_equal(parents[:k], np.arange(z0, z0 + k)):
        return None
    if np.isin(op[parents[:k]], (kernels.LEAF, kernels.INPUT)).any():
        return None
    t0 = -1
    if label < 0:
        t0 = int(parents[k])
        if not np.array_equal(parents[k:], np.arange(t0, t0 + k)) or (op[parents[k:]] != kernels.INPUT).any():
            return None
    return z0, k, t0, label


def _layer_row(op, pstart, pidx, aux, leaf, i):
    """(activation, first input row, fan-in) if row i can be a layer's unit, else None."""
    o = op[i]
    if o != kernels.NEURON and o != kernels.AFFINE:
        return None
    parents = pidx[pstart[i] : pstart[i + 1]]
    fan = (len(parents) - 1) // 2
    if fan < 1 or len(parents) != 2 * fan + 1:
        return None
    inputs = parents[1 + fan :]
    if not leaf[parents[: 1 + fan]].all() or leaf[inputs].any():
        return None
    x0 = int(inputs[0])
    if not np.array_equal(inputs, np.arange(x0, x0 + fan)):
        return None
    act = int(aux[i]) if o == kernels.NEURON else 0
    return act, x0, fan


def plan(blocks_found, lanes: int):
    """The ``dense`` argument of ``kernels.train_epochs``: the blocks plus scratch for ``lanes``.

    The scratch ``g`` holds a layer's pre-activation gradients in its first rows, and
    after them each cross-entropy block's rows (its exps and their sum, from forward to
    backward), so that no block's backward overwrites what another's still needs.
    """
    segs, blocks, wrows = blocks_found
    layers = blocks[blocks[:, 4] != kernels.CROSS_ENTROPY]
    losses = blocks[:, 4] == kernels.CROSS_ENTROPY
    units = int(layers[:, 1].max()) if len(layers) else 1
    blocks = blocks.copy()
    blocks[losses, 5] += units  # each loss block's first scratch row
    rows = max(units, int((blocks[losses, 5] + blocks[losses, 3] + 3).max()) if losses.any() else 1)
    fan = int(blocks[:, 3].max()) if len(blocks) else 1
    weights = int((layers[:, 1] * layers[:, 3]).max()) if len(layers) else 1
    # xt holds a block's inputs lane by lane, and a column of ones (the biases' inputs)
    return (segs, blocks, wrows, np.zeros((rows, lanes)), np.zeros(weights), np.zeros((lanes, fan + 1)))


def rows_only(lo: int, hi: int):
    """A plan without blocks: every row by the row sweeps (the definition blocks are tested against)."""
    return (np.array([[SEG_ROWS, lo, hi]], np.int64), np.zeros((0, 8), np.int64), np.zeros(0, np.int64))
