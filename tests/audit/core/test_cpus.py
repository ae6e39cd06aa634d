"""``usable_cores`` follows the CPU affinity mask, not the host's core count, and every default
thread / worker count in the project follows it (a 64-core node that grants 2 cores)."""

from __future__ import annotations

import os

import pytest

from audit.core import cpus


@pytest.fixture
def two_of_64(monkeypatch):
    """The process may run on cores {3, 5} of a 64-core host (taskset, a Slurm or cgroup cpuset)."""
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3, 5}, raising=False)


def test_usable_cores_is_the_affinity_mask(two_of_64):
    assert cpus.usable_cores() == 2


def test_without_an_affinity_call_the_host_count(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert cpus.usable_cores() == 6
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # undeterminable: one core, never 0
    assert cpus.usable_cores() == 1


def test_default_thread_and_worker_counts_follow_the_mask(two_of_64):
    import torch

    from audit.core.provenance import environment
    from cohorts.judge.network import default_threads
    from cohorts.parallel import default_workers
    from generators.mask2d import set_threads

    assert default_threads() == 2
    assert default_workers(1000) == 2 and default_workers(4) == 1
    before = torch.get_num_threads()
    try:
        set_threads(0)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    env = environment()
    assert env["cpu_count"] == 64 and env["usable_cores"] == 2
