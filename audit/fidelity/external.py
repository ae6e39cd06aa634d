"""A feature space the user supplies: a TorchScript file (e.g. the standard FID Inception network).

cmr-audit cannot download ImageNet weights, so standard Inception FID (Heusel et al. 2017) or
any other reference feature space is computed only from a local file the user provides:
``--set audit.feature_extractor=/path/inception.pt``. The file is a TorchScript module
(``torch.jit.save``; TorchScript is loaded without unpickling Python objects) that maps

    ``(N, 3, S, S)`` float32 in [0, 1]  ->  ``(N, D)`` features (``(N, D, 1, 1)`` is squeezed),

where ``S = audit.feature_extractor_size`` (299 for Inception-v3): each grayscale image is
resized (bilinear, antialiased) and replicated to three channels; any normalisation the
network expects must live inside the module. Numbers in this space are labelled with the file's
name and sha256 and are never mixed with the judge-feature ones. To make such a file from the
torch-fidelity Inception used by most FID code, trace its feature extractor on a machine that
has it and ``torch.jit.save`` the traced module (see docs/export_samples.md).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from audit.errors import UserError

log = logging.getLogger(__name__)


class ExternalFeatures:
    """A loaded TorchScript feature extractor with its identity (file name + sha256)."""

    def __init__(self, path: str | Path, size: int = 299, device: str = "cpu", batch_size: int = 32) -> None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise UserError(f"audit.feature_extractor: {p}: no such file")
        if size < 8:
            raise UserError(f"audit.feature_extractor_size must be >= 8, got {size}")
        self.sha256 = hashlib.sha256(p.read_bytes()).hexdigest()
        try:
            self.module = torch.jit.load(str(p), map_location=device).eval()
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
