"""Environment capture for ``env.json``: versions, hardware, git commit -- never the hostname.

Everything here is read-only and cheap; a missing optional package is recorded as ``null``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from audit.core.cpus import usable_cores

_PACKAGES = (
    "cmr-audit", "torch", "monai", "opacus", "numpy", "scipy", "onnxruntime", "onnx",
    "scikit-learn", "torchmetrics", "nibabel", "safetensors", "dp-accounting",
)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu() -> list[str]:
    try:
        import torch  # lazy: torch only when a model runs

        if torch.cuda.is_available():
            return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - a broken CUDA setup is still "no GPU" for provenance
        return []
    return []


def git_state(path: str | Path | None = None) -> dict[str, Any]:
    """Commit and dirty flag of the git checkout holding ``path`` (the package source by default)."""
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return {"commit": None, "dirty": None}
        dirty = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        )
        return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def environment() -> dict[str, Any]:
    """The ``env.json`` document (without the data hash, which the cohort stage adds)."""
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(terse=True),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable_cores(),  # the CPU affinity (taskset, Slurm/cgroup cpusets): what the thread pools use
        "gpus": _gpu(),
        "packages": {name: _version(name) for name in _PACKAGES},
        "git": git_state(),
    }


def sha256_json(obj: Any) -> str:
    """Stable hash of a JSON-able object (sorted keys, no whitespace)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
