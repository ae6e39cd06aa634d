"""How many CPU cores this process may use.

``os.cpu_count()`` counts the host's cores, not the ones a process may run on: under ``taskset``,
a Slurm or Kubernetes CPU set, or a container limited by cpuset, a 64-core node may grant 4. Thread
pools sized from it (torch intra-op threads, onnxruntime sessions, worker processes) then put many
busy threads on few cores, and OpenMP's spin-waiting makes that much slower than one thread per
core. Every default thread or worker count in the project comes from :func:`usable_cores`, the
scheduler's CPU affinity mask (``os.sched_getaffinity``; Linux), or ``os.cpu_count()`` where the
platform has no affinity call (macOS, Windows).
"""

from __future__ import annotations

import os


def core_ids() -> list[int]:
    """The ids of the cores this process may run on, sorted (at least one)."""
    try:
        ids = sorted(os.sched_getaffinity(0))
    except AttributeError:  # no affinity call on this platform: every core of the host
        ids = list(range(os.cpu_count() or 1))
    return ids or [0]


def usable_cores() -> int:
    """The number of cores this process may run on (at least 1)."""
    return len(core_ids())
