"""The judge: ONNX Runtime on the CPU, slices in, ACDC label maps (and encoder features) out.

Inputs are 2D short-axis slices in nibabel array order (see :mod:`cohorts.judge.preprocess`
for the exact convention and recipe). Slices run one at a time: larger batches are not faster
on a CPU, and batch 1 keeps memory flat for long cine stacks.

``precision="int8"`` uses a statically quantised copy built on first use from calibration
slices (:mod:`cohorts.judge.graph`) and cached next to the fp32 file, keyed by the fp32 hash,
the quantisation config and the calibration data identity. It is built once under a lock
(concurrent runs wait and reuse it) and its sha256 is stored beside it: a graph that no longer
matches is rebuilt, never trusted.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np
import onnx
import torch
from tqdm.auto import tqdm

from audit.core.atomic import atomic_write_text
from audit.core.cpus import usable_cores
from audit.core.errors import UserError
from audit.core.locks import exclusive
from audit.core.logs import progress_disabled
from audit.core.paths import cache_dir
from cohorts.phantom.writer import PHANTOM_VERSION

from .calibration import LabelledSlices, calibration_inputs, phantom_slices
from .fetch import JUDGE_SHA256, fetch_judge, sha256_file
from .graph import FEATURE_OUTPUT, build_int8, int8_cache_key, prepared_fp32_bytes
from .preprocess import DEFAULT_FOV, FovMode, check_spacing, from_network, prepare_batch
from .torch_graph import TorchGraph

__all__ = ["Judge", "Precision", "int8_model_path", "validate_slices", "default_threads"]

log = logging.getLogger(__name__)

Precision = Literal["fp32", "int8"]
#: Identity of the default calibration data (phantom ED/ES slices); part of the int8 cache key.
_CAL_SUBJECTS, _CAL_SEED, _CAL_MAX = 10, 1234, 64
# the phantom's version is part of it: a changed phantom must never reuse a stale int8 model
DEFAULT_CALIBRATION_ID = f"phantom:{PHANTOM_VERSION}:subjects={_CAL_SUBJECTS}:seed={_CAL_SEED}:max={_CAL_MAX}:fov={DEFAULT_FOV}"
_PROGRESS_MIN = 16


def default_threads() -> int:
    """All cores this process may run on (:func:`audit.core.cpus.usable_cores`)."""
    return usable_cores()


def validate_slices(a: np.ndarray, what: str = "judge input", ndims: Sequence[int] = (2, 3, 4)) -> np.ndarray:
    """Check a judge input (dimensionality, non-empty, numeric, finite) and return it as float32."""
    try:
        arr = np.asarray(a)
    except Exception as exc:  # pragma: no cover - exotic array-likes
        raise UserError(f"{what}: not an array ({exc})") from exc
    if arr.dtype.kind not in "biuf":
        raise UserError(f"{what}: expected a real numeric array, got dtype {arr.dtype}")
    if arr.ndim not in ndims:
        raise UserError(f"{what}: expected {'/'.join(f'{d}D' for d in ndims)} short-axis data, got {arr.ndim}D with shape {arr.shape}")
    if arr.size == 0:
        raise UserError(f"{what}: empty array of shape {arr.shape}")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise UserError(f"{what}: contains NaN or Inf values")
    return arr


def int8_model_path(fp32_sha256: str = JUDGE_SHA256, calibration_id: str = DEFAULT_CALIBRATION_ID) -> Path:
    """Where the int8 judge for this fp32 file and calibration lives in the cache."""
    return cache_dir("judge", "int8") / f"tiramisu_acdc_int8_{int8_cache_key(fp32_sha256, calibration_id)}.onnx"


def _int8_intact(path: Path) -> bool:
    """The cached int8 graph exists and matches the sha256 stored beside it when it was built."""
    sidecar = path.with_name(path.name + ".sha256")
    if not (path.is_file() and sidecar.is_file()):
        return False
    return sidecar.read_text("utf-8").strip() == sha256_file(path)


def ensure_int8(path: Path, fp32: Path, calibration: Callable[[], np.ndarray]) -> Path:
    """The int8 judge at ``path``: verified against its stored sha256, or (re)built and stored.

    Built under the entry's lock, so concurrent runs quantise once; the sha256 is written beside
    the graph after it, and a graph whose bytes no longer match it (or that has none) is rebuilt
    with a warning instead of being trusted."""
    if _int8_intact(path):
        return path
    with exclusive(path, what="the int8 judge"):
        if _int8_intact(path):
            return path
        if path.is_file():
            log.warning("%s: cached int8 judge does not match its stored sha256; rebuilding it", path)
        build_int8(fp32, path, calibration)
        atomic_write_text(path.with_name(path.name + ".sha256"), sha256_file(path) + "\n")
    return path


class Judge:
    """The independent judge network (ACDC-trained FC-DenseNet from ``myopari==0.1.6``).

    Parameters
    ----------
    precision: ``"fp32"`` (the reference) or ``"int8"`` (static quantisation of the padded graph,
        on AVX-512-VNNI CPUs with Dice within 0.01 of fp32 on the phantom; see BENCHMARKS.md).
    threads: ONNX Runtime intra-op threads; default all available cores.
    fov: field-of-view policy of the preprocessing (``"acdc"`` or ``"square"``).
    calibration: for int8 only, a callable returning :class:`LabelledSlices` sets, and
        ``calibration_id`` a string naming it (part of the cache key). Default: phantom slices.
    model_path: an fp32 ONNX file to use instead of :func:`fetch_judge` (hash-checked).
    device: ``"cpu"`` (ONNX Runtime) or ``"cuda"``/``"cuda:N"``: the fp32 graph runs in torch on
        the GPU (:mod:`cohorts.judge.torch_graph`), ``batch_size`` slices per call; ``int8`` is a
        CPU format and falls back to fp32 there (logged).
    backend: ``"auto"`` (ONNX Runtime on the CPU, torch on CUDA), or force ``"onnxruntime"`` /
        ``"torch"`` (torch on the CPU is slower than ONNX Runtime; the tests use it to check the
        torch runner against ONNX Runtime on a machine without a GPU).

    Example
    -------
    >>> judge = Judge(precision="int8")                       # doctest: +SKIP
    >>> labels = judge.segment(slices, spacing=(1.5, 1.5))    # (N,H,W) float -> (N,H,W) uint8
    """

    def __init__(self, precision: Precision = "fp32", *, threads: int | None = None, fov: FovMode = DEFAULT_FOV,
                 calibration: Callable[[], list[LabelledSlices]] | None = None, calibration_id: str | None = None,
                 model_path: str | os.PathLike | None = None, progress: bool | None = None,
                 device: str = "cpu", batch_size: int = 32, backend: str = "auto") -> None:
        if precision not in ("fp32", "int8"):
            raise UserError(f"precision: expected 'fp32' or 'int8', got {precision!r}")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise UserError(f"threads: expected a positive integer, got {threads!r}")
        if calibration is not None and not calibration_id:
            raise UserError("calibration_id: required with a custom calibration source (it keys the int8 cache)")
        self.precision: Precision = precision
        self.threads = threads or default_threads()
        self.fov = fov
        self.progress = progress
        if model_path is not None:
            fp32 = Path(model_path)
            digest = sha256_file(fp32)
            if digest != JUDGE_SHA256:
                raise UserError(f"{fp32}: sha256 mismatch: expected {JUDGE_SHA256}, got {digest}")
        else:
            fp32 = fetch_judge()
        self.fp32_path = fp32
        self.device, self.batch_size = str(device or "cpu"), max(1, int(batch_size))
        if backend not in ("auto", "onnxruntime", "torch"):
            raise UserError(f"backend: expected auto, onnxruntime or torch, got {backend!r}")
        if backend == "onnxruntime" and self.device != "cpu":
            raise UserError(f"judge: onnxruntime runs on the CPU here, not on {self.device!r}")
        self.backend = backend if backend != "auto" else ("onnxruntime" if self.device == "cpu" else "torch")
        if self.backend == "torch":
            self._start_torch(fp32)
        elif precision == "int8":
            cid = calibration_id or DEFAULT_CALIBRATION_ID
            self.model_path = int8_model_path(JUDGE_SHA256, cid)
            source = calibration or (lambda: phantom_slices(n_subjects=_CAL_SUBJECTS, seed=_CAL_SEED))
            ensure_int8(self.model_path, fp32, lambda: calibration_inputs(source, max_slices=_CAL_MAX, fov=fov))
            self._session = self._make_session(str(self.model_path))
        else:
            self.model_path = fp32
            self._session = self._make_session(prepared_fp32_bytes(fp32))

    def _start_torch(self, fp32: Path) -> None:
        dev = torch.device(self.device)
        if dev.type not in ("cpu", "cuda"):
            raise UserError(f"judge device {self.device!r}: use cpu, cuda or cuda:N")
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"judge device {self.device!r}: this torch build sees no CUDA GPU; use cpu")
        if self.precision == "int8":
            log.info("judge: int8 is ONNX Runtime's quantised CPU graph; the torch runner (%s) uses fp32", self.device)
            self.precision = "fp32"
        self.model_path = fp32
        self._net = TorchGraph(onnx.load_from_string(prepared_fp32_bytes(fp32))).to(dev).eval()
        self._session = None

    def _forward_torch(self, x: np.ndarray, features: bool) -> list[np.ndarray]:
        """Labels (argmax on the GPU, uint8) and optionally features of a prepared batch."""

        with torch.inference_mode():
            outs = self._net(torch.from_numpy(x).to(self.device, non_blocking=True))
            res = [outs[0].argmax(dim=1).to(torch.uint8).cpu().numpy()]
            if features:
                res.append(outs[1].float().cpu().numpy())
        return res

    def _make_session(self, model: str | bytes):
        import onnxruntime as ort  # lazy: onnxruntime only when the judge network runs

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3  # the quantised graph logs harmless warnings otherwise
        try:
            return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        except Exception as exc:
            where = model if isinstance(model, str) else str(self.fp32_path)
            raise UserError(f"{where}: onnxruntime cannot load the judge network: {str(exc).splitlines()[0]}") from exc

    def __repr__(self) -> str:
        where = "" if self.backend == "onnxruntime" else f", device={self.device!r}"
        return f"Judge(precision={self.precision!r}, threads={self.threads}, fov={self.fov!r}{where}, model={self.model_path})"

    # ------------------------------------------------------------------------------------
    def _run(self, slices: np.ndarray, spacing: Sequence[float] | None, features: bool) -> tuple[np.ndarray, np.ndarray | None]:
        arr = validate_slices(slices, ndims=(2, 3))
        single = arr.ndim == 2
        if single:
            arr = arr[None]
        if spacing is None:
            sp, fov = (1.0, 1.0), "square"  # unknown spacing: the plain square recipe (preprocess steps 1-4)
        else:
            sp, fov = check_spacing(spacing), self.fov
        n = len(arr)
        labels = np.zeros(arr.shape, dtype=np.uint8)
        feats = None
        names = ["output", FEATURE_OUTPUT] if features else ["output"]
        show = self.progress if self.progress is not None else n >= _PROGRESS_MIN
        if self.backend == "torch":
            return self._run_torch(arr, sp, fov, features, single, show)
        for i in tqdm(range(n), desc=f"judge {self.precision}", unit="slice", disable=not show or progress_disabled(), leave=False):
            x, geoms, nonempty = prepare_batch(arr[i : i + 1], sp, fov)
            if not nonempty[0] and not features:
                continue  # all-zero slice: background, nothing to run
            outs = self._session.run(names, {"input": x})
            if nonempty[0]:
                labels[i] = from_network(np.argmax(outs[0][0], axis=0).astype(np.uint8), geoms[0])
            if features:
                if feats is None:
                    feats = np.zeros((n, outs[1].shape[1]), dtype=np.float32)
                feats[i] = outs[1][0]
        if single:
            labels = labels[0]
            feats = None if feats is None else feats[0]
        return labels, feats

    def _run_torch(self, arr: np.ndarray, sp, fov, features: bool, single: bool, show: bool):
        n = len(arr)
        labels = np.zeros(arr.shape, dtype=np.uint8)
        feats = None
        bar = tqdm(total=n, desc=f"judge {self.device}", unit="slice", disable=not show or progress_disabled(), leave=False)
        for lo in range(0, n, self.batch_size):
            hi = min(lo + self.batch_size, n)
            x, geoms, nonempty = prepare_batch(arr[lo:hi], sp, fov)
            outs = self._forward_torch(x, features)
            for j in range(hi - lo):
                if nonempty[j]:
                    labels[lo + j] = from_network(outs[0][j], geoms[j])
            if features:
                if feats is None:
                    feats = np.zeros((n, outs[1].shape[1]), dtype=np.float32)
                feats[lo:hi] = outs[1]
            bar.update(hi - lo)
        bar.close()
        if single:
            return labels[0], None if feats is None else feats[0]
        return labels, feats

    def segment(self, slices: np.ndarray, spacing: Sequence[float] | None = None) -> np.ndarray:
        """Segment ``(N, H, W)`` (or one ``(H, W)``) slices; returns uint8 ACDC labels, same shape.

        ``spacing=(sx, sy)`` in mm along axes 0 and 1 enables the ACDC-like field of view;
        ``None`` means unknown and applies the plain square-crop recipe.
        """
        return self._run(slices, spacing, features=False)[0]

    def segment_and_features(self, slices: np.ndarray, spacing: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Labels as :meth:`segment` plus encoder features ``(N, 288)`` from the same forward pass
        (global average of the deepest encoder tensor; see :mod:`cohorts.judge.graph`)."""
        labels, feats = self._run(slices, spacing, features=True)
        assert feats is not None
        return labels, feats

    def segment_volume(self, volume: np.ndarray, spacing: Sequence[float] | None = None) -> np.ndarray:
        """Segment a 2D ``(H, W)``, 3D ``(Z, H, W)`` or 4D ``(T, Z, H, W)`` array slice by slice."""
        arr = validate_slices(volume)
        lead = arr.shape[:-2]
        flat = arr.reshape((-1,) + arr.shape[-2:])
        return self.segment(flat, spacing).reshape(lead + arr.shape[-2:])
