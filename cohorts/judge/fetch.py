"""Obtain the judge network's ONNX file and check that it is the one we validated.

The judge is ``myopari/Resources/tiramisu_acdc_fp32.onnx`` from the PyPI wheel
``myopari==0.1.6`` (MIT licence; input recipe in :mod:`.preprocess`). We download
the wheel with ``pip download --no-deps`` (its own dependencies are heavy and unused), read
the one member out of the zip, verify its sha256 and store it atomically in
``cache_dir("judge")``. ``$CMR_AUDIT_JUDGE=/path.onnx`` points at a local copy instead
(still hash-checked, because every Dice figure in the project is only comparable if it
comes from exactly this network).

Failure to obtain the file raises :class:`JudgeUnavailable` whose message starts with
``"judge unavailable: "`` so that anatomy metrics can record the metric as unavailable with
the reason (never as 0).
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from audit.core.atomic import atomic_write_bytes
from audit.core.errors import UserError
from audit.core.locks import exclusive
from audit.core.paths import cache_dir
from audit.core.provenance import sha256_file  # re-exported: cohorts.judge.sha256_file

__all__ = [
    "JUDGE_SHA256",
    "JUDGE_PACKAGE",
    "JUDGE_MEMBER",
    "JUDGE_FILENAME",
    "ENV_JUDGE",
    "JudgeUnavailable",
    "sha256_file",
    "fetch_judge",
]

log = logging.getLogger(__name__)

JUDGE_PACKAGE = "myopari==0.1.6"
JUDGE_MEMBER = "myopari/Resources/tiramisu_acdc_fp32.onnx"
JUDGE_FILENAME = "tiramisu_acdc_fp32.onnx"
JUDGE_SHA256 = "794d775a4977e714f4c4ef081c536ab371fe3d36ea682c7ce6014b52c8df0974"
ENV_JUDGE = "CMR_AUDIT_JUDGE"
_PIP_TIMEOUT_S = 600


class JudgeUnavailable(UserError):
    """The judge network cannot be obtained here; the message starts with ``judge unavailable:``."""

    def __init__(self, reason: str):
        super().__init__(f"judge unavailable: {reason}")


def _check_hash(path: Path, expected: str) -> None:
    got = sha256_file(path)
    if got != expected:
        raise UserError(f"{path}: sha256 mismatch: expected {expected}, got {got}; not the judge network this project validated")


def _download_wheel(dest: Path) -> Path:
    """``pip download --no-deps myopari==0.1.6 -d dest``; return the wheel path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "--only-binary=:all:", JUDGE_PACKAGE, "-d", str(dest)]
    log.info("downloading the judge wheel: %s", " ".join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise JudgeUnavailable(f"pip download {JUDGE_PACKAGE} failed: {exc}") from exc
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise JudgeUnavailable(f"pip download {JUDGE_PACKAGE} failed (exit {proc.returncode}): {last}")
    wheels = sorted(dest.glob("myopari-*.whl"))
    if not wheels:
        raise JudgeUnavailable(f"pip download {JUDGE_PACKAGE} produced no wheel in {dest}")
    return wheels[0]


def _extract_member(wheel: Path) -> bytes:
    try:
        with zipfile.ZipFile(wheel) as zf:
            return zf.read(JUDGE_MEMBER)
    except KeyError as exc:
        raise JudgeUnavailable(f"{wheel.name} has no member {JUDGE_MEMBER}") from exc
    except (zipfile.BadZipFile, OSError) as exc:
        raise JudgeUnavailable(f"{wheel}: not a readable wheel: {exc}") from exc


def fetch_judge(*, force: bool = False) -> Path:
    """Return the path of the verified fp32 judge ONNX file, downloading it on first use.

    Order: ``$CMR_AUDIT_JUDGE`` if set (must exist and match the hash, else :class:`UserError`);
    otherwise the cached copy in ``cache_dir("judge")`` if its hash matches; otherwise the
    wheel is downloaded from PyPI. Raises :class:`JudgeUnavailable` if it cannot be obtained.
    """
    override = os.environ.get(ENV_JUDGE)
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise JudgeUnavailable(f"{ENV_JUDGE}={path}: no such file")
        _check_hash(path, JUDGE_SHA256)
        return path

    target = cache_dir("judge") / JUDGE_FILENAME
    if target.is_file() and not force and sha256_file(target) == JUDGE_SHA256:
        return target
    # one process downloads while concurrent runs wait for it and then find the verified file
    with exclusive(target, what="the judge network"):
        if target.is_file() and not force:
            if sha256_file(target) == JUDGE_SHA256:
                return target
            log.warning("%s: cached judge has the wrong sha256; downloading it again", target)
        return _download_verified(target)


def _download_verified(target: Path) -> Path:
    """Download the wheel, check the member's sha256 and write it atomically to ``target``."""
    with tempfile.TemporaryDirectory(prefix="cmr-audit-judge-") as tmp:
        wheel = _download_wheel(Path(tmp))
        data = _extract_member(wheel)
    got = hashlib.sha256(data).hexdigest()
    if got != JUDGE_SHA256:
        raise UserError(f"{JUDGE_MEMBER} in {JUDGE_PACKAGE}: sha256 mismatch: expected {JUDGE_SHA256}, got {got}")
    atomic_write_bytes(target, data)
    log.info("judge network stored at %s", target)
    return target
