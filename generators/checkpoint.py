"""Checkpoints: ``config.json`` + ``*.safetensors`` -- no pickles, ever.

Layout under a checkpoint root (``<run>/checkpoints``)::

    step-000250/
        config.json          {"format", "generator", "model_config", "step", "extra", "sha256"}
        model.safetensors    weights (and EMA weights under the prefix ``ema.``)
        state.safetensors    optimiser tensors and RNG states (for --resume)
        state.json           optimiser hyper-parameters, scalar state, counters
    latest                   text file naming the newest complete step directory

A checkpoint directory is written under a temporary name and renamed into place when
complete; ``latest`` is replaced atomically afterwards. An interrupted save therefore
never leaves a half checkpoint marked as latest. Loading checks the generator name and
model config (an incompatible checkpoint is a clear error), verifies every file against the
sha256 that ``config.json`` records (``"sha256": {file: digest}``; a mismatch is an error naming
the file) and reads tensors with ``safetensors`` (a corrupted file is a clear error, not a crash).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save_file

from audit.core.atomic import atomic_dir, atomic_write_json, atomic_write_text
from audit.core.errors import UserError
from audit.core.provenance import sha256_file

FORMAT = "cmr-audit/checkpoint/v1"
#: the files whose sha256 ``config.json`` records and :func:`load` verifies
HASHED = ("model.safetensors", "state.safetensors", "state.json")


@dataclass
class Checkpoint:
    path: Path
    generator: str
    model_config: dict[str, Any]
    step: int
    weights: dict[str, torch.Tensor]
    state_tensors: dict[str, torch.Tensor]
    state: dict[str, Any]
    extra: dict[str, Any]


def _contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


def save(
    root: str | Path,
    *,
    generator: str,
    model_config: dict[str, Any],
    step: int,
    weights: dict[str, torch.Tensor],
    state_tensors: dict[str, torch.Tensor] | None = None,
    state: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    keep: int = 2,
) -> Path:
    """Write a complete checkpoint directory, then point ``latest`` at it."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:06d}"
    final = root / name
    with atomic_dir(final) as staging:
        save_file(_contiguous(weights), str(staging / "model.safetensors"))
        save_file(_contiguous(state_tensors or {}), str(staging / "state.safetensors"))
        atomic_write_json(staging / "state.json", state or {})
        digests = {f: sha256_file(staging / f) for f in HASHED}
        atomic_write_json(
            staging / "config.json",
            {"format": FORMAT, "generator": generator, "model_config": model_config, "step": int(step), "extra": extra or {},
             "sha256": digests},
        )
    atomic_write_text(root / "latest", name + "\n")
    _prune(root, keep, current=name)
    return final


def _prune(root: Path, keep: int, current: str) -> None:
    steps = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in steps[:-keep] if keep > 0 else []:
        if old.name != current:
            shutil.rmtree(old, ignore_errors=True)


def latest(root: str | Path) -> Path | None:
    """The newest complete checkpoint directory, or ``None``."""
    root = Path(root)
    pointer = root / "latest"
    if pointer.is_file():
        cand = root / pointer.read_text("utf-8").strip()
        if (cand / "config.json").is_file():
            return cand
    # a checkpoint root given directly (config.json at top level)
    if (root / "config.json").is_file():
        return root
    return None


def load(path: str | Path, *, generator: str | None = None, model_config: dict[str, Any] | None = None,
         upgrade: Callable[[dict], dict] | None = None) -> Checkpoint:
    """Load a checkpoint directory (or a root with ``latest``), checking compatibility: with
    ``model_config``, the stored model config must equal it (after ``upgrade``, which brings a
    config written by an older version to today's form)."""
    path = Path(path)
    found = latest(path)
    if found is None:
        raise UserError(f"{path}: no checkpoint (config.json) found")
    path = found
    try:
        cfg = json.loads((path / "config.json").read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path / 'config.json'}: unreadable checkpoint config ({exc})") from None
    if cfg.get("format") != FORMAT:
        raise UserError(f"{path}: not a cmr-audit checkpoint (format {cfg.get('format')!r}, expected {FORMAT!r})")
    if generator is not None and cfg.get("generator") != generator:
        raise UserError(f"{path}: incompatible checkpoint: written by generator {cfg.get('generator')!r}, not {generator!r}")
    stored = cfg.get("model_config")
    if upgrade is not None and model_config is not None and isinstance(stored, dict):
        stored = upgrade(stored)
    if model_config is not None and stored != json.loads(json.dumps(model_config)):
        stored = stored or {}
        differ = sorted(k for k in set(stored) | set(model_config) if stored.get(k) != model_config.get(k))
        raise UserError(f"{path}: incompatible checkpoint: model config differs in {', '.join(map(str, differ)) or 'structure'}")
    blobs = _verified_files(path, cfg.get("sha256"))
    tensors = {}
    for fname in ("model.safetensors", "state.safetensors"):
        try:
            tensors[fname] = load_bytes(blobs[fname])
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise UserError(f"{path / fname}: corrupted safetensors file ({exc})") from None
    try:
        state = json.loads(blobs["state.json"].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path / 'state.json'}: unreadable checkpoint state ({exc})") from None
    return Checkpoint(
        path=path,
        generator=str(cfg.get("generator")),
        model_config=cfg.get("model_config") or {},
        step=int(cfg.get("step", 0)),
        weights=tensors["model.safetensors"],
        state_tensors=tensors["state.safetensors"],
        state=state,
        extra=cfg.get("extra") or {},
    )


def _verified_files(path: Path, digests: Any) -> dict[str, bytes]:
    """The bytes of every file in :data:`HASHED`, each checked against the sha256 that
    :func:`save` stored in ``config.json`` (read once, hashed and parsed from the same bytes).

    A mismatch is a :class:`UserError` naming the file: a bit flip in a weight file would
    otherwise load silently and surface later as NaN samples. A checkpoint without digests
    (written before they existed, or with them removed) cannot be verified and is refused the same
    way: a cache treats it as a corrupt entry and rebuilds it, a run checkpoint is an error.
    """
    blobs: dict[str, bytes] = {}
    for fname in HASHED:
        try:
            blobs[fname] = (path / fname).read_bytes()
        except FileNotFoundError:
            raise UserError(f"{path / fname}: missing from the checkpoint") from None
        except OSError as exc:
            raise UserError(f"{path / fname}: unreadable ({exc.strerror or exc})") from None
    if digests is None:
        raise UserError(f"{path / 'config.json'}: no sha256 digests, so the checkpoint cannot be verified "
                        "(written by an older cmr-audit?); train it again")
    if not isinstance(digests, dict):
        raise UserError(f"{path / 'config.json'}: 'sha256' must map file names to digests")
    for fname, data in blobs.items():
        got = hashlib.sha256(data).hexdigest()
        if digests.get(fname) != got:
            raise UserError(f"{path / fname}: sha256 mismatch (stored {str(digests.get(fname))[:16]}..., "
                            f"file {got[:16]}...): the checkpoint is corrupt")
    return blobs


# --------------------------------------------------------------------------- optimiser state


def optimizer_to_flat(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``opt.state_dict()`` into tensors (for safetensors) and JSON-able scalars."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {"param_groups": sd["param_groups"], "state": {}}
    for pid, pstate in sd["state"].items():
        entry: dict[str, Any] = {}
        for key, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.{pid}.{key}"] = value
            else:
                entry[key] = value
        scalars["state"][str(pid)] = entry
    return tensors, {prefix: scalars}


def optimizer_from_flat(opt: torch.optim.Optimizer, prefix: str, tensors: dict[str, torch.Tensor], scalars: dict[str, Any]) -> None:
    """Inverse of :func:`optimizer_to_flat`."""
    if prefix not in scalars:
        raise UserError(f"checkpoint has no optimiser state '{prefix}'; cannot resume")
    saved = scalars[prefix]
    state: dict[int, dict[str, Any]] = {int(pid): dict(entry) for pid, entry in saved["state"].items()}
    for key, value in tensors.items():
        if key.startswith(prefix + "."):
            pid, name = key[len(prefix) + 1:].split(".", 1)
            state.setdefault(int(pid), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": saved["param_groups"]})
