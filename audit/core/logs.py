"""Logging set-up: rich console output on stderr plus a plain log file in the run directory."""

from __future__ import annotations

import logging
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler

_FMT_FILE = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_state = {"quiet": False}


def setup_logging(verbosity: int = 0) -> None:
    """Configure the root logger: ``-1`` quiet (warnings), ``0`` info, ``>=1`` debug."""
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    _state["quiet"] = verbosity < 0
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_cmr_console", False):
            root.removeHandler(h)
    handler = RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False, markup=False)
    handler.setLevel(level)
    handler._cmr_console = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(min(level, logging.INFO))
    for noisy in ("matplotlib", "PIL", "urllib3", "filelock", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def add_file_handler(path: str | Path) -> logging.Handler:
    """Append the run's log (INFO and above) to ``path``; returns the handler to remove later."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(_FMT_FILE))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    if root.getEffectiveLevel() > logging.INFO:
        root.setLevel(logging.INFO)  # the file always gets INFO; console handlers keep their own level
    root.addHandler(handler)
    return handler


def progress_disabled() -> bool:
    """True under ``--quiet``: progress bars (tqdm) pass this as ``disable=``."""
    return _state["quiet"]
