"""Suite-wide settings: caches stay inside the checkout, never in the user's ~/.cache."""

import os
import shutil
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

# Judge weights, phantoms, prepared cohorts and autoencoders are cached between test runs in
# .pytest_cache (git-ignored); a fresh CI clone starts empty. Tests that check caching itself
# point CMR_AUDIT_CACHE at their own tmp_path.
os.environ.setdefault("CMR_AUDIT_CACHE", str(Path(__file__).resolve().parent.parent / ".pytest_cache" / "cmr-audit-cache"))


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory):
    """``module_tmp(name)``: a fresh directory that is deleted when the test module finishes.

    ``tmp_path_factory.mktemp`` directories stay until the session ends, and phantoms, caches and
    run directories of the module-scoped fixtures add up to gigabytes over the suite (a CI run
    ran out of disk). Passed tests' ``tmp_path`` is removed at once (pyproject:
    ``tmp_path_retention_policy = "failed"``)."""
    made: list[Path] = []

    def make(name: str) -> Path:
        made.append(tmp_path_factory.mktemp(name))
        return made[-1]

    yield make
    for d in made:
        shutil.rmtree(d, ignore_errors=True)
