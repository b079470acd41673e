"""Saving and loading models and optimiser state (.npz, no pickle, atomic, validated)."""

from __future__ import annotations

import os
import pathlib
import pickle
import stat
import tempfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyml as tm
from tinyml import io as tio
from tinyml import optim

X = np.random.default_rng(0).normal(size=(6, 3))
Y = np.random.default_rng(1).normal(size=(6, 2))


def _trained_model(**kw) -> tm.MLP:
    """A model whose parameters are no longer the seed's (a few SGD steps)."""
    args = {"activation": "relu", "output_activation": "sigmoid", "init": "uniform01", "seed": 5}
    args.update(kw)
    model = tm.MLP(3, [4, 2], 0.05, **args)
    for _ in range(3):
        loss = tm.losses.mse([model(x) for x in X], Y)
        model.zero_grad()
        loss.backward()
        model.update()
    return model


def _params(model) -> list[float]:
    return [p.data for p in model.parameters()]


def _outputs(model) -> list[float]:
    return [v.data for x in X for v in model(x)]


class _MyPath:
    """A user os.PathLike that is not a pathlib.Path."""

    def __init__(self, path) -> None:
        self.path = str(path)

    def __fspath__(self) -> str:
        return self.path


@pytest.mark.parametrize("kind", ["str", "pathlib", "pathlike"])
def test_round_trip_is_bit_exact(tmp_path, kind):
    model = _trained_model()
    target = tmp_path / "model.npz"
    path = {"str": str(target), "pathlib": target, "pathlike": _MyPath(target)}[kind]
    model.save(path)
    loaded = tm.MLP.load(path)
    assert loaded is not model
    assert (loaded.n_inputs, loaded.layer_sizes) == (3, [4, 2])
    assert loaded.activation == tm.Activation.RELU
    assert loaded.output_activation == tm.Activation.SIGMOID
    assert loaded.init == "uniform01"
    assert loaded.learning_rate == 0.05
    assert _params(loaded) == _params(model)
    assert _outputs(loaded) == _outputs(model)
    if hasattr(model, "predict"):
        np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_file_is_plain_npz(tmp_path):
    """Readable without pickle; the weight matrices have nn.Linear's layout."""
    model = _trained_model()
    path = tmp_path / "m.npz"
    model.save(path)
    assert sorted(os.listdir(tmp_path)) == ["m.npz"]  # no temporary file left behind
    with np.load(path, allow_pickle=False) as f:
        entries = {k: f[k] for k in f.files}
    assert str(entries["format"]) == "tinyml.MLP"
    assert int(entries["format_version"]) == 1
    assert int(entries["n_inputs"]) == 3
    assert entries["layer_sizes"].tolist() == [4, 2]
    assert str(entries["activation"]) == "relu"
    assert str(entries["output_activation"]) == "sigmoid"
    assert str(entries["init"]) == "uniform01"
    assert float(entries["learning_rate"]) == 0.05
    for i, layer in enumerate(model.layers):
        w = entries[f"layers.{i}.weight"]
        b = entries[f"layers.{i}.bias"]
        assert w.dtype == np.float64 and b.dtype == np.float64
        assert w.tolist() == [[p.data for p in n.weights] for n in layer.neurons]
        assert b.tolist() == [n.bias.data for n in layer.neurons]
    assert not any(k.startswith("optimizer.") for k in entries)


def test_save_uses_the_path_as_given(tmp_path):
    model = _trained_model()
    model.save(tmp_path / "weights")
    assert os.listdir(tmp_path) == ["weights"]
    assert _params(tm.MLP.load(tmp_path / "weights")) == _params(model)


def test_load_into_a_chosen_graph(tmp_path):
    model = _trained_model()
    model.save(tmp_path / "m.npz")
    with tm.Graph() as g:
        pass
    loaded = tm.MLP.load(tmp_path / "m.npz", graph=g)
    assert loaded.graph is g
    assert _params(loaded) == _params(model)


def test_load_parameters(tmp_path):
    model = _trained_model()
    model.save(tmp_path / "m.npz")
    other = tm.MLP(3, [4, 2], 0.9, activation="relu", output_activation="sigmoid", seed=99)
    before_lr = other.learning_rate
    pending = other(X[0])[0]  # built before the load: keeps the old parameters
    old_value = pending.data
    other.load_parameters(tmp_path / "m.npz")
    assert _params(other) == _params(model)
    assert _outputs(other) == _outputs(model)
    assert other.learning_rate == before_lr  # parameters only
    assert pending.data == old_value


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_inputs": 2, "layer_sizes": [4, 2]}, "architecture"),
        ({"n_inputs": 3, "layer_sizes": [5, 2]}, "architecture"),
        ({"n_inputs": 3, "layer_sizes": [4, 2, 1]}, "architecture"),
        ({"n_inputs": 3, "layer_sizes": [4, 2], "activation": "tanh"}, "activation"),
        ({"n_inputs": 3, "layer_sizes": [4, 2], "output_activation": "linear"}, "output_activation"),
    ],
)
def test_load_parameters_refuses_another_architecture(tmp_path, kwargs, message):
    _trained_model().save(tmp_path / "m.npz")
    kw = {"activation": "relu", "output_activation": "sigmoid", "seed": 1, **kwargs}
    target = tm.MLP(kw.pop("n_inputs"), kw.pop("layer_sizes"), **kw)
    before = _params(target)
    with pytest.raises(tm.io.ModelFileError, match=message):
        target.load_parameters(tmp_path / "m.npz")
    assert _params(target) == before


# ---------------------------------------------------------------------------
# Bad files: a clear error, and nothing changed
# ---------------------------------------------------------------------------
def _good_arrays() -> dict[str, np.ndarray]:
    return tio.model_arrays(_trained_model())


def _variant(**changes) -> dict[str, np.ndarray]:
    arrays = _good_arrays()
    for k, v in changes.items():
        if v is None:
            del arrays[k]
        else:
            arrays[k] = v
    return arrays


def _bad_files(tmp_path) -> dict[str, pathlib.Path]:
    good = tmp_path / "good.npz"
    tio.save_model(_trained_model(), good)
    data = good.read_bytes()
    files = {}

    def put(name, content: bytes):
        files[name] = tmp_path / name
        files[name].write_bytes(content)

    put("empty", b"")
    put("random", np.random.default_rng(3).bytes(300))
    put("pickle", pickle.dumps({"weights": [1.0, 2.0]}))
    put("truncated-half", data[: len(data) // 2])
    put("truncated-end", data[:-20])
    put("truncated-start", data[:100])
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0xFF
    put("bit-flip", bytes(flipped))
    np.save(tmp_path / "bare.npy", np.arange(5.0))
    files["bare-npy"] = tmp_path / "bare.npy"

    def npz(name, **arrays):
        files[name] = tmp_path / f"{name}.npz"
        np.savez(files[name], **arrays)

    npz("foreign", x=np.arange(3.0), y=np.ones((2, 2)))
    npz("wrong-tag", **_variant(format=np.array("something.else")))
    npz("tag-not-string", **_variant(format=np.array(7)))
    npz("newer-version", **_variant(format_version=np.array(99)))
    npz("no-version", **_variant(format_version=None))
    npz("missing-layer", **_variant(**{"layers.1.bias": None}))
    npz("extra-layer", **_variant(**{"layers.2.weight": np.zeros((1, 2)), "layers.2.bias": np.zeros(1)}))
    npz("wrong-shape", **_variant(**{"layers.0.weight": np.zeros((3, 4))}))
    npz("float32", **_variant(**{"layers.0.bias": np.zeros(4, np.float32)}))
    npz("nan-weight", **_variant(**{"layers.1.weight": np.full((2, 4), np.nan)}))
    npz("bad-activation", **_variant(activation=np.array("sparkle")))
    npz("bad-init", **_variant(init=np.array("gaussian")))
    npz("bad-sizes", **_variant(layer_sizes=np.array([4.0, 2.0])))
    npz("zero-size", **_variant(layer_sizes=np.array([0, 2])))
    npz("no-n-inputs", **_variant(n_inputs=None))
    npz("inf-lr", **_variant(learning_rate=np.array(np.inf)))
    return files


def test_bad_files_raise_model_file_error(tmp_path):
    model = _trained_model(seed=11)
    before = _params(model)
    for name, path in _bad_files(tmp_path).items():
        with pytest.raises(tm.io.ModelFileError) as info:
            tm.MLP.load(path)
        assert str(path) in str(info.value), name  # the message names the file
        with pytest.raises(tm.io.ModelFileError):
            model.load_parameters(path)
        assert _params(model) == before, name
    assert issubclass(tm.io.ModelFileError, ValueError)


def test_messages_say_what_is_wrong(tmp_path):
    files = _bad_files(tmp_path)
    cases = {
        "foreign": "not a tinyml model",
        "pickle": "not a tinyml model",
        "newer-version": "version 99",
        "missing-layer": "layers.1.bias",
        "wrong-shape": "layers.0.weight",
        "nan-weight": "non-finite",
        "bad-activation": "sparkle",
    }
    for name, message in cases.items():
        with pytest.raises(tm.io.ModelFileError, match=message):
            tm.MLP.load(files[name])


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        tm.MLP.load(tmp_path / "nope.npz")


@settings(max_examples=40, deadline=None)
@given(cut=st.floats(0.0, 1.0, exclude_max=True), flip=st.floats(0.0, 1.0, exclude_max=True))
def test_damaged_files_never_load_a_different_model(cut, flip):
    """Any truncation fails cleanly; a flipped byte fails cleanly or changes nothing that matters."""
    model = _trained_model()
    expected = _params(model)
    with tempfile.TemporaryDirectory() as d:
        path = pathlib.Path(d, "m.npz")
        model.save(path)
        data = path.read_bytes()
        path.write_bytes(data[: int(cut * len(data))])
        with pytest.raises(tm.io.ModelFileError):
            tm.MLP.load(path)
        damaged = bytearray(data)
        damaged[int(flip * len(data))] ^= 0x5A
        path.write_bytes(bytes(damaged))
        try:
            loaded = tm.MLP.load(path)
        except tm.io.ModelFileError:
            return
        assert _params(loaded) == expected  # e.g. a byte of a zip timestamp
        assert (loaded.n_inputs, loaded.layer_sizes, loaded.learning_rate) == (3, [4, 2], 0.05)


@settings(max_examples=15, deadline=None)
@given(
    n_inputs=st.integers(1, 4),
    sizes=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    activation=st.sampled_from(["tanh", "relu", "sigmoid", "linear", "gelu", "leaky_relu"]),
    output=st.sampled_from(["tanh", "sigmoid", "linear", "softplus"]),
    seed=st.integers(0, 1000),
)
def test_round_trip_any_architecture(n_inputs, sizes, activation, output, seed):
    with tm.Graph():
        model = tm.MLP(n_inputs, sizes, 0.125, activation, seed=seed, output_activation=output)
        x = np.random.default_rng(seed).normal(size=n_inputs)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "m.npz")
            model.save(path)
            loaded = tm.MLP.load(path)
        assert _params(loaded) == _params(model)
        assert [v.data for v in loaded(x)] == [v.data for v in model(x)]
        assert loaded.activation.value == tm.Activation.parse(activation).value


# ---------------------------------------------------------------------------
# Atomic writing
# ---------------------------------------------------------------------------
def test_failed_write_leaves_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    old = _trained_model(seed=1)
    old.save(path)
    content = path.read_bytes()

    def broken_fsync(fd):
        raise OSError("disk on fire")

    monkeypatch.setattr(tio.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk on fire"):
        _trained_model(seed=2).save(path)
    monkeypatch.undo()
    assert path.read_bytes() == content
    assert os.listdir(tmp_path) == ["m.npz"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_replacing_keeps_permissions(tmp_path):
    path = tmp_path / "m.npz"
    _trained_model(seed=1).save(path)
    os.chmod(path, 0o640)
    _trained_model(seed=2).save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert _params(tm.MLP.load(path)) == _params(_trained_model(seed=2))


def test_refuses_to_save_nan(tmp_path):
    path = tmp_path / "m.npz"
    model = _trained_model()
    model.save(path)
    content = path.read_bytes()
    model.layers[1].neurons[0].weights[2].data = float("nan")
    with pytest.raises(ValueError, match=r"layers\.1\.weight\[0, 2\] is nan"):
        model.save(path)
    assert path.read_bytes() == content
    assert os.listdir(tmp_path) == ["m.npz"]


def test_save_rejects_non_models(tmp_path):
    with pytest.raises(TypeError):
        tio.save_model(tm.Layer(2, 2), tmp_path / "m.npz")
    with pytest.raises(TypeError):
        tio.load_parameters("model", tmp_path / "m.npz")


# ---------------------------------------------------------------------------
# Optimiser state
# ---------------------------------------------------------------------------
def _train(model, opt, steps) -> list[float]:
    for _ in range(steps):
        loss = tm.losses.mse([model(x) for x in X], Y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return _params(model)


@pytest.mark.parametrize(
    "make",
    [
        lambda p: optim.Adam(p, lr=0.01, amsgrad=True),
        lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
        lambda p: optim.RMSprop(p, lr=0.01, centered=True, momentum=0.3),
        lambda p: optim.AdamW(p, lr=0.02),
    ],
)
def test_resume_training_exactly(tmp_path, make):
    path = tmp_path / "ckpt.npz"
    model = _trained_model(output_activation="linear")
    opt = make(model.parameters())
    _train(model, opt, 3)
    model.save(path, optimizer=opt)
    continued = _train(model, opt, 3)

    resumed = tm.MLP.load(path)
    fresh = make(resumed.parameters())
    fresh.lr = 123.0  # overwritten by the saved hyperparameters
    tm.io.load_optimizer_state(path, fresh)
    assert fresh.t == 3
    assert _train(resumed, fresh, 3) == continued

    again = tm.MLP.load(path)
    rebuilt = tm.io.load_optimizer(path, again.parameters())
    assert type(rebuilt) is type(opt)
    assert _train(again, rebuilt, 3) == continued


def test_optimizer_state_errors(tmp_path):
    model = _trained_model()
    adam = optim.Adam(model.parameters(), lr=0.01)
    _train(model, adam, 2)
    model.save(tmp_path / "with.npz", optimizer=adam)
    model.save(tmp_path / "without.npz")

    sgd = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _train(model, sgd, 1)
    before = sgd.state_dict()
    with pytest.raises(tm.io.ModelFileError, match="Adam state, but the optimizer is SGD"):
        tm.io.load_optimizer_state(tmp_path / "with.npz", sgd)
    with pytest.raises(tm.io.ModelFileError, match="no optimizer state"):
        tm.io.load_optimizer_state(tmp_path / "without.npz", sgd)
    after = sgd.state_dict()
    assert after["t"] == before["t"]
    np.testing.assert_array_equal(after["state"], before["state"])

    small = tm.MLP(3, [2], seed=0)
    with pytest.raises(tm.io.ModelFileError, match="does not fit"):
        tm.io.load_optimizer_state(tmp_path / "with.npz", optim.Adam(small.parameters()))
    with pytest.raises(tm.io.ModelFileError, match="does not fit"):
        tm.io.load_optimizer(tmp_path / "with.npz", small.parameters())
    with pytest.raises(ValueError, match="empty"):
        tm.io.load_optimizer(tmp_path / "with.npz", [])
    with pytest.raises(FileNotFoundError):
        tm.io.load_optimizer_state(_MyPath(tmp_path / "nope"), sgd)


def test_optimizer_must_belong_to_the_model(tmp_path):
    model = _trained_model()
    other = _trained_model(seed=8)
    with pytest.raises(ValueError, match="does not optimise this model"):
        model.save(tmp_path / "m.npz", optimizer=optim.Adam(other.parameters()))
    with pytest.raises(ValueError, match="does not optimise this model"):
        model.save(tmp_path / "m.npz", optimizer=optim.Adam(model.parameters()[:-1]))
    with pytest.raises(TypeError):
        model.save(tmp_path / "m.npz", optimizer="adam")
    assert not os.listdir(tmp_path)


def test_optimizer_entries_are_plain(tmp_path):
    model = _trained_model()
    opt = optim.RMSprop(model.parameters(), momentum=0.5)
    _train(model, opt, 2)
    model.save(tmp_path / "m.npz", optimizer=opt)
    with np.load(tmp_path / "m.npz", allow_pickle=False) as f:
        assert int(f["optimizer.kind"]) == 3
        assert str(f["optimizer.name"]) == "RMSprop"
        assert int(f["optimizer.t"]) == 2
        np.testing.assert_array_equal(f["optimizer.hyper"], opt.hyper)
        np.testing.assert_array_equal(f["optimizer.state"], opt.state)


# ---------------------------------------------------------------------------
# Hostile files and interrupted saves (issue 10)
# ---------------------------------------------------------------------------
_BOMB_ZEROS = 32 << 20  # bytes of zeros in a bomb member: deflates to about 32 KiB


def _npz_with(path, arrays: dict, raw: dict | None = None, zeros: dict | None = None) -> None:
    """A deflated .npz of ``arrays``, plus members of ``raw`` bytes and members
    ``zeros[key] = shape``: float64 zeros written in chunks (never all in memory)."""
    import io
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for key, a in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(a), allow_pickle=False)
            zf.writestr(f"{key}.npy", buf.getvalue())
        for key, content in (raw or {}).items():
            zf.writestr(f"{key}.npy", content)
        for key, shape in (zeros or {}).items():
            with zf.open(f"{key}.npy", "w", force_zip64=True) as m:
                header = {"descr": "<f8", "fortran_order": False, "shape": shape}
                np.lib.format.write_array_header_1_0(m, header)
                left = 8 * int(np.prod(shape))
                chunk = bytes(1 << 20)
                while left:
                    m.write(chunk[: min(left, len(chunk))])
                    left -= min(left, len(chunk))


def _peak_bytes(call) -> tuple[int, object]:
    """Peak memory traced while ``call()`` runs (NumPy arrays included), and its result or exception."""
    import tracemalloc

    tracemalloc.start()
    try:
        try:
            out = call()
        except Exception as e:
            out = e
        return tracemalloc.get_traced_memory()[1], out
    finally:
        tracemalloc.stop()


def test_a_decompression_bomb_costs_no_memory(tmp_path):
    """Members the loader does not use are never decompressed; used ones only
    after their header shows the dtype and shape the model needs."""
    model = _trained_model()
    opt = optim.Adam(model.parameters())
    good = {**tio.model_arrays(model), **tio.optimizer_arrays(opt, model)}
    n_bomb = _BOMB_ZEROS // 8
    cases = {
        "unused-member": ({}, {"junk": (n_bomb,)}),
        "huge-weight": ({"layers.0.weight": None}, {"layers.0.weight": (n_bomb // 3, 3)}),
        "huge-sizes": ({"layer_sizes": None}, {"layer_sizes": (n_bomb,)}),
        "huge-state": ({"optimizer.state": None}, {"optimizer.state": (n_bomb // 3, 3)}),
    }
    for name, (drop, zeros) in cases.items():
        path = tmp_path / f"{name}.npz"
        _npz_with(path, {k: v for k, v in good.items() if k not in drop}, zeros=zeros)
        assert path.stat().st_size < _BOMB_ZEROS // 100, name  # a small file
        peak, out = _peak_bytes(lambda path=path: tm.MLP.load(path))
        assert peak < 4 << 20, (name, peak)
        if name in ("unused-member", "huge-state"):  # the model part is intact
            assert _params(out) == _params(model), name
        else:
            assert isinstance(out, tm.io.ModelFileError), (name, out)
        if name == "huge-state":
            peak, out = _peak_bytes(lambda path=path: tm.io.load_optimizer(path, model.parameters()))
            assert peak < 4 << 20 and isinstance(out, tm.io.ModelFileError), (peak, out)
            assert "does not fit" in str(out)


def test_load_parameters_reads_no_parameter_of_another_architecture(tmp_path):
    """The model's own architecture bounds what load_parameters decodes."""
    arrays = _good_arrays()  # MLP(3, [4, 2])
    big = _BOMB_ZEROS // 8 // 3
    arrays["layer_sizes"] = np.array([big, 2])
    del arrays["layers.0.weight"], arrays["layers.0.bias"], arrays["layers.1.weight"]
    path = tmp_path / "big.npz"
    _npz_with(
        path,
        arrays,
        zeros={"layers.0.weight": (big, 3), "layers.0.bias": (big,), "layers.1.weight": (2, big)},
    )
    model = _trained_model()
    before = _params(model)
    peak, out = _peak_bytes(lambda: model.load_parameters(path))
    assert isinstance(out, tm.io.ModelFileError) and "another architecture" in str(out), out
    assert peak < 4 << 20, peak
    assert _params(model) == before


def test_an_entry_whose_size_disagrees_with_its_header_is_refused(tmp_path):
    import io

    arrays = _good_arrays()
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arrays.pop("layers.1.bias"))
    _npz_with(tmp_path / "m.npz", arrays, raw={"layers.1.bias": buf.getvalue() + bytes(64)})
    with pytest.raises(tm.io.ModelFileError, match="layers.1.bias.*declares"):
        tm.MLP.load(tmp_path / "m.npz")


@pytest.mark.parametrize("key", ["n_inputs", "layer_sizes", "layers.0.weight", "learning_rate", "format"])
def test_an_entry_of_raw_bytes_is_a_model_file_error(tmp_path, key):
    arrays = _good_arrays()
    del arrays[key]
    path = tmp_path / "m.npz"
    _npz_with(path, arrays, raw={key: b"\x01\x02\x03 not an array"})
    with pytest.raises(tm.io.ModelFileError, match=key):
        tm.MLP.load(path)
    with pytest.raises(tm.io.ModelFileError):
        tm.io.read_entries(path)


def test_a_fifo_or_device_is_refused_without_blocking(tmp_path):
    import threading

    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    fifo = tmp_path / "model.npz"
    os.mkfifo(fifo)
    model = _trained_model()
    calls = {
        "load": lambda: tm.MLP.load(fifo),
        "load_parameters": lambda: model.load_parameters(fifo),
        "load_optimizer": lambda: tm.io.load_optimizer(fifo, model.parameters()),
    }
    for name, call in calls.items():
        outcome = {}

        def run(call=call, outcome=outcome):
            try:
                call()
            except Exception as e:
                outcome["error"] = e

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        worker.join(10)
        hung = worker.is_alive()
        if hung:  # let the blocked open() through, so the thread ends
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            worker.join(10)
        assert not hung, f"{name} blocked on a FIFO"
        assert isinstance(outcome.get("error"), tm.io.ModelFileError), (name, outcome)
        assert "not a regular file" in str(outcome["error"])
    if os.path.exists("/dev/null"):
        with pytest.raises(tm.io.ModelFileError, match="not a regular file"):
            tm.MLP.load("/dev/null")
    with pytest.raises(IsADirectoryError):  # as before
        tm.MLP.load(tmp_path)


def _open_fds() -> int | None:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None


def test_ctrl_c_right_after_the_temporary_file_is_created_leaves_nothing(tmp_path, monkeypatch):
    import signal

    path = tmp_path / "m.npz"
    _trained_model(seed=1).save(path)
    content = path.read_bytes()
    real_open = os.open

    def open_then_ctrl_c(name, flags, *args, **kwargs):
        fd = real_open(name, flags, *args, **kwargs)
        if os.fspath(name).endswith(".tmp"):
            os.kill(os.getpid(), signal.SIGINT)  # lands as soon as os.open has returned
        return fd

    fds = _open_fds()
    monkeypatch.setattr(tio.os, "open", open_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        _trained_model(seed=2).save(path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["m.npz"]
    assert path.read_bytes() == content
    assert _open_fds() == fds


def test_ctrl_c_inside_the_zip_writer_surfaces_as_keyboard_interrupt(tmp_path, monkeypatch):
    import signal
    import zipfile

    path = tmp_path / "m.npz"
    _trained_model(seed=1).save(path)
    content = path.read_bytes()
    real_init = zipfile._ZipWriteFile.__init__
    calls = []

    def ctrl_c_on_third_member(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # zipfile has marked itself as writing, the handle does not exist yet
            os.kill(os.getpid(), signal.SIGINT)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(zipfile._ZipWriteFile, "__init__", ctrl_c_on_third_member)
    with pytest.raises(KeyboardInterrupt):
        _trained_model(seed=2).save(path)
    monkeypatch.undo()
    assert len(calls) == 3
    assert os.listdir(tmp_path) == ["m.npz"]
    assert path.read_bytes() == content


@pytest.mark.parametrize("stem", ["模" * 80, "a" * 251])
def test_long_file_names_can_be_saved(tmp_path, stem):
    """Names up to the file system's limit (244 and 255 bytes here), although the
    temporary file's name adds a random part."""
    limit = os.pathconf(tmp_path, "PC_NAME_MAX") if hasattr(os, "pathconf") else 255
    name = stem + ".npz"
    if len(os.fsencode(name)) > limit:
        pytest.skip(f"this file system takes names of at most {limit} bytes")
    model = _trained_model()
    model.save(tmp_path / name)
    assert os.listdir(tmp_path) == [name]
    assert _params(tm.MLP.load(tmp_path / name)) == _params(model)
    model.save(tmp_path / name)  # replacing it too
    assert os.listdir(tmp_path) == [name]
