"""The arithmetic ``exp`` and ``tanh`` of tinyml/kernels.py against Python's ``math`` (the C library).

They exist so that lane loops vectorise (the C library's are calls LLVM cannot vectorise);
their claim is a few ulp everywhere, with IEEE behaviour at the edges.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from numba import njit

from tinyml import kernels


@njit(cache=False)  # (a cached copy would keep an inlined kernel from before an edit of kernels.py)
def _exp_all(xs, out):
    for i in range(xs.shape[0]):
        out[i] = kernels.exp(xs[i])


@njit(cache=False)  # (a cached copy would keep an inlined kernel from before an edit of kernels.py)
def _tanh_all(xs, out):
    for i in range(xs.shape[0]):
        out[i] = kernels.tanh(xs[i])


def math_exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def ulps(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """|got - want| in units of the last place of want (the smallest subnormal below the normals)."""
    return np.abs(got - want) / np.spacing(np.abs(want))


EDGES = [
    0.0, -0.0, 1e-300, -1e-300, 5e-324, 1e-17, -1e-17, 0.5, -0.5, 1.0, 709.0, 709.78,
    709.782712893384,  # the largest x with a finite e^x
    709.7827128933841, 709.79, 710.0, 1000.0, 1e308, -708.39, -708.4,  # the normals end here
    -720.0, -745.13, -745.1332191019411,  # the smallest x whose e^x is not 0
    -745.1332191019412, -745.14, -1000.0, -1e308, math.inf, -math.inf,
]  # fmt: skip


def test_exp_within_2_ulp_of_math_over_the_whole_range():
    rng = np.random.default_rng(0)
    xs = np.concatenate([rng.uniform(-746.0, 710.0, 200_000), rng.uniform(-2.0, 2.0, 50_000), EDGES])
    xs = np.concatenate([xs, rng.normal(size=1000) * 1e-12])
    got = np.empty_like(xs)
    _exp_all(xs, got)
    want = np.array([math_exp(x) for x in xs])
    finite = np.isfinite(want) & (want > 0.0)
    assert ulps(got[finite], want[finite]).max() <= 2.0
    # overflow, underflow and infinities exactly as the C library
    np.testing.assert_array_equal(got[~finite], want[~finite])
    assert np.signbit(got).sum() == 0  # never -0.0


@pytest.mark.parametrize("x", [math.nan, -math.nan])
def test_exp_and_tanh_pass_nan(x):
    out = np.empty(1)
    _exp_all(np.array([x]), out)
    assert math.isnan(out[0])
    _tanh_all(np.array([x]), out)
    assert math.isnan(out[0])


def test_exp_of_integers_and_powers_of_two_points():
    """e^n for whole n and e^(k ln 2) near 2^k: where the reduction's n changes."""
    xs = np.concatenate([np.arange(-745.0, 710.0), np.arange(-1074, 1024) * math.log(2.0)])
    got = np.empty_like(xs)
    _exp_all(xs, got)
    want = np.array([math_exp(x) for x in xs])
    finite = np.isfinite(want) & (want > 0.0)
    assert ulps(got[finite], want[finite]).max() <= 2.0
    np.testing.assert_array_equal(got[~finite], want[~finite])


def test_tanh_within_4_ulp_of_math():
    rng = np.random.default_rng(1)
    xs = np.concatenate([rng.uniform(-25.0, 25.0, 100_000), rng.normal(size=10_000) * 1e-9, EDGES])
    xs = np.concatenate([xs, -xs])
    got = np.empty_like(xs)
    _tanh_all(xs, got)
    want = np.tanh(xs)
    nonzero = want != 0.0
    assert ulps(got[nonzero], want[nonzero]).max() <= 4.0
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))  # -0.0 keeps its sign


@njit(cache=False)  # (a cached copy would keep an inlined kernel from before an edit of kernels.py)
def _log1p_all(xs, out):
    for i in range(xs.shape[0]):
        out[i] = kernels.log1p_unit(xs[i])


def test_log1p_on_the_unit_interval_is_within_4_ulp_of_math():
    # softplus's log1p(exp(-|x|)): arguments in [0, 1], subnormals included
    rng = np.random.default_rng(7)
    xs = np.concatenate(
        [
            rng.uniform(0.0, 1.0, 200_000),
            np.exp(rng.uniform(-745.0, 0.0, 50_000)),
            [0.0, 5e-324, 2.2250738585072014e-308, 1e-300, 1e-17, 1e-8, 0.5, 1.0 - 2**-53, 1.0],
        ]
    )
    got = np.empty_like(xs)
    _log1p_all(xs, got)
    want = np.array([math.log1p(x) for x in xs])
    assert ulps(got, want).max() <= 4.0
    nan = np.array([math.nan])
    _log1p_all(nan, nan)
    assert math.isnan(nan[0])
