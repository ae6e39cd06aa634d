"""What the stages of one run share: the run context, the stage record, and the torchrun hand-off."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from audit.pipeline import config as C
from audit.pipeline.rundir import RunDir
from generators import distributed, registry


@dataclass
class RunContext:
    """What stages share: the resolved config, the run directory and stage outputs."""

    cfg: C.RunConfig
    run_dir: RunDir
    entry: registry.GeneratorEntry
    timing: dict[str, float] = field(default_factory=dict)
    artefacts: dict[str, Any] = field(default_factory=dict)
    use_cache: bool = True


@dataclass(frozen=True)
class Stage:
    """A pipeline stage. ``run`` does the work and writes its outputs atomically; ``load``
    restores its outputs into the context when ``--resume`` skips a finished stage."""

    name: str
    run: Callable[[RunContext], dict[str, Any] | None]
    load: Callable[[RunContext], None] | None = None


def release_fit_workers(ctx: RunContext, train: bool = False, resume: bool = False) -> None:
    """Rank 0 tells the other ranks (once) whether to join the fit; a no-op in one process."""

    if distributed.current() is None or ctx.artefacts.get("fit_workers_released"):
        return
    distributed.broadcast({"train": train, "resume": resume})
    ctx.artefacts["fit_workers_released"] = True
