"""The judge pass, once per distinct image: segmentation and encoder features cached by image hash.

The judge is the slowest part of every audit (BENCHMARKS.md "Judge network") and the same
real images (the ``test`` and ``holdout`` splits) are judged again by every generator of a tox
matrix and by every resumed run. :class:`JudgeMemo` runs :meth:`Judge.segment_and_features`
(labels and features from one forward pass) only for images it has not seen, and keeps the
result on disk under ``$CMR_AUDIT_CACHE/judge/memo/``.

The key is the SHA-256 of everything that determines the output: the judge model file (fp32
hash, precision and, for int8, the quantised file's own cache key), the field-of-view policy,
the pixel spacing, the array shape and the raw float32 bytes. One small ``.npz`` per image,
written atomically; an unreadable entry is logged, recomputed and replaced.
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from audit.core.atomic import atomic_save_npz
from audit.core.paths import cache_dir

from .fetch import JUDGE_SHA256
from .network import Judge, validate_slices
from .preprocess import check_spacing

__all__ = ["JudgeMemo"]

log = logging.getLogger(__name__)


class JudgeMemo:
    """Memoised :meth:`Judge.segment_and_features`.

    >>> memo = JudgeMemo(Judge(precision="int8"))               # doctest: +SKIP
    >>> labels, feats = memo(images, spacing=(1.5, 1.5))        # (N,H,W) -> (N,H,W) uint8, (N,288)
    """

    def __init__(self, judge: Judge, root: str | Path | None = None) -> None:
        self.judge = judge
        self.root = Path(root) if root is not None else cache_dir("judge", "memo")
        ident = f"{JUDGE_SHA256}|{judge.precision}|{Path(judge.model_path).name}|{judge.fov}"
        if getattr(judge, "backend", "onnxruntime") != "onnxruntime":  # the same graph, other kernels
            ident += f"|{judge.backend}"
        self._prefix = hashlib.sha256(ident.encode()).digest()
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"JudgeMemo({self.judge!r}, root={self.root})"

    def key(self, image: np.ndarray, spacing: Sequence[float]) -> str:
        h = hashlib.sha256(self._prefix)
        h.update(np.asarray(spacing, np.float64).tobytes())
        h.update(repr(image.shape).encode())
        h.update(np.ascontiguousarray(image, np.float32).tobytes())
        return h.hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def _read(self, path: Path, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray] | None:
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                labels, feats = z["labels"], z["features"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            log.warning("judge cache entry %s is unreadable (%s): recomputing it", path, exc)
            return None
        if labels.shape != shape or labels.dtype != np.uint8 or feats.ndim != 1:
            log.warning("judge cache entry %s has unexpected content: recomputing it", path)
            return None
        return labels, feats

    def __call__(self, images: np.ndarray, spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """Labels ``(N,H,W)`` uint8 and features ``(N,F)`` float32 for ``(N,H,W)`` slices."""
        arr = validate_slices(images, what="judge input", ndims=(3,))
        sp = check_spacing(spacing)
        n, shape = len(arr), arr.shape[1:]
        keys = [self.key(a, sp) for a in arr]
        labels = np.zeros(arr.shape, np.uint8)
        found: dict[int, np.ndarray] = {}
        missing: list[int] = []
        for i, k in enumerate(keys):
            got = self._read(self._path(k), shape)
            if got is None:
                missing.append(i)
            else:
                labels[i], found[i] = got
        self.hits += n - len(missing)
        self.misses += len(missing)
        if missing:
            log.info("judge: %d of %d images not in the cache, segmenting them", len(missing), n)
            new_labels, new_feats = self.judge.segment_and_features(arr[missing], spacing=sp)
            for j, i in enumerate(missing):
                labels[i], found[i] = new_labels[j], new_feats[j]
                path = self._path(keys[i])
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_save_npz(path, compressed=False, labels=new_labels[j], features=new_feats[j])
        dims = {f.shape[0] for f in found.values()}
        if len(dims) != 1:  # pragma: no cover - would mean two judge graphs share a key
            raise RuntimeError(f"judge cache holds features of different sizes {sorted(dims)}")
        feats = np.stack([found[i] for i in range(n)]).astype(np.float32, copy=False)
        return labels, feats
