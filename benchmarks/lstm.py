"""Workload 11: an LSTM forecaster, milliseconds per epoch.

LSTM(1, 16) + Linear(16, 1) on the last step, T = 20, 512 sequences (a noisy
sine: predict the next value), mini-batches of 32 in data order, MSE, plain
SGD lr 0.05, float64. Every implementation starts from the same weights
(tinyml's, copied with ``load_state_dict``). PyTorch runs eager on one thread;
JAX runs the whole epoch as one jitted ``lax.scan`` over batches, each step a
``lax.scan`` over time.

Checks: after the timed epochs every implementation's parameters match
tinyml's (to 1e-8; all take the same steps in float64) and the loss fell.
Goal: tinyml at most 0.5x PyTorch eager's time.
"""

from __future__ import annotations

import numpy as np

from .core import OK, Entry, Settings, Workload, close, combine, guarded, measure, median, require, time_goal

KEY = "lstm"
GOAL = 0.5  # tinyml fit at most this many times PyTorch eager's time
H, T, BATCH, LR = 16, 20, 32, 0.05


def data(n: int) -> tuple[np.ndarray, np.ndarray]:
    """n windows of T steps of a noisy sine, (n, T, 1), and the value after each, (n, 1)."""
    rng = np.random.default_rng(0)
    series = np.sin(np.arange(n + T) * 0.3) + 0.1 * rng.normal(size=n + T)
    x = np.stack([series[i : i + T] for i in range(n)])[:, :, None]
    return x, series[T : T + n, None].copy()


def initial_state() -> dict[str, np.ndarray]:
    return TinymlLSTM.build().state_dict()


def mse(state: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    """The mean squared error of the model ``state`` on (x, y), in NumPy (no peer involved)."""

    def sig(v):
        return 1.0 / (1.0 + np.exp(-v))

    h = np.zeros((len(x), H))
    c = np.zeros((len(x), H))
    for t in range(x.shape[1]):
        a = x[:, t] @ state["lstm.weight_ih_l0"].T + state["lstm.bias_ih_l0"]
        a = a + h @ state["lstm.weight_hh_l0"].T + state["lstm.bias_hh_l0"]
        i, f, g, o = sig(a[:, :H]), sig(a[:, H : 2 * H]), np.tanh(a[:, 2 * H : 3 * H]), sig(a[:, 3 * H :])
        c = f * c + i * g
        h = o * np.tanh(c)
    pred = h @ state["head.weight"].T + state["head.bias"]
    return float(np.mean((pred - y) ** 2))


class TinymlLSTM:
    name = "tinyml fit"

    @staticmethod
    def build():
        import tinyml as tm

        class Net(tm.Module):
            def __init__(self):
                super().__init__()
                self.lstm = tm.LSTM(1, H, seed=0)
                self.head = tm.Linear(H, 1, seed=1)

            def forward(self, x):
                out, _ = self.lstm(x)
                return self.head(out[:, -1, :])

        return Net()

    def prepare(self, state, x, y):
        net = self.build()
        net.load_state_dict(state)
        return net, x, y

    def train(self, s, epochs):
        net, x, y = s
        net.fit(x, y, epochs=epochs, batch_size=BATCH, lr=LR, shuffle=False, progress=False)

    def params(self, s):
        return s[0].state_dict()


class TorchLSTM:
    name = "torch eager (1 thread)"

    def __init__(self):
        self.torch = torch = require("torch")
        torch.set_num_threads(1)

    def prepare(self, state, x, y):
        torch = self.torch

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.lstm = torch.nn.LSTM(1, H, batch_first=True, dtype=torch.float64)
                self.head = torch.nn.Linear(H, 1, dtype=torch.float64)

            def forward(self, x):
                out, _ = self.lstm(x)
                return self.head(out[:, -1, :])

        net = Net()
        net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()})
        opt = torch.optim.SGD(net.parameters(), lr=LR)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        batches = [(xt[a : a + BATCH], yt[a : a + BATCH]) for a in range(0, len(x), BATCH)]
        return net, opt, batches

    def train(self, s, epochs):
        net, opt, batches = s
        loss_fn = self.torch.nn.functional.mse_loss
        for _ in range(epochs):
            for xb, yb in batches:
                opt.zero_grad()
                loss_fn(net(xb), yb).backward()
                opt.step()

    def params(self, s):
        return {k: v.detach().numpy() for k, v in s[0].state_dict().items()}


class JaxLSTM:
    name = "jax jit epoch (lax.scan)"

    def __init__(self):
        jax = require("jax")
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp

        def predict(p, xb):
            def cell(carry, xt):
                h, c = carry
                a = xt @ p["lstm.weight_ih_l0"].T + p["lstm.bias_ih_l0"]
                a = a + h @ p["lstm.weight_hh_l0"].T + p["lstm.bias_hh_l0"]
                i, f, g, o = jnp.split(a, 4, axis=1)
                c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
                return (jax.nn.sigmoid(o) * jnp.tanh(c), c), None

            zeros = jnp.zeros((xb.shape[0], H))
            (h, _), _ = jax.lax.scan(cell, (zeros, zeros), jnp.swapaxes(xb, 0, 1))
            return h @ p["head.weight"].T + p["head.bias"]

        def loss(p, xb, yb):
            return jnp.mean((predict(p, xb) - yb) ** 2)

        grad = jax.grad(loss)

        def epoch(p, xs, ys):
            def step(p, b):
                return jax.tree_util.tree_map(lambda a, g: a - LR * g, p, grad(p, b[0], b[1])), None

            return jax.lax.scan(step, p, (xs, ys))[0]

        self._epoch = jax.jit(epoch)

    def prepare(self, state, x, y):
        if len(x) % BATCH:
            raise ValueError("the JAX peer scans over equal batches")
        p = {k: self.jnp.asarray(v) for k, v in state.items()}
        xs = self.jnp.asarray(x.reshape(-1, BATCH, T, 1))
        ys = self.jnp.asarray(y.reshape(-1, BATCH, 1))
        return [p, xs, ys]

    def train(self, s, epochs):
        for _ in range(epochs):
            s[0] = self._epoch(*s)
        self.jax.block_until_ready(s[0])

    def params(self, s):
        return {k: np.asarray(v) for k, v in s[0].items()}


PEERS = (TinymlLSTM, TorchLSTM, JaxLSTM)


def run(settings: Settings) -> Workload:
    epochs = settings.pick(5, 1)
    n = settings.pick(512, 64)
    w = Workload(
        KEY,
        f"11. LSTM(1, {H}) + Linear({H}, 1) on the last step, T={T}, {n} sequences, batch {BATCH}, "
        f"MSE, SGD lr {LR}, float64: time per epoch",
        "ms/epoch",
        "tinyml fit",
    )
    x, y = data(n)
    state0 = initial_state()
    start = mse(state0, x, y)
    w.notes.append(f"initial loss {start:.4f}; final loss: mean squared error over all {n} sequences")
    want = {}

    def body(e: Entry, cls) -> None:
        peer = cls()
        peer.train(peer.prepare(state0, x, y), 1)  # compiles / warms up, untimed

        def train(s):
            peer.train(s, epochs)
            return s

        times, s = measure(lambda: peer.prepare(state0, x, y), train, settings.repeats)
        final = peer.params(s)
        e.times, e.epochs = times, epochs
        e.value = median(times) / epochs * 1e3
        e.loss = mse(final, x, y)
        checks = []
        if not want:
            want.update(final)  # tinyml's, the first entry
        else:
            for k, v in want.items():
                checks.append(close(final[k], v, 1e-8, 1e-10, f"{k} after {epochs} epoch(s) vs tinyml's"))
        fell = e.loss < start
        checks.append(OK if fell else f"FAILED: loss {e.loss:.4g}, not below the initial {start:.4g}")
        e.check = combine(*checks)

    for cls in PEERS:
        guarded(w, cls.name, lambda e, c=cls: body(e, c))
    time_goal(w, settings, "tinyml fit", "torch eager (1 thread)", GOAL, "tinyml fit vs PyTorch eager")
    return w
