"""Shared pytest setup for the tinyml test suite."""

from __future__ import annotations

import warnings

# Hypothesis imports libcst lazily to print its "explicit example" patch when a
# property test FAILS; libcst's import emits a DeprecationWarning (from
# mypy_extensions), which `filterwarnings = error` turns into a pytest
# INTERNALERROR that hides the failure and aborts the run. Import it here, once,
# with that warning silenced, so failures are reported normally.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:  # libcst missing or hypothesis reorganised: nothing to pre-import
        pass
