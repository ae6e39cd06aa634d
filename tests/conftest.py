"""Suite-wide settings: caches stay inside the checkout, never in the user's ~/.cache."""

import os
import shutil
from pathlib import Path

import matplotlib
import pytest

from audit.core.cpus import core_ids, usable_cores

matplotlib.use("Agg")

# Judge weights, phantoms, prepared cohorts and autoencoders are cached between test runs in
# .pytest_cache (git-ignored); a fresh CI clone starts empty. Tests that check caching itself
# point CMR_AUDIT_CACHE at their own tmp_path.
os.environ.setdefault("CMR_AUDIT_CACHE", str(Path(__file__).resolve().parent.parent / ".pytest_cache" / "cmr-audit-cache"))


#: most xdist workers ``-n auto`` starts (pyproject addopts): each worker builds its own module
#: fixtures and holds up to ~3 GB, and the suite's long modules keep few more than 4 busy
MAX_WORKERS = 4


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker per usable core (the CPU affinity), at most :data:`MAX_WORKERS`;
    0 (everything in this process) on one core. ``PYTEST_XDIST_AUTO_NUM_WORKERS`` overrides."""
    env = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS")
    if env:
        return int(env)
    cores = usable_cores()
    return 0 if cores < 2 else min(cores, MAX_WORKERS)


def pytest_configure(config):
    """In an xdist worker: pin this process (and the subprocesses its tests start) to its own share
    of the cores, so that torch, OpenMP and onnxruntime size their thread pools to that share
    (:func:`audit.core.cpus.usable_cores`). Unpinned, every worker's pools take every core: two
    workers on two cores ran four compute threads and the suite took longer than in one process
    (BENCHMARKS.md, "Test suite wall time")."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if not worker or count < 2 or not hasattr(os, "sched_setaffinity"):
        return
    share = core_ids()[int(worker.removeprefix("gw")) % count::count]
    if share:
        os.sched_setaffinity(0, share)
        os.environ["OMP_NUM_THREADS"] = str(len(share))  # before torch is imported in this worker


def pytest_collection_modifyitems(config, items):
    """Modules that hold ``slow`` tests run first, the rest keep their order (a stable sort; a
    module's tests stay together and in order). With ``--dist loadfile --no-loadscope-reorder``
    (pyproject addopts) xdist hands out the modules in this order, so the short modules fill the
    end of the run on every worker. xdist's own order (most tests first) put a three-test module of
    ~3 minutes last, on one core, with the other worker idle (BENCHMARKS.md, "Test suite wall time")."""
    slow = {item.nodeid.split("::", 1)[0] for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.nodeid.split("::", 1)[0] not in slow)


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
