"""The real-data examples run as a user runs them: a subprocess from the repository root.

Each run uses small settings (a few seconds at most, most of it start-up), checks
the printed accuracy line against the example's goal and against the rest of
its output, and checks that the promised PNG was written and is a real picture.
Skipped when the ``examples`` extras (scikit-learn, matplotlib) are missing.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_example(
    script: str, args: list[str], blocked: tuple[str, ...] = (), cwd: Path = ROOT
) -> subprocess.CompletedProcess:
    """Run ``examples/<script>`` with ``args`` in ``cwd``; ``blocked`` packages are made unimportable."""
    path = str(EXAMPLES / script)
    if blocked:
        code = (
            "import runpy, sys\n"
            f"for name in {list(blocked)!r}:\n"
            "    sys.modules[name] = None  # 'import name' now raises ImportError\n"
            f"sys.argv = [{path!r}, *{args!r}]\n"
            f"runpy.run_path({path!r}, run_name='__main__')\n"
        )
        cmd = [sys.executable, "-c", code]
    else:
        cmd = [sys.executable, path, *args]
    # this checkout's tinyml first, also when another one is installed (editable) elsewhere
    path_entries = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=os.pathsep.join(path_entries))
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def check_ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def accuracy_line(stdout: str, what: str) -> tuple[float, int, int]:
    """(accuracy, correct, total) from '<what> accuracy: 0.9611 (346/360)'; it must be consistent."""
    m = re.search(rf"^{what} accuracy: ([0-9.]+) \((\d+)/(\d+)\)$", stdout, re.MULTILINE)
    assert m, f"no '{what} accuracy' line in:\n{stdout}"
    accuracy, correct, total = float(m.group(1)), int(m.group(2)), int(m.group(3))
    assert 0 <= correct <= total
    assert accuracy == pytest.approx(correct / total, abs=5e-5)
    return accuracy, correct, total


def check_png(path: Path) -> np.ndarray:
    """The file is a PNG that matplotlib reads back as a non-blank RGB(A) image; returns its pixels."""
    import matplotlib.image

    assert path.is_file(), f"{path} was not written"
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] >= 200 and pixels.shape[1] >= 200
    assert pixels.shape[2] in (3, 4)
    assert pixels[..., :3].std() > 0.05, "the picture is blank"
    return pixels


def test_digits_accuracy_confusion_matrix_and_loss_plot(tmp_path):
    plot = tmp_path / "loss.png"
    # the settings (the fit itself takes well under a second), every option given explicitly
    args = ["--epochs", "30", "--batch-size", "32", "--seed", "0", "--lr", "0.1", "--plot", str(plot)]
    out = check_ok(run_example("digits.py", args))
    accuracy, correct, total = accuracy_line(out, "test")
    assert total == 360  # 20% of the 1797 images
    assert accuracy >= 0.95
    assert re.search(r"^fit: 30 epochs, batches of 32, SGD lr 0\.1, seed 0: [0-9.]+ s", out, re.MULTILINE)

    # the confusion matrix: 10 rows of 10 counts, rows are the true digits of the test set
    lines = out.splitlines()
    head = lines.index("true\\pred" + "".join(f"{d:>4}" for d in range(10)))
    rows = [[int(c) for c in line.split()] for line in lines[head + 1 : head + 11]]
    assert [r[0] for r in rows] == list(range(10))
    counts = np.array([r[1:] for r in rows])
    assert counts.shape == (10, 10)
    assert counts.sum() == total and np.trace(counts) == correct
    # stratified split of the digits' class sizes (178, 182, 177, 183, 181, 182, 181, 179, 174, 180)
    assert np.all(np.abs(counts.sum(axis=1) - 36) <= 1)

    assert f"loss curve written to {plot.resolve()}" in out
    check_png(plot)


def test_cnn_digits_accuracy_and_filters_plot(tmp_path):
    plot = tmp_path / "cnn.png"
    out = check_ok(run_example("cnn_digits.py", ["--plot", str(plot)]))  # the defaults: 40 epochs, Adam
    accuracy, correct, total = accuracy_line(out, "test")
    assert total == 360
    assert accuracy >= 0.98
    assert re.search(r"^fit: 40 epochs, batches of 32, Adam lr 0\.01, seed 0: [0-9.]+ s", out, re.MULTILINE)
    wrong = re.search(r"^misclassified \(true -> predicted\): (.*)$", out, re.MULTILINE).group(1)
    pairs = [p.split("->") for p in wrong.split(", ") if p]
    assert len(pairs) == total - correct and all(t != p for t, p in pairs)
    assert f"filters and mistakes written to {plot.resolve()}" in out
    check_png(plot)


def test_moons_accuracy_and_decision_boundary_in_the_default_moons_png(tmp_path):
    args = ["--epochs", "300", "--batch-size", "20", "--seed", "2"]
    out = check_ok(run_example("moons.py", args, cwd=tmp_path))
    accuracy, _, total = accuracy_line(out, "training")
    assert total == 200
    assert accuracy >= 0.97
    assert re.search(r"^fit: 300 epochs, batches of 20, SGD lr 0\.1: ", out, re.MULTILINE)
    picture = tmp_path / "moons.png"
    assert f"written to {picture.resolve()}" in out

    pixels = check_png(picture)[..., :3]
    # both class regions are filled: the two background colours of the contourf each cover a good part
    for hex_colour in ("#f4a582", "#92c5de"):
        rgb = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)]) / 255
        alpha = 0.8  # drawn over white
        blended = alpha * rgb + (1 - alpha)
        share = np.mean(np.all(np.abs(pixels - blended) < 0.02, axis=-1))
        assert share > 0.05, f"region colour {hex_colour} covers only {share:.3f} of the picture"


def test_moons_out_option_in_process(tmp_path, capsys, monkeypatch):
    import matplotlib.figure

    spec = importlib.util.spec_from_file_location("moons_example", EXAMPLES / "moons.py")
    moons = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(moons)
    picture = tmp_path / "elsewhere.png"
    labels = []
    savefig = matplotlib.figure.Figure.savefig

    def recording_savefig(fig, *args, **kwargs):
        labels.extend((ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes)
        return savefig(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", recording_savefig)
    assert moons.main(["--epochs", "20", "--out", str(picture)]) == 0
    assert labels and all(x and y for x, y in labels), "the moons picture has axis labels"
    out = capsys.readouterr().out
    accuracy_line(out, "training")
    assert f"written to {picture.resolve()}" in out
    check_png(picture)


def test_sine_lstm_quick_prints_forecast_table_and_plot(tmp_path):
    plot = tmp_path / "sine.png"
    out = check_ok(run_example("sine_lstm.py", ["--quick", "--plot", str(plot)]))
    m = re.search(
        r"^sine test MSE: ([0-9.]+) \(noise variance 0\.0100; repeating the last value: ([0-9.]+)\)$",
        out,
        re.M,
    )
    assert m and np.isfinite(float(m.group(1)))
    assert f"forecast plot written to {plot.resolve()}" in out
    check_png(plot)
    # the adding problem's table: one row per model, the ratio consistent with the MSE and the baseline
    baseline = float(re.search(r"^baseline \(predicting the mean\): test MSE ([0-9.]+)$", out, re.M).group(1))
    rows = re.findall(
        r"^(RNN|LSTM|GRU)\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)  (learned it|partly|failed.*)$", out, re.M
    )
    assert [r[0] for r in rows] == ["RNN", "LSTM", "GRU"]
    for _, mse, ratio, _, _ in rows:
        assert float(ratio) == pytest.approx(float(mse) / baseline, abs=2e-3)


@pytest.mark.parametrize(
    ("script", "args", "blocked", "needs"),
    [
        ("digits.py", ["--plot", "PNG"], ("matplotlib",), "matplotlib"),
        ("digits.py", [], ("sklearn",), "scikit-learn"),
        ("cnn_digits.py", ["--plot", "PNG"], ("matplotlib",), "matplotlib"),
        ("cnn_digits.py", [], ("sklearn",), "scikit-learn"),
        ("moons.py", ["--out", "PNG"], ("matplotlib",), "matplotlib"),
        ("moons.py", ["--out", "PNG"], ("sklearn",), "scikit-learn"),
        ("xor_demo.py", ["--epochs", "100", "--plot", "PNG"], ("matplotlib",), "matplotlib"),
        ("sine_lstm.py", ["--plot", "PNG"], ("matplotlib",), "matplotlib"),
    ],
)
def test_missing_extras_give_a_clear_message_before_training(tmp_path, script, args, blocked, needs):
    png = tmp_path / "out.png"
    args = [str(png) if a == "PNG" else a for a in args]
    proc = run_example(script, args, blocked=blocked)
    assert proc.returncode == 1
    assert needs in proc.stderr and 'pip install ".[examples]"' in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "fit:" not in proc.stdout and "Epoch" not in proc.stdout  # stopped before training
    assert not png.exists()


def test_xor_seeds_quick_prints_consistent_numbers_and_writes_both_pictures(tmp_path):
    out = tmp_path / "seeds.png"
    stdout = check_ok(run_example("xor_seeds.py", ["--quick", "--out", str(out)]))
    m = re.search(r"^converged: ([0-9.]+) \((\d+)/(\d+)\)", stdout, re.MULTILINE)
    assert m, stdout
    fraction, hits, total = float(m.group(1)), int(m.group(2)), int(m.group(3))
    assert total == 200 and fraction == pytest.approx(hits / total, abs=5e-5)
    rows = re.findall(r"^  lr (\S+) +((?:\s*[0-9.]+){5})$", stdout, re.MULTILINE)
    assert [r[0] for r in rows] == ["0.01", "0.03", "0.1", "0.3", "1"]
    cells = np.array([[float(v) for v in r[1].split()] for r in rows])
    assert np.all((0 <= cells) & (cells <= 1))
    # the Rust setting (lr 0.1, scale 1) is part 1's setting: it converges there too
    assert cells[2, 2] == 1.0 or fraction < 1.0
    check_png(out)
    check_png(tmp_path / "seeds_grid.png")
