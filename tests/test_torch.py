"""tinyml against PyTorch float64: per-op gradient grids (incl. 0 and negatives) and random graphs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings

import tinyml as tm

from . import op_cases
from . import reference as ref
from .programs import mismatches, programs, run, same

torch = pytest.importorskip("torch")
F = torch.nn.functional

GRID = [-3.0, -1.5, -1.0, -0.5, -1e-3, 0.0, 1e-3, 0.5, 1.0, 1.5, 3.0]
PAIR_GRID = [-2.0, -0.5, 0.0, 0.5, 2.0]
REL = 1e-12  # one op: only the last bits of transcendental functions may differ


class TorchScalar:
    """A 0-d float64 tensor with tinyml's Value syntax, for building the same expressions."""

    def __init__(self, t):
        self.t = t

    @classmethod
    def leaf(cls, x: float) -> TorchScalar:
        return cls(torch.tensor(float(x), dtype=torch.float64, requires_grad=True))

    @staticmethod
    def _raw(o):
        return o.t if isinstance(o, TorchScalar) else o

    def __add__(self, o):
        return TorchScalar(self.t + self._raw(o))

    def __radd__(self, o):
        return TorchScalar(o + self.t)

    def __sub__(self, o):
        return TorchScalar(self.t - self._raw(o))

    def __rsub__(self, o):
        return TorchScalar(o - self.t)

    def __mul__(self, o):
        return TorchScalar(self.t * self._raw(o))

    def __rmul__(self, o):
        return TorchScalar(o * self.t)

    def __truediv__(self, o):
        return TorchScalar(self.t / self._raw(o))

    def __rtruediv__(self, o):
        return TorchScalar(o / self.t)

    def __pow__(self, o):
        return TorchScalar(torch.pow(self.t, self._raw(o)))

    def __rpow__(self, o):
        return TorchScalar(torch.pow(o, self.t))

    def __neg__(self):
        return TorchScalar(-self.t)

    def __abs__(self):
        return TorchScalar(torch.abs(self.t))

    def abs(self):
        return abs(self)

    def relu(self):
        return TorchScalar(torch.relu(self.t))

    def tanh(self):
        return TorchScalar(torch.tanh(self.t))

    def sigmoid(self):
        return TorchScalar(torch.sigmoid(self.t))

    sigm = sigmoid

    def exp(self):
        return TorchScalar(torch.exp(self.t))

    def log(self):
        return TorchScalar(torch.log(self.t))

    def sqrt(self):
        return TorchScalar(torch.sqrt(self.t))

    def leaky_relu(self, negative_slope=0.01):
        return TorchScalar(F.leaky_relu(self.t, negative_slope))

    def gelu(self, approximate="none"):
        return TorchScalar(F.gelu(self.t, approximate=approximate))

    def silu(self):
        return TorchScalar(F.silu(self.t))

    swish = silu

    def softplus(self):
        # torch's F.softplus returns x itself above threshold=20 (a shortcut, off by
        # log1p(exp(-x))); logaddexp(x, 0) is the same function without the shortcut
        return TorchScalar(torch.logaddexp(self.t, torch.zeros((), dtype=torch.float64)))


class Mismatches(list):
    """Collects every (what, tinyml, torch) that differs, so one test reports a whole grid."""

    def check(self, got: float, want: float, what) -> None:
        if not same(got, want, abs(want), REL):
            self.append((what, got, want))


# ---------------------------------------------------------------------------
# Per-op grids
# ---------------------------------------------------------------------------
def both(case: op_cases.Case, c: float | None = None):
    """The case as one function of tinyml Values (its Value syntax) and of TorchScalars
    (its PyTorch function), with the constant ``c`` (default: the case's own)."""
    c = case.c if c is None else c

    def fn(a, b=None):
        if isinstance(a, TorchScalar):
            return TorchScalar(case.torch(a.t, None if b is None else b.t, c))
        return case.apply(a, b, c)

    return fn


UNARY = {case.name: both(case) for case in op_cases.UNARY}
UNARY["leaky_relu_0.2"] = both(op_cases.CASES["leaky_relu"], 0.2)


def grad_pair(fn, *xs):
    """(values, leaf grads) of ``fn`` in tinyml and in torch."""
    with tm.Graph():
        leaves = [tm.Value(x) for x in xs]
        out = fn(*leaves)
        out.backward()
        mine = (out.data, [v.grad for v in leaves])
    tleaves = [TorchScalar.leaf(x) for x in xs]
    tout = fn(*tleaves)
    tout.t.backward()
    theirs = (tout.t.item(), [0.0 if v.t.grad is None else v.t.grad.item() for v in tleaves])
    return mine, theirs


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_grid(name):
    bad = Mismatches()
    for x in GRID:
        (v, [g]), (tv, [tg]) = grad_pair(UNARY[name], x)
        bad.check(v, tv, (name, x, "value"))
        bad.check(g, tg, (name, x, "grad"))
    assert not bad


@pytest.mark.parametrize("c", [0.0, 1.0, 2.0, 3.0, -1.0, -2.0, 0.5, 1.5, 2.5, -0.5])
def test_pow_constant_exponent_grid(c):
    bad = Mismatches()
    for x in GRID:
        (v, [g]), (tv, [tg]) = grad_pair(lambda a, c=c: a**c, x)
        bad.check(v, tv, (c, x, "value"))
        bad.check(g, tg, (c, x, "grad"))
    assert not bad


CONSTANT_OPS = {case.name: case for case in op_cases.WITH_CONSTANT}


@pytest.mark.parametrize("name", sorted(CONSTANT_OPS))
@pytest.mark.parametrize("c", [-2.0, -0.5, 0.0, 0.5, 3.0])
def test_constant_op_grid(name, c):
    bad = Mismatches()
    fn = both(CONSTANT_OPS[name], c)
    for x in GRID:
        (v, [g]), (tv, [tg]) = grad_pair(fn, x)
        bad.check(v, tv, (name, c, x, "value"))
        bad.check(g, tg, (name, c, x, "grad"))
    assert not bad


BINARY = {case.name: both(case) for case in op_cases.BINARY}


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_grid(name):
    bad = Mismatches()
    for x in PAIR_GRID:
        for y in PAIR_GRID:
            (v, [gx, gy]), (tv, [tgx, tgy]) = grad_pair(BINARY[name], x, y)
            bad.check(v, tv, (name, x, y, "value"))
            bad.check(gx, tgx, (name, x, y, "d/dx"))
            bad.check(gy, tgy, (name, x, y, "d/dy"))
    assert not bad


@pytest.mark.parametrize("name", sorted(BINARY))
def test_same_value_on_both_sides(name):
    bad = Mismatches()
    fn = BINARY[name]
    for x in PAIR_GRID:
        (v, [g]), (tv, [tg]) = grad_pair(lambda a: fn(a, a), x)
        bad.check(v, tv, (name, x, "value"))
        bad.check(g, tg, (name, x, "grad"))
    assert not bad


@pytest.mark.parametrize("x", [-1000.0, -40.0, 40.0, 1000.0])
def test_saturating_ops_at_large_inputs(x):
    bad = Mismatches()
    for name in ("tanh", "sigmoid", "exp", "relu", "silu", "gelu", "gelu_tanh", "softplus"):
        (v, [g]), (tv, [tg]) = grad_pair(UNARY[name], x)
        bad.check(v, tv, (name, x, "value"))
        bad.check(g, tg, (name, x, "grad"))
    assert not bad


# ---------------------------------------------------------------------------
# Random expression graphs
# ---------------------------------------------------------------------------
@settings(max_examples=100, deadline=None)
@given(programs())
def test_random_graphs_match_torch(prog):
    with tm.Graph():
        nodes = run(prog, tm.Value)
    nodes[-1].backward()
    tnodes = run(prog, TorchScalar.leaf)
    for n in tnodes[len(prog.leaves) :]:
        n.t.retain_grad()
    tnodes[-1].t.backward()
    rnodes = run(prog, ref.Scalar)
    rnodes[-1].backward()
    mine = [(v.data, v.grad) for v in nodes]
    theirs = [(t.t.item(), 0.0 if t.t.grad is None else t.t.grad.item()) for t in tnodes]
    # rounding scales from the reference, which both must also match
    assert not mismatches(mine, rnodes, expected=theirs, rel=2e-10)
    assert not mismatches(theirs, rnodes)


# ---------------------------------------------------------------------------
# A small MLP and loss, written the same way in both
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid", "linear"])
def test_mlp_gradients_match_torch(activation):
    with tm.Graph():
        model = tm.MLP(3, [4, 2], activation=activation, seed=3)
        xs = np.array([[0.5, -1.0, 2.0], [-0.3, 0.8, 0.1]])
        ys = np.array([[1.0, -1.0], [0.0, 0.5]])
        loss = 0.0
        for x, y in zip(xs, ys):
            for out, target in zip(model(x), y):
                loss = loss + (out - float(target)) ** 2
        loss.backward()
        mine = [p.grad for p in model.parameters()]
        # the same network in torch, from tinyml's weights
        tparams = []
        layers = []
        for layer in model.layers:
            w = torch.tensor(
                [[w.data for w in n.weights] for n in layer.neurons], dtype=torch.float64, requires_grad=True
            )
            b = torch.tensor([n.bias.data for n in layer.neurons], dtype=torch.float64, requires_grad=True)
            layers.append((w, b))
            tparams.append((w, b))
        act = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid, "linear": lambda z: z}
        h = torch.tensor(xs, dtype=torch.float64)
        for w, b in layers:
            h = act[activation](h @ w.T + b)
        tloss = ((h - torch.tensor(ys, dtype=torch.float64)) ** 2).sum()
        tloss.backward()
        theirs = []
        for w, b in tparams:
            for i in range(w.shape[0]):
                theirs.extend(w.grad[i].tolist())
                theirs.append(b.grad[i].item())
        assert loss.data == pytest.approx(tloss.item(), rel=1e-12)
        assert mine == pytest.approx(theirs, rel=1e-10, abs=1e-12)
        assert any(g != 0.0 for g in mine) and all(math.isfinite(g) for g in mine)


EXTREME_PAIRS = [(1e200, 1e200), (1e-170, 1e-170), (3.0, 1e160), (1e-300, 1e-10), (-2.0, 1e-155)]


@pytest.mark.parametrize(("x", "y"), EXTREME_PAIRS)
def test_division_gradients_at_extreme_magnitudes(x, y):
    """d(x/y)/dy is -(x/y)/y, never -x/(y*y), whose y*y overflows or underflows."""
    bad = Mismatches()
    (v, [gx, gy]), (tv, [tgx, tgy]) = grad_pair(BINARY["div"], x, y)
    bad.check(v, tv, (x, y, "value"))
    bad.check(gx, tgx, (x, y, "d/dx"))
    bad.check(gy, tgy, (x, y, "d/dy"))
    assert not bad


@pytest.mark.parametrize("x", [math.nan, math.inf, -math.inf])
def test_unary_ops_at_non_finite_inputs_match_torch(x):
    bad = Mismatches()
    for name in sorted(UNARY):
        (v, [g]), (tv, [tg]) = grad_pair(UNARY[name], x)
        bad.check(v, tv, (name, x, "value"))
        bad.check(g, tg, (name, x, "grad"))
    assert not bad


def test_a_relu_layer_passes_the_gradient_of_a_nan_as_pytorch_does():
    with tm.Graph():
        neuron = tm.Neuron(1, tm.Activation.RELU)  # the fused NEURON row
        x = tm.Value(math.nan)
        neuron([x]).backward()
        w = neuron.parameters()[0]
        assert x.grad == w.data  # the gradient 1 passed through the relu (0 if it were blocked)
        assert math.isnan(w.grad)  # 1 * x


CE_CASES = [
    ([[-math.inf, 0.0]], [0]),  # a masked target class: inf, gradient [-1, 1]
    ([[-math.inf, 0.0]], [1]),
    ([[math.inf, 0.0]], [1]),
    ([[-math.inf, -math.inf]], [0]),
    ([[math.nan, 0.0]], [1]),
    ([[1e16, 1e16]], [0]),
    ([[1e16, -3e15, 2.5]], [2]),
    ([[-1000.0, 1000.0, 0.5]], [0]),
    ([[-math.inf, 0.0]], [[1.0, 0.0]]),
    ([[-math.inf, 0.0]], [[0.0, 1.0]]),
    ([[0.5, 0.25]], [[0.0, 0.0]]),
    ([[3.0, -1.0, 2.0]], [[0.2, 0.3, 0.5]]),
    ([[3.0, -1.0, 2.0]], [[2.0, 0.5, 0.0]]),  # not summing to 1
]


@pytest.mark.parametrize(("z", "labels"), CE_CASES)
def test_cross_entropy_matches_torch_at_the_edges(z, labels):
    with tm.Graph():
        logits = tm.Tensor(z)
        loss = tm.losses.cross_entropy(logits, labels)
        loss.backward()
        got = [loss.data, *logits.grad.ravel().tolist()]
    tz = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    target = torch.tensor(labels) if isinstance(labels[0], int) else torch.tensor(labels, dtype=torch.float64)
    tl = torch.nn.functional.cross_entropy(tz, target)
    tl.backward()
    want = [tl.item(), *tz.grad.ravel().tolist()]
    bad = Mismatches()
    for g, w in zip(got, want):
        bad.check(g, w, (z, labels))
    assert not bad
