"""Saving and loading models (and optimiser state) as NumPy ``.npz`` files, without pickle.

The file is an ordinary ``.npz`` that ``numpy.load(path, allow_pickle=False)``
reads; every entry is a plain number, string or float64 array:

=====================  ==============================================================
key                    content
=====================  ==============================================================
``format``             the string ``"tinyml.MLP"``
``format_version``     int, ``FORMAT_VERSION`` (files of a newer version are refused)
``n_inputs``           int
``layer_sizes``        int64[L]
``activation``         str, e.g. ``"tanh"`` (hidden layers)
``output_activation``  str (last layer)
``init``               str, the initialisation the model was built with
``learning_rate``      float
``layers.{i}.weight``  float64[layer_sizes[i], fan_in], row j = neuron j's weights
                       (the layout of PyTorch's ``nn.Linear.weight``)
``layers.{i}.bias``    float64[layer_sizes[i]]
``optimizer.*``        only when saved with ``optimizer=``: ``kind`` (int),
                       ``name`` (str), ``hyper``, ``state`` (float64 arrays) and
                       ``t`` (int), as in ``Optimizer.state_dict()``
=====================  ==============================================================

Writing is atomic: the file is written to a temporary file in the same
directory, flushed to disk (fsync) and renamed over ``path``, so a crash
leaves either the old file or the new one, never half of one. Reading checks
everything (tag, version, architecture, shapes, dtypes, finiteness) before a
single parameter is written, so a bad file raises :class:`ModelFileError`
and leaves the model (or optimiser) as it was. Reading decompresses only the
entries it needs, each once its header and declared size match the dtype and
shape expected, so a file costs no more memory than the model it describes.

Typical use::

    model.save("model.npz", optimizer=opt)          # parameters + optimiser state
    model = tm.MLP.load("model.npz")                # a new model
    opt = tm.optim.Adam(model.parameters())
    tm.io.load_optimizer_state("model.npz", opt)    # resume training exactly
"""

from __future__ import annotations

import errno
import io
import math
import os
import stat
import uuid
import zipfile
from collections.abc import Sequence

import numpy as np

from .graph import Graph, hold_interrupts
from .nn import INITS, MLP, Activation
from .optim import HYPER_SIZE, KINDS, STATE_COLUMNS, Optimizer, _check_params

FORMAT = "tinyml.MLP"
FORMAT_VERSION = 1

PathLike = str | os.PathLike


class ModelFileError(ValueError):
    """A file that is not a readable tinyml model, or does not fit the model it is loaded into."""


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------
def _layer_rows(model: MLP) -> list[tuple[np.ndarray, np.ndarray]]:
    """Tape rows of each layer's (weights (n_out, n_in), biases (n_out,))."""
    out = []
    for layer in model.layers:
        w = np.array([[p._row for p in n.weights] for n in layer.neurons], np.int64)
        b = np.array([n.bias._row for n in layer.neurons], np.int64)
        if (w.size and w.min() < 0) or b.min() < 0:
            raise RuntimeError("the model's parameters were freed (their graph was cleared)")
        out.append((w, b))
    return out


def _check_model(model: object) -> MLP:
    if not isinstance(model, MLP):
        raise TypeError(f"expected a tinyml MLP, got {type(model).__name__}")
    return model


def model_arrays(model: MLP) -> dict[str, np.ndarray]:
    """Everything :func:`save_model` writes for ``model``, as a dict of arrays.

    Raises ValueError if a parameter is NaN or infinite: such a model is the
    result of diverged training, and saving it would only hide that.
    """
    model = _check_model(model)
    graph = model.graph
    graph.evaluate()
    arrays: dict[str, np.ndarray] = {
        "format": np.array(FORMAT),
        "format_version": np.array(FORMAT_VERSION, np.int64),
        "n_inputs": np.array(model.n_inputs, np.int64),
        "layer_sizes": np.array(model.layer_sizes, np.int64),
        "activation": np.array(Activation.parse(model.activation).value),
        "output_activation": np.array(Activation.parse(model.output_activation).value),
        "init": np.array(model.init),
        "learning_rate": np.array(model.learning_rate, np.float64),
    }
    for i, (w_rows, b_rows) in enumerate(_layer_rows(model)):
        w = graph.data[w_rows, 0]
        b = graph.data[b_rows, 0]
        for name, a in (("weight", w), ("bias", b)):
            bad = np.argwhere(~np.isfinite(a))
            if bad.size:
                where = ", ".join(str(int(k)) for k in bad[0])
                raise ValueError(
                    f"refusing to save: layers.{i}.{name}[{where}] is {a[tuple(bad[0])]} "
                    f"({len(bad)} non-finite value(s) in that array); training probably diverged"
                )
        arrays[f"layers.{i}.weight"] = w
        arrays[f"layers.{i}.bias"] = b
    return arrays


def optimizer_arrays(optimizer: Optimizer, model: MLP | None = None) -> dict[str, np.ndarray]:
    """The ``optimizer.*`` entries for ``optimizer``; checks it optimises ``model``'s parameters."""
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a tinyml.optim optimizer, got {type(optimizer).__name__}")
    if model is not None:
        params = model.parameters()
        same = len(params) == len(optimizer.params) and all(
            p._graph is q._graph and p._row == q._row for p, q in zip(params, optimizer.params)
        )
        if not same:
            raise ValueError(
                "the optimizer does not optimise this model's parameters (in model.parameters() "
                "order); create it with tm.optim.<Name>(model.parameters(), ...)"
            )
    sd = optimizer.state_dict()
    if not np.all(np.isfinite(sd["state"])):
        raise ValueError("refusing to save: the optimizer state holds non-finite numbers")
    return {
        "optimizer.kind": np.array(sd["kind"], np.int64),
        "optimizer.name": np.array(type(optimizer).__name__),
        "optimizer.hyper": sd["hyper"],
        "optimizer.state": sd["state"],
        "optimizer.t": np.array(sd["t"], np.int64),
    }


def write_npz(path: PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` (exactly that name) as an .npz, atomically.

    A temporary file next to ``path`` is written, fsync'd and then renamed over
    ``path`` with ``os.replace``; on any error, Ctrl-C included, the temporary
    file is removed and an existing ``path`` is left as it was.
    """
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    base = os.path.basename(path)
    if not base:
        raise ValueError(f"path {path!r} names a directory, not a file")
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"cannot save {path!r}: the folder {directory!r} does not exist; create it first "
            f"(os.makedirs({directory!r}, exist_ok=True))"
        )
    tmp = os.path.join(directory, _temporary_name(directory, base))
    f = None
    try:
        with hold_interrupts():  # the file exists only once we hold its handle: Ctrl-C cannot orphan it
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            f = os.fdopen(fd, "wb")
        with f:
            _write_zip(f, arrays)
            f.flush()
            os.fsync(f.fileno())
        if os.path.exists(path):
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)  # keep the permissions of the file we replace
        os.replace(tmp, path)
    except BaseException:
        if f is not None:  # None: os.open failed, so there is no file of ours to remove
            f.close()
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise
    _fsync_directory(directory)


def _write_zip(f, arrays: dict[str, np.ndarray]) -> None:
    """What ``np.savez(f, **arrays)`` writes, but safe to interrupt: each member
    is written with Ctrl-C held (zipfile stopped inside one cannot even be closed,
    so np.savez turned the KeyboardInterrupt into a ValueError), between members
    the KeyboardInterrupt comes through as it is."""
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, a in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asanyarray(a), allow_pickle=False)
            with hold_interrupts():
                zf.writestr(f"{key}.npy", member.getbuffer())


def _temporary_name(directory: str, base: str) -> str:
    """``.{base}.{random}.tmp``, with ``base`` cut short if the whole would exceed
    the file system's limit on a name's length (NAME_MAX bytes, usually 255)."""
    suffix = f".{uuid.uuid4().hex}.tmp"
    try:
        limit = os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # no such query here (Windows) or no answer
        limit = None
    if not isinstance(limit, int) or limit <= 0:
        limit = 255
    budget = limit - 1 - len(suffix)
    stem = base
    while stem and len(os.fsencode(stem)) > budget:  # cut whole characters, not bytes of one
        stem = stem[:-1]
    return f".{stem}{suffix}"


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable where the platform allows it (POSIX)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_model(model: MLP, path: PathLike, optimizer: Optimizer | None = None) -> None:
    """Save ``model`` (architecture, learning rate, parameters) to ``path``, atomically.

    ``path`` (str or os.PathLike) is used as given: no ``.npz`` suffix is added.
    With ``optimizer`` (created over ``model.parameters()``), its state is saved
    too, so training can resume exactly: see :func:`load_optimizer_state`.
    Raises ValueError, writing nothing, if a parameter is NaN or infinite.
    """
    arrays = model_arrays(model)
    if optimizer is not None:
        arrays.update(optimizer_arrays(optimizer, model))
    write_npz(path, arrays)


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------
class _Spec:
    """What a model file says, checked: architecture, hyperparameters, parameters.

    Each entry is decoded only after its header says it has the dtype and shape
    expected, and only the entries a model needs: see :class:`_Archive`.
    """

    def __init__(self, entries: _Archive, path: str, fits=None) -> None:
        self.path = path
        self.n_inputs = _int(entries, "n_inputs", path, minimum=1)
        shape, dtype = _header(entries, "layer_sizes", path)
        # a layer takes two entries of the file, so a file has fewer layers than entries
        if len(shape) != 1 or not 0 < shape[0] <= len(entries) or dtype.kind not in "iu":
            raise ModelFileError(f"{path}: layer_sizes must be a non-empty list of positive ints")
        sizes = entries.decode("layer_sizes")
        if sizes.min() < 1:
            raise ModelFileError(f"{path}: layer_sizes must be a non-empty list of positive ints")
        self.layer_sizes = [int(s) for s in sizes]
        self.activation = _activation(entries, "activation", path)
        self.output_activation = _activation(entries, "output_activation", path)
        self.init = _string(entries, "init", path)
        if self.init not in INITS:
            raise ModelFileError(f"{path}: unknown init {self.init!r}")
        self.learning_rate = _float(entries, "learning_rate", path)
        if fits is not None:  # the architecture a caller needs, checked before any parameter is read
            fits(self)
        self.layers: list[tuple[np.ndarray, np.ndarray]] = []
        fan_in = self.n_inputs
        for i, n_out in enumerate(self.layer_sizes):
            w = _parameters(entries, f"layers.{i}.weight", (n_out, fan_in), path)
            b = _parameters(entries, f"layers.{i}.bias", (n_out,), path)
            self.layers.append((w, b))
            fan_in = n_out
        if f"layers.{len(self.layer_sizes)}.weight" in entries:
            raise ModelFileError(f"{path}: holds more layers than its layer_sizes {self.layer_sizes}")

    def describe(self) -> str:
        return f"MLP({self.n_inputs}, {self.layer_sizes})"


_MAX_STRING = 256  # characters of a string entry (a format tag, an activation's name)


def _header(entries: _Archive, key: str, path: str) -> tuple[tuple[int, ...], np.dtype]:
    if key not in entries:
        raise ModelFileError(f"{path}: missing entry {key!r}; the file is incomplete or not a tinyml model")
    return entries.header(key)


def _int(entries: _Archive, key: str, path: str, minimum: int = 0) -> int:
    shape, dtype = _header(entries, key, path)
    value = int(entries.decode(key)) if shape == () and dtype.kind in "iu" else None
    if value is None or value < minimum:
        raise ModelFileError(f"{path}: {key} must be an int >= {minimum}, found {dtype}{list(shape)}")
    return value


def _float(entries: _Archive, key: str, path: str) -> float:
    shape, dtype = _header(entries, key, path)
    if shape != () or dtype.kind != "f":
        raise ModelFileError(f"{path}: {key} must be a finite float, found {dtype}{list(shape)}")
    a = entries.decode(key)
    if not np.isfinite(a):
        raise ModelFileError(f"{path}: {key} must be a finite float, found {a!r:.60}")
    return float(a)


def _string(entries: _Archive, key: str, path: str) -> str:
    shape, dtype = _header(entries, key, path)
    if shape != () or dtype.kind != "U" or dtype.itemsize > 4 * _MAX_STRING:
        raise ModelFileError(
            f"{path}: {key} must be a string (at most {_MAX_STRING} characters), found {dtype}{list(shape)}"
        )
    return str(entries.decode(key))


def _activation(entries: _Archive, key: str, path: str) -> Activation:
    name = _string(entries, key, path)
    try:
        return Activation.parse(name)
    except ValueError as e:
        raise ModelFileError(f"{path}: {key}: {e}") from None


def _parameters(entries: _Archive, key: str, shape: tuple[int, ...], path: str) -> np.ndarray:
    found, dtype = _header(entries, key, path)
    if dtype != np.float64 or found != shape:
        raise ModelFileError(f"{path}: {key} must be float64{list(shape)}, found {dtype}{list(found)}")
    a = entries.decode(key)
    if not np.all(np.isfinite(a)):
        raise ModelFileError(f"{path}: {key} holds non-finite values")
    return a


class _Archive:
    """The entries of an open .npz file, read one at a time and only on demand.

    Nothing is decompressed before it is asked for, and :meth:`decode` reads an
    entry only once its declared size in the zip directory agrees with its
    ``.npy`` header (dtype, shape), which the caller has checked against what
    it expects: a small file cannot make the loader decode more than the model
    it describes (no decompression bomb), and members it does not use are never
    decompressed at all.
    """

    def __init__(self, fh, name: str) -> None:
        self.name = name
        if fh.read(len(_NPY_MAGIC)) == _NPY_MAGIC:
            raise ModelFileError(f"{name} is not a tinyml model file (it holds one bare array, not an .npz)")
        fh.seek(0)
        self.zip = zipfile.ZipFile(fh)
        self.members: dict[str, zipfile.ZipInfo] = {}
        for info in self.zip.infolist():  # keys as numpy.load names them: "x.npy" is entry "x"
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            self.members[key] = info
        self._headers: dict[str, tuple[tuple[int, ...], np.dtype]] = {}

    def __contains__(self, key: str) -> bool:
        return key in self.members

    def __iter__(self):
        return iter(self.members)

    def __len__(self) -> int:
        return len(self.members)

    def header(self, key: str) -> tuple[tuple[int, ...], np.dtype]:
        """(shape, dtype) from the entry's ``.npy`` header: its first bytes only."""
        if key not in self._headers:
            info = self.members[key]
            with self.zip.open(info) as m:
                head = m.read(len(_NPY_MAGIC) + 2)
                if not head.startswith(_NPY_MAGIC) or len(head) < len(_NPY_MAGIC) + 2:
                    raise ModelFileError(f"{self.name}: entry {key!r} is not a NumPy array (.npy)")
                version = (head[-2], head[-1])
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(m)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(m)
                else:
                    raise ModelFileError(f"{self.name}: entry {key!r} has .npy format version {version}")
                data_start = m.tell()
            if dtype.hasobject:
                raise ModelFileError(f"{self.name}: entry {key!r} holds Python objects (pickles are refused)")
            size = dtype.itemsize * math.prod(shape)
            if info.file_size != data_start + size:
                raise ModelFileError(
                    f"{self.name}: entry {key!r} declares {info.file_size} bytes but its header "
                    f"{dtype}{list(shape)} needs {data_start + size}; the file is damaged"
                )
            self._headers[key] = (tuple(shape), dtype)
        return self._headers[key]

    def decode(self, key: str) -> np.ndarray:
        """The entry as an array; call :meth:`header` first and check what it says."""
        with self.zip.open(self.members[key]) as m:
            return np.lib.format.read_array(m, allow_pickle=False)


_NPY_MAGIC = b"\x93NUMPY"


def _open_regular(path: str):
    """``open(path, "rb")``, refusing anything but a regular file (a FIFO or a
    device would block or never end) before reading a byte of it."""
    name = repr(path)
    info = os.stat(path)  # missing or unreadable: the usual OSError
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    if not stat.S_ISREG(info.st_mode):
        raise ModelFileError(f"{name} is not a regular file (a FIFO, device or socket?); give a model file")
    # O_NONBLOCK: were a FIFO put there since the check, opening it must not wait for a writer
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    fh = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
        fh.close()
        raise ModelFileError(f"{name} is not a regular file (a FIFO, device or socket?); give a model file")
    return fh


def _archive_call(path: PathLike, read, fmt: str = FORMAT):
    """``read(archive)`` over the checked, open .npz at ``path``, with every
    failure that damaged content can cause reported as ModelFileError."""
    path = os.fspath(path)
    name = repr(path)
    with _open_regular(path) as fh:  # we own the handle: zipfile leaks it on some damaged zips
        try:
            archive = _Archive(fh, name)
            with archive.zip:
                _check_format(archive, name, fmt)
                return read(archive)
        except ModelFileError:
            raise
        except Exception as e:  # untrusted content can fail in many ways; all mean the same
            raise ModelFileError(
                f"{name} is not a tinyml model file, or is damaged ({type(e).__name__}: {e})"
            ) from e


def _check_format(archive: _Archive, name: str, fmt: str = FORMAT) -> None:
    if "format" not in archive:
        raise ModelFileError(f"{name} is not a tinyml model file (it has no 'format' entry)")
    shape, dtype = archive.header("format")
    string = shape == () and dtype.kind == "U" and dtype.itemsize <= 4 * _MAX_STRING
    tag = str(archive.decode("format")) if string else f"{dtype}{list(shape)}"
    if tag != fmt:
        kind = "model" if fmt == FORMAT else fmt.removeprefix("tinyml.")
        raise ModelFileError(f"{name} is not a tinyml {kind} file (format is {tag!r:.60})")
    version = None
    if "format_version" in archive:
        shape, dtype = archive.header("format_version")
        if shape == () and dtype.kind in "iu":
            version = archive.decode("format_version")
    if version is None:
        raise ModelFileError(f"{name}: missing or malformed format_version")
    if int(version) > FORMAT_VERSION or int(version) < 1:
        raise ModelFileError(
            f"{name} has format version {int(version)}; this tinyml reads version "
            f"{FORMAT_VERSION} (a newer tinyml wrote it?)"
        )


def read_entries(
    path: PathLike, keys: Sequence[str] | None = None, fmt: str = FORMAT
) -> dict[str, np.ndarray]:
    """The entries of a tinyml file (only those of ``keys`` that it has, if given).

    Checks the format tag and version first. Missing files and unreadable
    paths raise the usual OSError; content that is not a tinyml file of a
    version this code reads (empty, truncated, random bytes, a pickle, another
    .npz, a member that is not a ``.npy`` array) raises ModelFileError. Only the
    entries asked for are decompressed, each at most its declared size; the
    loaders below ask for what the model needs only, shapes checked first.
    """

    def read(archive: _Archive) -> dict[str, np.ndarray]:
        wanted = sorted(archive if keys is None else set(archive).intersection(keys))
        out = {}
        for k in wanted:
            archive.header(k)
            out[k] = archive.decode(k)
        return out

    return _archive_call(path, read, fmt)


def read_spec(path: PathLike, fits=None) -> _Spec:
    """Read and fully check the model part of a tinyml file.

    ``fits(spec)``, if given, is called once the architecture is read and before
    the parameters are, to refuse a file of another architecture than needed.
    """
    name = repr(os.fspath(path))
    return _archive_call(path, lambda archive: _Spec(archive, name, fits))


def _write_parameters(model: MLP, spec: _Spec) -> None:
    """Copy checked parameters into the model's rows (no check can fail from here on)."""
    graph = model.graph
    graph.evaluate()  # rows built before keep the parameters they were built with
    for (w_rows, b_rows), (w, b) in zip(_layer_rows(model), spec.layers):
        graph.data[w_rows, :] = w[..., None]
        graph.data[b_rows, :] = b[:, None]


def load_model(path: PathLike, *, graph: Graph | None = None) -> MLP:
    """A new MLP with the architecture, learning rate and parameters saved in ``path``.

    ``graph`` picks the tape to build it in (default: the current one). Its
    predictions are bit-for-bit those of the saved model.
    """
    spec = read_spec(path)
    model = MLP(
        spec.n_inputs,
        spec.layer_sizes,
        spec.learning_rate,
        spec.activation,
        seed=0,
        output_activation=spec.output_activation,
        init=spec.init,
        graph=graph,
    )
    _write_parameters(model, spec)
    return model


def load_parameters(model: MLP, path: PathLike) -> None:
    """Load the parameters saved in ``path`` into ``model``, which must have the same architecture.

    Same architecture means the same ``n_inputs``, ``layer_sizes``,
    ``activation`` and ``output_activation``; anything else raises
    ModelFileError and changes nothing. Only parameters are loaded (not the
    learning rate); gradients are left as they are.
    """
    model = _check_model(model)

    def fits(spec: _Spec) -> None:
        mismatches = []
        if spec.n_inputs != model.n_inputs or spec.layer_sizes != list(model.layer_sizes):
            mismatches.append(f"{spec.describe()} != MLP({model.n_inputs}, {list(model.layer_sizes)})")
        for key in ("activation", "output_activation"):
            theirs = getattr(spec, key)
            ours = Activation.parse(getattr(model, key))
            if theirs is not ours:
                mismatches.append(f"{key} {theirs.value!r} != {ours.value!r}")
        if mismatches:
            raise ModelFileError(
                f"{spec.path} holds a model of another architecture than this one: " + "; ".join(mismatches)
            )

    _write_parameters(model, read_spec(path, fits))


# ---------------------------------------------------------------------------
# Optimiser state
# ---------------------------------------------------------------------------
_OPTIMIZER_KEYS = ("optimizer.kind", "optimizer.hyper", "optimizer.state", "optimizer.t")


def _optimizer_state_dict(path: PathLike, n_params: int) -> dict:
    """The optimiser entries of ``path``; ``state`` is decoded only if its header
    says float[n_params, STATE_COLUMNS[kind]], what an optimiser over ``n_params``
    parameters holds (so a file cannot make the loader decode more)."""
    name = repr(os.fspath(path))

    def read(archive: _Archive) -> dict:
        missing = [k for k in _OPTIMIZER_KEYS if k not in archive]
        if missing:
            raise ModelFileError(
                f"{name} holds no optimizer state (missing {', '.join(missing)}); "
                "save it with model.save(path, optimizer=opt)"
            )
        ints = {}
        for key in ("optimizer.kind", "optimizer.t"):
            shape, dtype = archive.header(key)
            if shape != () or dtype.kind not in "iu":
                raise ModelFileError(f"{name}: {key} must be an int, found {dtype}{list(shape)}")
            ints[key] = int(archive.decode(key))
        kind = ints["optimizer.kind"]
        if kind not in KINDS:
            raise ModelFileError(f"{name}: unknown optimizer kind {kind}")
        arrays = {}
        for key, expected in (
            ("optimizer.hyper", (HYPER_SIZE,)),
            ("optimizer.state", (n_params, STATE_COLUMNS[kind])),
        ):
            shape, dtype = archive.header(key)
            if shape != expected or dtype.kind != "f" or dtype.itemsize > 16:
                raise ModelFileError(
                    f"{name}: optimizer state does not fit: {key} must be float{list(expected)} "
                    f"for {n_params} parameters, found {dtype}{list(shape)}"
                )
            arrays[key] = archive.decode(key)
        return {
            "kind": kind,
            "hyper": arrays["optimizer.hyper"],
            "state": arrays["optimizer.state"],
            "t": ints["optimizer.t"],
        }

    return _archive_call(path, read)


def load_optimizer_state(path: PathLike, optimizer: Optimizer) -> None:
    """Restore ``optimizer`` (step count, buffers and hyperparameters) from ``path``.

    ``path`` must have been saved with ``model.save(path, optimizer=...)`` by an
    optimiser of the same class over the same number of parameters; otherwise
    ModelFileError, and ``optimizer`` is unchanged.
    """
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a tinyml.optim optimizer, got {type(optimizer).__name__}")
    sd = _optimizer_state_dict(path, len(optimizer.params))
    name = repr(os.fspath(path))
    if sd["kind"] != optimizer.kind:
        raise ModelFileError(
            f"{name} holds {KINDS[sd['kind']].__name__} state, "
            f"but the optimizer is {type(optimizer).__name__}"
        )
    try:
        optimizer.load_state_dict(sd)
    except (ValueError, TypeError) as e:
        raise ModelFileError(f"{name}: optimizer state does not fit: {e}") from None


def load_optimizer(path: PathLike, params) -> Optimizer:
    """A new optimiser of the saved class over ``params`` (e.g. ``model.parameters()``), restored."""
    params = _check_params(params)  # errors about params are the caller's, not the file's
    sd = _optimizer_state_dict(path, len(params))
    try:
        return Optimizer.from_state_dict(params, sd)
    except ValueError as e:
        raise ModelFileError(f"{os.fspath(path)!r}: optimizer state does not fit: {e}") from None


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ModelFileError",
    "load_model",
    "load_optimizer",
    "load_optimizer_state",
    "load_parameters",
    "model_arrays",
    "optimizer_arrays",
    "read_entries",
    "save_model",
    "write_npz",
]


# ---------------------------------------------------------------------------
# Any Module: its state_dict, and the architecture of built-in stacks
# ---------------------------------------------------------------------------
MODULE_FORMAT = "tinyml.Module"


def module_arrays(module) -> dict[str, np.ndarray]:
    """What :func:`save_module` writes: ``state.<name>`` for every state_dict entry,
    and ``architecture`` (JSON) when the module is made of built-in layers only."""
    import json

    from .module import Module

    if not isinstance(module, Module):
        raise TypeError(f"expected a tinyml Module, got {type(module).__name__}")
    arrays: dict[str, np.ndarray] = {
        "format": np.array(MODULE_FORMAT),
        "format_version": np.array(FORMAT_VERSION, np.int64),
    }
    spec = _architecture(module)
    arrays["architecture"] = np.array("" if spec is None else json.dumps(spec))
    for key, a in module.state_dict().items():
        bad = np.argwhere(~np.isfinite(a))
        if bad.size:
            raise ValueError(
                f"refusing to save: {key} holds {len(bad)} non-finite value(s); training probably diverged"
            )
        arrays["state." + key] = a
    return arrays


def _architecture(module):
    """A JSON-able description of a built-in layer or Sequential of them; None otherwise."""
    from . import layers

    if type(module) is layers.Sequential:
        items = [_architecture(m) for m in module]
        return None if any(i is None for i in items) else {"type": "Sequential", "modules": items}
    config = getattr(module, "_config", None)
    if config is None or type(module).__module__ != layers.__name__:
        return None
    return {"type": type(module).__name__, "args": config()}


def save_module(module, path: PathLike) -> None:
    """Save ``module``'s state_dict (and architecture, for built-in stacks) to ``path``, atomically."""
    write_npz(path, module_arrays(module))


def _module_state(path: PathLike) -> tuple[dict[str, np.ndarray], str]:
    entries = read_entries(path, fmt=MODULE_FORMAT)
    state = {k[len("state.") :]: v for k, v in entries.items() if k.startswith("state.")}
    arch = entries.get("architecture")
    return state, "" if arch is None else str(arch)


def load_module_parameters(module, path: PathLike) -> None:
    """Load the state saved in ``path`` into ``module``: ModelFileError, and nothing
    changed, if the names or shapes differ."""
    state, _ = _module_state(path)
    try:
        module.load_state_dict(state)
    except (ValueError, TypeError) as e:
        raise ModelFileError(f"{os.fspath(path)!r} does not fit this module: {e}") from None


def load_sequential(path: PathLike, *, graph: Graph | None = None):
    """A new module rebuilt from the architecture saved in ``path``, with its state."""
    import json

    from . import layers

    state, arch = _module_state(path)
    if not arch:
        raise ModelFileError(
            f"{os.fspath(path)!r} holds no architecture (a custom Module was saved); build the "
            "module in code and call load_parameters(path)"
        )

    def build(spec):
        kind = spec.get("type")
        if kind == "Sequential":
            return layers.Sequential(*[build(s) for s in spec["modules"]])
        cls = getattr(layers, str(kind), None)
        if cls is None or not isinstance(cls, type) or getattr(cls, "_config", None) is None:
            raise ModelFileError(f"{os.fspath(path)!r}: unknown layer type {kind!r}")
        args = dict(spec.get("args", {}))
        if graph is not None and "graph" in cls.__init__.__code__.co_varnames:
            args["graph"] = graph
        return cls(**args)

    try:
        module = build(json.loads(arch))
    except ModelFileError:
        raise
    except Exception as e:
        raise ModelFileError(
            f"{os.fspath(path)!r}: unreadable architecture ({type(e).__name__}: {e})"
        ) from None
    load_module_parameters(module, path)
    return module
