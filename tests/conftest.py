"""Session hooks: the quick benchmark run (tests/test_benchmarks_quick.py) goes beside the rest.

It runs ``python -m benchmarks --quick`` in a subprocess, about half of the whole
suite's time, mostly waiting on the peers' imports and on subprocesses of its own.
When collection ends and that test is selected, its subprocess is started, and the
test is moved to the end, where it collects the report; so the two run side by side.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

QUICK = "test_quick_mode_runs_every_workload_and_every_check_passes"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.name == QUICK)  # stable: only that test moves, to the end


def pytest_collection_finish(session):
    if session.config.option.collectonly:
        return
    if any(item.name == QUICK for item in session.items):
        from tests import test_benchmarks_quick as quick

        folder = Path(tempfile.mkdtemp(prefix="tinyml-quick-bench-"))
        session.config.stash[FOLDER] = folder
        quick.BACKGROUND["quick"] = quick.start_suite(folder)


def pytest_sessionfinish(session):
    from tests import test_benchmarks_quick as quick

    started = quick.BACKGROUND.pop("quick", None)
    if started is not None:  # the test never ran (-x stopped the session first): stop the run
        proc, _, logs = started
        proc.kill()
        proc.wait()
        for f in logs:
            f.close()
    folder = session.config.stash.get(FOLDER, None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


FOLDER = pytest.StashKey[Path]()
