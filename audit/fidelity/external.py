"""A feature space the user supplies: a TorchScript file (e.g. the standard FID Inception network).

cmr-audit cannot download ImageNet weights, so standard Inception FID (Heusel et al. 2017) or
any other reference feature space is computed only from a local file the user provides:
``--set audit.feature_extractor=/path/inception.pt``. The file is a TorchScript module
(``torch.jit.save``) that maps

    ``(N, 3, S, S)`` float32 in [0, 1]  ->  ``(N, D)`` features (``(N, D, 1, 1)`` is squeezed),

where ``S = audit.feature_extractor_size`` (299 for Inception-v3): each grayscale image is
resized (bilinear, antialiased) and replicated to three channels; any normalisation the
network expects must live inside the module. Numbers in this space are labelled with the file's
name and sha256 and are never mixed with the judge-feature ones. To make such a file from the
torch-fidelity Inception used by most FID code, trace its feature extractor on a machine that
has it and ``torch.jit.save`` the traced module (see docs/export_samples.md).

The file is code, so its hash must be pinned. TorchScript is not arbitrary Python, but it is a
program: ``torch.jit.load`` runs the module's TorchScript (``__setstate__`` methods, for one) and the
audit runs its ``forward`` on every image, inside the audit process, with the user's rights and
every operator registered in it. A file swapped on a shared disk, or a "FID network" from an
untrusted source, would run there unnoticed. So a run needs ``audit.feature_extractor_sha256``
(the first field of ``sha256sum FILE``): :func:`read_pinned` refuses a missing, malformed or
different hash, and it is applied twice, before any stage runs (``audit.pipeline.run._check_inputs``) and
here, on the very bytes handed to ``torch.jit.load`` (read once into memory), so a file replaced
between the check and the load is not loaded either (no time-of-check/time-of-use gap).
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from audit.core.errors import UserError

log = logging.getLogger(__name__)

SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


def read_pinned(path: str | Path, sha256: str) -> tuple[bytes, str]:
    """The bytes of the extractor file ``path`` and their sha256, if it equals the pinned ``sha256``
    (64 hex digits, any case); otherwise one-line :class:`UserError` naming the file, the expected
    and the actual hash. Loading the file runs its code, so there is no default: see the module doc."""
    p = Path(path).expanduser()
    expected = str(sha256 or "").strip()
    if expected and not SHA256_HEX.fullmatch(expected):
        raise UserError(f"audit.feature_extractor_sha256: {expected!r} is not a sha256 "
                        "(64 hexadecimal digits, the first field of `sha256sum FILE`)")
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise UserError(f"audit.feature_extractor: {p}: no such file") from None
    except OSError as exc:
        raise UserError(f"audit.feature_extractor: {p}: cannot read: {exc.strerror or exc}") from None
    actual = hashlib.sha256(data).hexdigest()
    if not expected:
        raise UserError(f"audit.feature_extractor: {p}: no sha256 pinned (expected: none given, actual: {actual}); "
                        "loading a TorchScript file runs its code: check where the file came from, then pin it "
                        "with --set audit.feature_extractor_sha256=<the first field of `sha256sum FILE`>")
    if actual != expected.lower():
        raise UserError(f"audit.feature_extractor: {p}: sha256 mismatch (expected {expected.lower()}, actual {actual}): "
                        "not the file pinned by audit.feature_extractor_sha256, refusing to load it")
    return data, actual


class ExternalFeatures:
    """A loaded TorchScript feature extractor with its identity (file name + sha256). ``sha256`` is
    the pinned hash (:func:`read_pinned`); the module is loaded from the bytes that were hashed."""

    def __init__(self, path: str | Path, size: int = 299, device: str = "cpu", batch_size: int = 32, *,
                 sha256: str) -> None:
        p = Path(path).expanduser()
        if size < 8:
            raise UserError(f"audit.feature_extractor_size must be >= 8, got {size}")
        data, self.sha256 = read_pinned(p, sha256)
        try:
            self.module = torch.jit.load(io.BytesIO(data), map_location=device).eval()
        except Exception as exc:  # noqa: BLE001 - any load failure is the file's problem
            raise UserError(f"audit.feature_extractor: {p}: not a TorchScript module ({str(exc).splitlines()[0]})") from None
        self.path, self.size, self.device, self.batch_size = p, int(size), device, max(1, int(batch_size))
        self.label = f"external features ({p.name}, sha256 {self.sha256[:12]}, input {self.size}x{self.size}x3)"

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        """``(N, H, W)`` images in [0, 1] -> ``(N, D)`` float64 features."""
        arr = np.asarray(images, np.float32)
        if arr.ndim != 3 or len(arr) == 0:
            raise UserError(f"external features: expected (N, H, W) images, got shape {arr.shape}")
        out = []
        for lo in range(0, len(arr), self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(arr[lo:lo + self.batch_size])).unsqueeze(1).to(self.device)
            x = F.interpolate(x.clamp(0, 1), size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
            try:
                y = self.module(x.expand(-1, 3, -1, -1).contiguous())
            except Exception as exc:  # noqa: BLE001
                raise UserError(f"audit.feature_extractor: {self.path.name} failed on a (B, 3, {self.size}, {self.size}) "
                                f"batch: {str(exc).splitlines()[0]}") from None
            if isinstance(y, (tuple, list)):
                y = y[0]
            y = y.reshape(y.shape[0], -1) if y.dim() == 4 and y.shape[2:] == (1, 1) else y
            if y.dim() != 2 or y.shape[0] != x.shape[0]:
                raise UserError(f"audit.feature_extractor: {self.path.name} returned shape {tuple(y.shape)}; "
                                "expected (N, D) features")
            out.append(y.double().cpu().numpy())
        feats = np.concatenate(out)
        if not np.isfinite(feats).all():
            raise UserError(f"audit.feature_extractor: {self.path.name} returned NaN or Inf features")
        return feats
