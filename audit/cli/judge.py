"""``audit judge``: fetch, inspect and run the independent judge network.

Wired into the main CLI as ``app.add_typer(judge.app, name="judge")``. Bad input raises
:class:`audit.core.errors.UserError`, which the main CLI prints as one ``error: ...`` line, exit 2.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from pathlib import Path

import numpy as np
import typer

from audit.core.atomic import atomic_write_bytes
from audit.core.errors import UserError

app = typer.Typer(help="The independent judge network (ACDC-trained segmentation CNN from myopari 0.1.6).",
                  no_args_is_help=True)
log = logging.getLogger(__name__)

_NIFTI_SUFFIXES = (".nii", ".nii.gz")


def _check_nifti_name(path: Path, what: str) -> None:
    if not path.name.lower().endswith(_NIFTI_SUFFIXES):
        raise UserError(f"{path}: {what} must be a NIfTI file (.nii or .nii.gz)")


def load_short_axis(path: Path):
    """Load a 2D/3D/4D short-axis NIfTI; return (image, data as (T, Z, X, Y) float32, (sx, sy))."""
    import nibabel as nib  # lazy: nibabel only when NIfTI files are read or written

    _check_nifti_name(path, "the image")
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise UserError(f"{path}: cannot read as NIfTI ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'corrupt'})") from exc
    # trailing singleton axes beyond 4 are harmless (some writers store 5D with T=1)
    while data.ndim > 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim not in (2, 3, 4):
        raise UserError(f"{path}: expected 2D/3D/4D short-axis data, got {data.ndim}D with shape {data.shape}")
    if data.size == 0:
        raise UserError(f"{path}: empty image of shape {data.shape}")
    if not np.isfinite(data).all():
        raise UserError(f"{path}: image contains NaN or Inf values")
    zooms = img.header.get_zooms()
    spacing = (float(zooms[0]), float(zooms[1] if len(zooms) > 1 else zooms[0]))
    if not all(np.isfinite(spacing)) or min(spacing) <= 0:
        raise UserError(f"{path}: invalid in-plane pixel spacing {spacing} in the header")
    # nibabel order (X, Y[, Z[, T]]) -> internal (T, Z, X, Y): slices stay in nibabel order
    internal = data.reshape(data.shape + (1,) * (4 - data.ndim))
    internal = np.moveaxis(internal, (2, 3), (1, 0))
    return img, internal, spacing


def save_mask_like(img, labels_tzxy: np.ndarray, out: Path) -> None:
    """Write ``labels`` (T, Z, X, Y) as uint8 NIfTI with ``img``'s affine and header, atomically."""
    import nibabel as nib  # lazy: nibabel only when NIfTI files are read or written

    arr = np.moveaxis(labels_tzxy, (1, 0), (2, 3)).reshape(img.shape).astype(np.uint8)
    header = img.header.copy()
    header.set_data_dtype(np.uint8)
    mask = type(img)(arr, img.affine, header) if isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)) else nib.Nifti1Image(arr, img.affine, header)
    mask.header.set_slope_inter(1.0, 0.0)
    data = mask.to_bytes()
    if out.name.lower().endswith(".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)
    atomic_write_bytes(out, data)


@app.command()
def fetch(int8: bool = typer.Option(False, "--int8", help="Also build (or find) the int8 quantised model.")) -> None:
    """Download (first time) and verify the judge network; print its path and sha256.

    Example: ``audit judge fetch --int8``
    """
    from cohorts.judge import fetch_judge, sha256_file  # lazy: keeps `audit --help` fast (pulls in the data stack)

    path = fetch_judge()
    typer.echo(f"fp32 {path} sha256={sha256_file(path)}")
    if int8:
        from cohorts.judge import Judge  # lazy: keeps `audit --help` fast (pulls in the data stack)

        j = Judge("int8", progress=False)
        typer.echo(f"int8 {j.model_path} sha256={sha256_file(j.model_path)}")


@app.command()
def segment(
    image: Path = typer.Argument(..., help="Short-axis NIfTI (.nii/.nii.gz), 2D, 3D or 4D."),
    out: Path = typer.Option(..., "--out", "-o", help="Output mask NIfTI (uint8, ACDC labels 0 bg, 1 RV, 2 MYO, 3 LV)."),
    precision: str = typer.Option("fp32", "--precision", help="fp32 (reference) or int8 (faster)."),
    threads: int = typer.Option(0, "--threads", help="ONNX Runtime threads (0 = every core this process may run on)."),
) -> None:
    """Segment a short-axis NIfTI with the judge; the mask keeps the image's affine and header.

    Example: ``audit judge segment patient001_4d.nii.gz --out patient001_judge.nii.gz --precision int8``
    """
    from cohorts.judge import Judge  # lazy: keeps `audit --help` fast (pulls in the data stack)

    if precision not in ("fp32", "int8"):
        raise UserError(f"--precision: expected fp32 or int8, got {precision!r}")
    if threads < 0:
        raise UserError(f"--threads: expected a non-negative integer, got {threads}")
    _check_nifti_name(out, "--out")
    img, data, spacing = load_short_axis(image)
    judge = Judge(precision, threads=threads or None)  # type: ignore[arg-type]
    labels = judge.segment_volume(data, spacing)
    save_mask_like(img, labels, out)
    counts = {name: int((labels == k).sum()) for k, name in ((1, "RV"), (2, "MYO"), (3, "LV"))}
    typer.echo(f"wrote {out} ({data.shape[0] * data.shape[1]} slices, voxels {counts})")


@app.command()
def info() -> None:
    """Show the judge's source, expected hash, cache locations and whether they are present.

    Example: ``audit judge info``
    """
    import onnxruntime  # lazy: onnxruntime only when the judge network runs

    from audit.core.paths import cache_dir  # lazy: keeps `audit --help` fast (pulls in torch)
    from cohorts.judge import JUDGE_SHA256, int8_model_path  # lazy: keeps `audit --help` fast (pulls in the data stack)
    from cohorts.judge.fetch import (  # lazy: keeps `audit --help` fast (pulls in the data stack)
        ENV_JUDGE,
        JUDGE_FILENAME,
        JUDGE_MEMBER,
        JUDGE_PACKAGE,
    )
    from cohorts.judge.network import default_threads  # lazy: keeps `audit --help` fast (pulls in the data stack)
    from cohorts.judge.preprocess import DEFAULT_FOV  # lazy: keeps `audit --help` fast (pulls in the data stack)

    fp32 = Path(os.environ[ENV_JUDGE]) if os.environ.get(ENV_JUDGE) else cache_dir("judge") / JUDGE_FILENAME
    int8 = int8_model_path()
    typer.echo(json.dumps({
        "source": f"{JUDGE_PACKAGE} :: {JUDGE_MEMBER}",
        "sha256": JUDGE_SHA256,
        "fp32_path": str(fp32), "fp32_present": fp32.is_file(),
        "int8_path": str(int8), "int8_present": int8.is_file(),
        "override_env": ENV_JUDGE,
        "input": "(N,1,256,256) float32 in [0,1], nibabel slice order",
        "labels": {"0": "background", "1": "RV", "2": "MYO", "3": "LV"},
        "fov_policy": DEFAULT_FOV,
        "onnxruntime": onnxruntime.__version__,
        "threads": default_threads(),
    }, indent=2))
