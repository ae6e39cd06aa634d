"""Per-subject work in worker processes (phantom generation, reading + preprocessing a cohort).

Each subject's result is a function of its inputs alone, so the work is split over ``spawn``
processes and gathered in subject order: the output is identical for any number of workers.
``spawn`` rather than ``fork``: the parent may hold torch/OpenMP thread pools that a fork would
copy mid-state. A worker costs about a second to start (numpy/scipy/nibabel imports), so small
jobs stay in the calling process.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from audit.core.cpus import usable_cores

log = logging.getLogger(__name__)


def spawn_works() -> bool:
    """Whether ``spawn`` workers can start: they re-import ``__main__`` from its file, which a
    script fed on stdin (``__file__ == "<stdin>"``) does not have."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return path is None or getattr(main, "__spec__", None) is not None or Path(path).is_file()


def default_workers(n_items: int, per_worker: int = 4) -> int:
    """The usable cores, at most one per ``per_worker`` items."""
    return max(1, min(usable_cores(), n_items // per_worker))


def ordered_map(fn: Callable[..., Any], items: Sequence[tuple], workers: int | None = None) -> Iterator[Any]:
    """``fn(*item)`` for every item, yielded in item order; in ``workers`` processes (default
    :func:`default_workers`; 1 = here). ``fn`` must be a module-level function."""
    workers = default_workers(len(items)) if workers is None else max(1, int(workers))
    if workers > 1 and not spawn_works():
        log.info("the main module cannot be re-imported by worker processes; working in one process")
        workers = 1
    if workers == 1:
        for item in items:
            yield fn(*item)
        return

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(fn, *item) for item in items]
        try:
            for f in futures:
                yield f.result()
        except BaseException:
            for f in futures:
                f.cancel()
            raise
