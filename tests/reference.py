"""A slow, obviously-correct scalar autograd, the yardstick for tinyml's engine.

Every node is a Python object holding its value, its parents and the local
derivative d(node)/d(parent) of each, computed once from first principles
when the node is made. ``backward()`` orders the graph with an explicit stack
(no recursion, so deep chains are fine) and applies the chain rule in reverse.

Unlike tinyml, nothing here is lazy, nothing is shared with the engine, and
``backward()`` always computes fresh gradients: it resets every node of the
graph first, so ``x.grad`` is exactly d(root)/d(x), with no accumulation.

IEEE semantics instead of Python's exceptions: ``log(0) = -inf``,
``1/0 = inf``, ``exp(1000) = inf``, ``0 ** -1 = inf``, a negative base to a
fractional power is NaN. Conventions at kinks follow PyTorch: relu'(0) = 0,
abs'(0) = 0, leaky_relu'(0) = slope, d(x**0)/dx = 0, and d(x**y)/dy = 0 where
x == 0 and y >= 0.
"""

from __future__ import annotations

import math

INF = math.inf
NAN = math.nan
GELU_C = 0.044715
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


# ---------------------------------------------------------------------------
# IEEE-safe float functions (Python's math raises where IEEE gives inf/nan)
# ---------------------------------------------------------------------------
def div(x: float, y: float) -> float:
    """x / y with IEEE results for y == 0 (signed inf, or nan for 0/0)."""
    try:
        return x / y
    except ZeroDivisionError:
        if x == 0.0 or math.isnan(x):
            return NAN
        return math.copysign(INF, x) * math.copysign(1.0, y)


def exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return INF


def log(x: float) -> float:
    if math.isnan(x) or x < 0.0:
        return NAN
    if x == 0.0:
        return -INF
    return math.log(x)


def _is_odd_integer(y: float) -> bool:
    return math.isfinite(y) and y == math.floor(y) and math.fmod(y, 2.0) != 0.0


def power(x: float, y: float) -> float:
    """x ** y as C's pow: real results only, inf on overflow or a zero base."""
    if y == 0.0:
        return 1.0
    if x == 0.0:
        if y < 0.0:
            return math.copysign(INF, x) if _is_odd_integer(y) else INF
        return math.copysign(0.0, x) if _is_odd_integer(y) else 0.0
    try:
        return math.pow(x, y)
    except ValueError:  # negative base, fractional exponent
        return NAN
    except OverflowError:
        return -INF if (x < 0.0 and _is_odd_integer(y)) else INF


def sigmoid(x: float) -> float:
    """1 / (1 + e^-x), written so that neither branch overflows."""
    if x >= 0.0:
        return 1.0 / (1.0 + exp(-x))
    e = exp(x)
    return e / (1.0 + e)


def softplus(x: float) -> float:
    """log(1 + e^x) = max(x, 0) + log(1 + e^-|x|)."""
    return max(x, 0.0) + math.log1p(exp(-abs(x)))


# ---------------------------------------------------------------------------
# The node
# ---------------------------------------------------------------------------
class Scalar:
    """A node: ``data``, ``grad`` and (parent, d self / d parent) pairs."""

    __slots__ = ("data", "grad", "parents", "local")

    def __init__(self, data: float, parents: tuple = (), local: tuple = ()) -> None:
        self.data = float(data)
        self.grad = 0.0
        self.parents = parents
        self.local = local

    def __repr__(self) -> str:
        return f"Scalar(data={self.data!r}, grad={self.grad!r})"

    # -- graph traversal --------------------------------------------------
    def topological_order(self) -> list[Scalar]:
        """Every ancestor of self (and self), each after all of its parents."""
        order: list[Scalar] = []
        done: set[int] = set()
        stack: list[tuple[Scalar, bool]] = [(self, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if id(node) in done:
                continue
            done.add(id(node))
            stack.append((node, True))  # emitted after its parents
            for p in node.parents:
                if id(p) not in done:
                    stack.append((p, False))
        return order

    def backward(self) -> None:
        """Set ``grad`` of every node of the graph to d(self)/d(node)."""
        order = self.topological_order()
        for node in order:
            node.grad = 0.0
        self.grad = 1.0
        for node in reversed(order):
            for p, d in zip(node.parents, node.local):
                p.grad += node.grad * d

    # -- construction helpers --------------------------------------------
    @staticmethod
    def lift(x: Scalar | float) -> Scalar:
        return x if isinstance(x, Scalar) else Scalar(x)

    def _unary(self, value: float, derivative: float) -> Scalar:
        return Scalar(value, (self,), (derivative,))

    # -- arithmetic ----------------------------------------------------------
    def __add__(self, other):
        o = Scalar.lift(other)
        return Scalar(self.data + o.data, (self, o), (1.0, 1.0))

    def __radd__(self, other):
        return Scalar.lift(other) + self

    def __sub__(self, other):
        o = Scalar.lift(other)
        return Scalar(self.data - o.data, (self, o), (1.0, -1.0))

    def __rsub__(self, other):
        return Scalar.lift(other) - self

    def __mul__(self, other):
        o = Scalar.lift(other)
        return Scalar(self.data * o.data, (self, o), (o.data, self.data))

    def __rmul__(self, other):
        return Scalar.lift(other) * self

    def __truediv__(self, other):
        o = Scalar.lift(other)
        x, y = self.data, o.data
        # d(x/y)/dx = 1/y, d(x/y)/dy = -x/y^2
        return Scalar(div(x, y), (self, o), (div(1.0, y), -div(x, y * y)))

    def __rtruediv__(self, other):
        return Scalar.lift(other) / self

    def __pow__(self, other):
        x = self.data
        if isinstance(other, Scalar):
            y = other.data
            z = power(x, y)
            dx = 0.0 if y == 0.0 else y * power(x, y - 1.0)
            dy = 0.0 if (x == 0.0 and y >= 0.0) else z * log(x)
            return Scalar(z, (self, other), (dx, dy))
        c = float(other)
        dx = 0.0 if c == 0.0 else c * power(x, c - 1.0)
        return self._unary(power(x, c), dx)

    def __rpow__(self, other):
        return Scalar.lift(other) ** self

    def __neg__(self):
        return self._unary(-self.data, -1.0)

    def __abs__(self):
        x = self.data
        return self._unary(abs(x), 1.0 if x > 0.0 else (-1.0 if x < 0.0 else 0.0))

    # -- elementary functions ------------------------------------------------
    def abs(self):
        return abs(self)

    def sqrt(self):
        return self**0.5

    def exp(self):
        z = exp(self.data)
        return self._unary(z, z)

    def log(self):
        x = self.data
        return self._unary(log(x), div(1.0, x))

    def relu(self):
        x = self.data
        return self._unary(0.0 if x <= 0.0 else x, 0.0 if x <= 0.0 else 1.0)  # NaN passes, as in PyTorch

    def leaky_relu(self, negative_slope: float = 0.01):
        x = self.data
        return self._unary(x if x > 0.0 else negative_slope * x, 1.0 if x > 0.0 else negative_slope)

    def tanh(self):
        t = math.tanh(self.data)
        return self._unary(t, 1.0 - t * t)

    def sigmoid(self):
        s = sigmoid(self.data)
        return self._unary(s, s * (1.0 - s))

    sigm = sigmoid

    def softplus(self):
        x = self.data
        return self._unary(softplus(x), sigmoid(x))

    def silu(self):
        x = self.data
        s = sigmoid(x)
        # d(x s)/dx = s + x s (1 - s)
        return self._unary(x * s, s + x * s * (1.0 - s))

    swish = silu

    def gelu(self, approximate: str = "none"):
        x = self.data
        if approximate == "tanh":
            u = SQRT_2_OVER_PI * (x + GELU_C * x**3)
            du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * x * x)
            t = math.tanh(u)
            return self._unary(0.5 * x * (1.0 + t), 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du)
        # exact: x * Phi(x), Phi the standard normal CDF, phi its density
        cdf = 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))
        pdf = math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
        return self._unary(x * cdf, cdf + x * pdf)


# ---------------------------------------------------------------------------
# A reference multilayer perceptron over Scalars, for checking tinyml.nn
# ---------------------------------------------------------------------------
def activate(z: Scalar, activation: str) -> Scalar:
    """Apply an activation by name ("linear", "relu", "tanh", "sigmoid", ...)."""
    if activation == "linear":
        return z
    if activation == "leaky_relu":
        return z.leaky_relu(0.01)
    if activation == "gelu_tanh":
        return z.gelu("tanh")
    return getattr(z, activation)()


def neuron(weights: list[Scalar], bias: Scalar, x: list, activation: str) -> Scalar:
    """activation(bias + sum_i w_i x_i), summed left to right."""
    z = bias
    for w, xi in zip(weights, x, strict=True):
        z = z + w * xi
    return activate(z, activation)
