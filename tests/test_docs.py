"""Every ```python block of README.md and examples/README.md runs, alone, in a fresh namespace.

So a snippet can never drift from the code: each block must be self-contained
(its own imports and data). Blocks run in a temporary directory (the saving
snippet writes a file); a block that needs scikit-learn is skipped without it.
"""

import contextlib
import io
import re
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "examples" / "README.md"]
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def blocks():
    for doc in DOCS:
        text = doc.read_text()
        for m in FENCE.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            yield pytest.param(m.group(1), id=f"{doc.relative_to(ROOT)}:{line}")


def test_readme_has_python_blocks():
    assert len(list(blocks())) >= 8


@pytest.mark.parametrize("code", blocks())
def test_block_runs_alone(code, tmp_path, monkeypatch):
    if "sklearn" in code:
        pytest.importorskip("sklearn")
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        if "sklearn" in code:  # a snippet with a small max_iter warns, as scikit-learn's would
            from sklearn.exceptions import ConvergenceWarning

            warnings.simplefilter("ignore", ConvergenceWarning)
        exec(compile(code, "<README block>", "exec"), {"__name__": "__readme__"})


def test_printed_numbers_match_the_comments():
    """The first README block's printed values are the ones its comment shows."""
    code = next(iter(blocks())).values[0]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<README block>", "exec"), {})
    shown = re.search(r"print\(.*\)  # (.*)", code).group(1).replace("...", "").split()
    printed = out.getvalue().split()
    assert len(shown) == len(printed)
    for want, got in zip(shown, printed):
        assert got.startswith(want), (got, want)
