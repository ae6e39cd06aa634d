"""Run directories: ``runs/<UTC timestamp>-<generator>/`` (or ``--out``).

Layout (filled stage by stage; every file and ``--resume`` in ``docs/run_directory.md``)::

    config.json      fully resolved config (seed and preset included)
    env.json         versions, hardware, git commit, data hash (no hostname)
    run.log          the log of every invocation on this directory
    state.json       which stages finished (what ``--resume`` skips), the status and
                     ``current_stage`` (the stage in progress; a killed run keeps it)
    splits.json      subject-level splits with the data hash
    checkpoints/     config.json + *.safetensors (+ optimiser/EMA/RNG state)
    samples.npz      the synthetic sample set (NPZ contract)
    results.json     every figure (schema cmr-audit/results/v1)
    report.html      the self-contained report

Rules: a non-empty directory is never reused without ``--resume`` (continue, same config) or
``--force`` (start afresh; only a directory that holds a cmr-audit ``config.json`` is ever
cleared). Every file goes through :mod:`audit.core.atomic`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from audit.core.atomic import atomic_write_json
from audit.core.errors import UserError

log = logging.getLogger(__name__)

RUNS_ROOT = Path("runs")


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _check_writable(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"cannot write to run directory {path}: {exc.strerror or exc}") from None


def _check_names(path: Path) -> None:
    """Refuse a path with a component longer than its file system allows (``PC_NAME_MAX``, 255
    bytes on most), before ``exists()`` raises ``ENAMETOOLONG`` from deep inside pathlib."""
    probe = path.absolute()
    while probe != probe.parent:  # the nearest existing ancestor tells the file system's limit
        try:
            if probe.is_dir():
                break
        except OSError:  # ENAMETOOLONG itself (Python 3.11's pathlib raises it)
            pass
        probe = probe.parent
    try:
        name_max = os.pathconf(probe, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    for part in path.parts:
        size = len(os.fsencode(part))
        if size > name_max:
            shown = part if len(part) <= 40 else part[:37] + "..."
            raise UserError(f"run directory: the name '{shown}' is {size} bytes, longer than the {name_max} "
                            "the file system allows; choose a shorter --out")


@dataclass
class RunDir:
    """A run directory and its bookkeeping files."""

    path: Path

    # ---- well-known files
    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def env_path(self) -> Path:
        return self.path / "env.json"

    @property
    def log_path(self) -> Path:
        return self.path / "run.log"

    @property
    def state_path(self) -> Path:
        return self.path / "state.json"

    @property
    def results_path(self) -> Path:
        return self.path / "results.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def run_id(self) -> str:
        return self.path.name

    # ---- creation
    @classmethod
    def prepare(
        cls,
        out: str | Path | None,
        generator: str,
        *,
        resume: bool = False,
        force: bool = False,
        runs_root: str | Path = RUNS_ROOT,
    ) -> "RunDir":
        """Create (or reopen for ``resume``) the run directory, enforcing the reuse rules."""
        if resume and force:
            raise UserError("--resume and --force contradict each other; choose one")
        if out is None and resume:
            path = cls.latest(generator, runs_root)
            if path is None:
                raise UserError(f"--resume: no unfinished run of generator '{generator}' under {runs_root}/; pass --out RUN_DIR")
        elif out is None:
            path = Path(runs_root) / f"{utc_stamp()}-{generator}"
        else:
            path = Path(out)
        _check_names(path)
        try:
            if path.exists() and not path.is_dir():
                raise UserError(f"run directory {path} exists and is not a directory")
            non_empty = path.is_dir() and any(path.iterdir())
        except OSError as exc:  # a path too long in all (ENAMETOOLONG), a folder we may not list
            raise UserError(f"run directory {path}: {exc.strerror or exc}") from None
        if resume:
            if not (path / "config.json").is_file():
                raise UserError(f"--resume: {path} is not a cmr-audit run directory (no config.json)")
        elif non_empty:
            if not force:
                raise UserError(f"run directory {path} is not empty; pass --resume to continue it or --force to start it afresh")
            if not (path / "config.json").is_file():
                raise UserError(f"--force refuses to clear {path}: it is not a cmr-audit run directory (no config.json)")
            log.warning("--force: clearing %s", path)
            for child in path.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        _check_writable(path)
        return cls(path)

    @staticmethod
    def latest(generator: str, runs_root: str | Path = RUNS_ROOT) -> Path | None:
        """Most recent run directory of ``generator`` that has not finished (no results.json)."""
        root = Path(runs_root)
        if not root.is_dir():
            return None
        candidates = sorted(
            p for p in root.glob(f"*-{generator}") if p.is_dir() and (p / "config.json").is_file()
            and not (p / "results.json").is_file()
        )
        return candidates[-1] if candidates else None

    # ---- state
    def state(self) -> dict[str, Any]:
        if not self.state_path.is_file():
            return {"stages": {}}
        try:
            return json.loads(self.state_path.read_text("utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"{self.state_path}: unreadable run state ({exc}); start afresh with --force") from None

    def stage_done(self, name: str) -> bool:
        return name in self.state().get("stages", {})

    def mark_stage(self, name: str, **info: Any) -> None:
        state = self.state()
        state.setdefault("stages", {})[name] = {"finished_utc": utc_now(), **info}
        if state.get("current_stage") == name:
            state["current_stage"] = None  # between stages: nothing in progress
        atomic_write_json(self.state_path, state)

    def set_status(self, status: str, **info: Any) -> None:
        state = self.state()
        state["status"] = status
        state["status_utc"] = utc_now()
        state.update(info)
        atomic_write_json(self.state_path, state)
