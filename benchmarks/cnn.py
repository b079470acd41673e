"""Workload 10: layers. A small CNN and a batch-norm MLP on the digits, seconds per epoch.

10a. Conv2d(1, 8, 3) - ReLU - MaxPool2d(2) - Flatten - Linear(72, 10) on the 1,797
    digits as 1x8x8 images, cross-entropy, batches of 32 in data order (the last
    partial batch included), plain SGD lr 0.1, float64.
10b. Linear(64, 32) - BatchNorm1d(32) - ReLU - Linear(32, 10), same data (flat),
    batches and optimiser: batch statistics in training, running statistics kept.

Every implementation starts from tinyml's initial weights (seed 0), moved with
``state_dict`` / ``load_state_dict``. Checks: after the timed epochs every
implementation's parameters (and, for 10b, running statistics where it keeps
them) match PyTorch's within 1e-8. Goal (10a only): tinyml at most 0.5x
PyTorch eager's time (one thread); 10b has none, it shows what batch statistics cost.
"""

from __future__ import annotations

import numpy as np

from .core import (
    OK,
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

GOAL = 0.5  # tinyml fit at most this many times PyTorch eager's time
BATCH = 32
LR = 0.1


def load_data() -> tuple[np.ndarray, np.ndarray]:
    datasets = require("sklearn.datasets")
    digits = datasets.load_digits()
    return digits.images[:, None].astype(np.float64) / 16.0, digits.target.astype(np.int64)


def tinyml_cnn():
    import tinyml as tm

    return tm.Sequential(
        tm.Conv2d(1, 8, 3, seed=0), tm.ReLU(), tm.MaxPool2d(2), tm.Flatten(), tm.Linear(72, 10, seed=1)
    )


def tinyml_bn():
    import tinyml as tm

    return tm.Sequential(tm.Linear(64, 32, seed=0), tm.BatchNorm1d(32), tm.ReLU(), tm.Linear(32, 10, seed=1))


def cross_entropy(logits: np.ndarray, y: np.ndarray) -> float:
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


# ---------------------------------------------------------------------------
# The implementations: prepare(state_dict, x, y) untimed, train(state, epochs) timed,
# state_dict(state) and logits(state, x) (eval mode) after
# ---------------------------------------------------------------------------
class TinymlFit:
    name = "tinyml fit"

    def __init__(self, build):
        self.build = build

    def load(self):
        import tinyml as tm

        if not hasattr(tm, "Sequential"):
            raise Unavailable("tm.Sequential is not written yet", "not available")

    def prepare(self, sd, x, y):
        import tinyml as tm

        with tm.Graph():
            model = self.build()
        model.load_state_dict(sd)
        return model, x, y

    def train(self, state, epochs):
        model, x, y = state
        model.fit(
            x, y, epochs=epochs, loss="cross_entropy", batch_size=BATCH, shuffle=False, lr=LR, progress=False
        )

    def state_dict(self, state):
        return state[0].state_dict()

    def logits(self, state, x):
        return state[0].eval().predict(x)


class TorchEager:
    name = "torch eager (1 thread)"

    def __init__(self, build):
        self.build = build

    def load(self):
        self.torch = torch = require("torch")
        torch.set_num_threads(1)

    def prepare(self, sd, x, y):
        torch = self.torch
        model = self.build(torch).double()
        model.load_state_dict({k: torch.tensor(v) for k, v in sd.items()}, strict=False)
        opt = torch.optim.SGD(model.parameters(), lr=LR)
        xt, yt = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)
        data = [(xt[a : a + BATCH], yt[a : a + BATCH]) for a in range(0, len(x), BATCH)]
        return model, opt, data

    def train(self, state, epochs):
        model, opt, data = state
        ce = self.torch.nn.functional.cross_entropy
        for _ in range(epochs):
            for xb, yb in data:
                opt.zero_grad()
                ce(model(xb), yb).backward()
                opt.step()

    def state_dict(self, state):
        return {
            k: v.numpy() for k, v in state[0].state_dict().items() if not k.endswith("num_batches_tracked")
        }

    def logits(self, state, x):
        model = state[0].eval()
        with self.torch.no_grad():
            return model(self.torch.from_numpy(x)).numpy()


def torch_cnn(torch):
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(72, 10))


def torch_bn(torch):
    nn = torch.nn
    return nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))


class JaxJit:
    """A jitted SGD step per batch (``per_batch``) or the whole epoch in one ``lax.scan``."""

    def __init__(self, kind: str, scan: bool):
        self.kind = kind
        self.scan = scan
        self.name = "jax jit epoch (lax.scan)" if scan else "jax jit per batch"

    def load(self):
        jax = require("jax")
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp
        forward = self._cnn if self.kind == "cnn" else self._bn

        def loss(p, xb, yb):
            z = forward(p, xb)
            logp = jax.nn.log_softmax(z, axis=1)
            return -jnp.mean(jnp.take_along_axis(logp, yb[:, None], axis=1))

        grad = jax.grad(loss)

        def step(p, xb, yb):
            return jax.tree_util.tree_map(lambda a, g: a - LR * g, p, grad(p, xb, yb))

        self._step = jax.jit(step)

        def epoch(p, xs, ys, x_rest, y_rest):
            p, _ = jax.lax.scan(lambda p, b: (step(p, b[0], b[1]), None), p, (xs, ys))
            if x_rest.shape[0]:
                p = step(p, x_rest, y_rest)
            return p

        self._epoch = jax.jit(epoch)

    def _cnn(self, p, x):
        lax = self.jax.lax
        z = lax.conv_general_dilated(
            x, p["0.weight"], (1, 1), "VALID", dimension_numbers=("NCHW", "OIHW", "NCHW")
        )
        z = self.jnp.maximum(z + p["0.bias"][None, :, None, None], 0.0)
        z = lax.reduce_window(z, -self.jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
        return z.reshape(z.shape[0], -1) @ p["4.weight"].T + p["4.bias"]

    def _bn(self, p, x):
        jnp = self.jnp
        h = x @ p["0.weight"].T + p["0.bias"]
        mean = h.mean(axis=0)
        var = ((h - mean) ** 2).mean(axis=0)
        h = (h - mean) / jnp.sqrt(var + 1e-5) * p["1.weight"] + p["1.bias"]
        return jnp.maximum(h, 0.0) @ p["3.weight"].T + p["3.bias"]

    def prepare(self, sd, x, y):
        jnp = self.jnp
        p = {k: jnp.asarray(v) for k, v in sd.items() if "running" not in k}
        if self.scan:
            full = len(x) // BATCH * BATCH
            xs = jnp.asarray(x[:full].reshape(-1, BATCH, *x.shape[1:]))
            ys = jnp.asarray(y[:full].reshape(-1, BATCH))
            return [p, (xs, ys, jnp.asarray(x[full:]), jnp.asarray(y[full:]))]
        data = [
            (jnp.asarray(x[a : a + BATCH]), jnp.asarray(y[a : a + BATCH])) for a in range(0, len(x), BATCH)
        ]
        return [p, data]

    def train(self, state, epochs):
        p, data = state
        for _ in range(epochs):
            if self.scan:
                p = self._epoch(p, *data)
            else:
                for xb, yb in data:
                    p = self._step(p, xb, yb)
        self.jax.block_until_ready(p)
        state[0] = p

    def state_dict(self, state):
        return {k: np.asarray(v) for k, v in state[0].items()}

    def logits(self, state, x):
        return None  # (no running statistics: eval-mode outputs are not compared)


def _workload(
    settings: Settings, key: str, title: str, tinyml_build, torch_build, kind: str, flat: bool, goal: bool
) -> Workload:
    epochs = settings.pick(10, 1)
    w = Workload(key, title, "ms/epoch", "tinyml fit")
    try:
        x, y = load_data()
    except Unavailable as exc:
        w.notes.append(f"skipped: {exc.reason}")
        return w
    if flat:
        x = x.reshape(len(x), -1)
    if settings.quick:
        x, y = x[:100], y[:100]
    import tinyml as tm

    with tm.Graph():
        sd0 = tinyml_build().state_dict()
    peers = [TinymlFit(tinyml_build), TorchEager(torch_build), JaxJit(kind, True), JaxJit(kind, False)]
    results: dict[str, dict] = {}

    def body(e: Entry, peer) -> None:
        peer.load()
        peer.train(peer.prepare(sd0, x, y), 1)  # compiles, before timing

        def train(state):
            peer.train(state, epochs)
            return state

        times, state = measure(lambda: peer.prepare(sd0, x, y), train, settings.repeats)
        e.times = times
        e.epochs = epochs
        e.value = median(times) / epochs * 1e3
        results[peer.name] = peer.state_dict(state)
        logits = peer.logits(state, x)
        if logits is not None:
            e.loss = cross_entropy(logits, y)
        e.check = OK

    for peer in peers:
        guarded(w, peer.name, lambda e, p=peer: body(e, p))
    want = results.get("torch eager (1 thread)")
    if want is not None:
        for e in w.entries:
            got = results.get(e.name)
            if got is None or e.name.startswith("torch"):
                continue
            checks = [
                close(got[k], want[k], 1e-8, 1e-10, f"{k} after {epochs} epoch(s) vs PyTorch") for k in got
            ]
            e.check = combine(*checks)
    if goal:
        time_goal(
            w,
            settings,
            "tinyml fit",
            "torch eager (1 thread)",
            GOAL,
            "tinyml fit vs PyTorch eager (1 thread)",
        )
    w.notes.append(
        "the same initial weights (tinyml's, seed 0, through load_state_dict) and batch order for all"
    )
    return w


def run(settings: Settings) -> list[Workload]:
    return [
        _workload(
            settings,
            "cnn",
            "10a. CNN Conv2d(1,8,3)-ReLU-MaxPool2d(2)-Flatten-Linear(72,10), digits 8x8, batch 32, SGD 0.1",
            tinyml_cnn,
            torch_cnn,
            "cnn",
            False,
            True,
        ),
        _workload(
            settings,
            "bn",
            "10b. MLP Linear(64,32)-BatchNorm1d(32)-ReLU-Linear(32,10), digits, batch 32, SGD lr 0.1",
            tinyml_bn,
            torch_bn,
            "bn",
            True,
            False,
        ),
    ]
