"""The phantom's per-subject parameters: overrides checked, everything else drawn, then sized.

:func:`sample_params` draws one subject's body, cardiac function, acquisition, slice placement
and shape details from the literature ranges of :mod:`cohorts.phantom.params` (an override in
:data:`OVERRIDES` replaces a drawn value); :func:`solve_size` then chooses the LV's base
radius and systolic shortening that hit the target EDV and EF with that slice stack.

The draws happen in one fixed order from one generator: a subject is a function of its seed,
and the cohort cache is keyed by the arrays the phantom produces, so reordering a draw here
changes every cached cohort.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from audit.core.errors import UserError

from .params import GROUP_RANGES, VENDOR_STYLES, GroupRanges, VendorStyle, bsa_mosteller
from .primitives import angular_bump, long_axis_profile

__all__ = ["OVERRIDES", "validate_overrides", "sample_params", "solve_size"]

#: Overrides accepted by :func:`cohorts.phantom.generate_subject` (name -> description).
OVERRIDES: dict[str, str] = {
    "n_slices": "number of short-axis slices (8-12 by default)",
    "n_frames": "number of frames per cycle (20-30 by default)",
    "pixel_mm": "in-plane spacing in mm",
    "slice_mm": "slice spacing (= thickness) in mm",
    "matrix": "in-plane matrix (nx, ny) in nibabel order",
    "edv_ml": "target LV end-diastolic volume in ml",
    "ef_percent": "target LV ejection fraction in %",
    "wall_mm": "end-diastolic wall thickness of normal segments in mm",
    "height_cm": "body height in cm",
    "weight_kg": "body weight in kg",
    "noise_scale": "multiplier of the vendor's Rician noise level (>= 0)",
    "first_slice_mm": "depth of the first slice below the end-diastolic base in mm (may be negative)",
}

#: valid range of every numeric override (the integer ones and ``matrix`` are checked apart)
_RANGES: dict[str, tuple[float, float]] = {
    "pixel_mm": (0.5, 4.0),
    "slice_mm": (1.0, 20.0),
    "edv_ml": (30.0, 500.0),
    "ef_percent": (5.0, 85.0),
    "wall_mm": (2.0, 25.0),
    "height_cm": (100.0, 230.0),
    "weight_kg": (25.0, 250.0),
    "first_slice_mm": (-60.0, 60.0),
    "noise_scale": (0.0, 10.0),
}


# ---------------------------------------------------------------------------------------
# overrides


def _check_range(name: str, value: float, lo: float, hi: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UserError(f"phantom parameter {name}={value!r} is not a number") from None
    if not math.isfinite(v) or v < lo or v > hi:
        raise UserError(f"phantom parameter {name}={value!r} is out of range [{lo}, {hi}]")
    return v


def _check_int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise UserError(f"phantom parameter {name}={value!r} must be an integer")
    if value < lo or value > hi:
        raise UserError(f"phantom parameter {name}={value!r} is out of range [{lo}, {hi}]")
    return int(value)


def validate_overrides(ov: dict[str, Any]) -> dict[str, Any]:
    """The overrides with ``None`` values dropped, integers and ranges checked (:class:`UserError`)."""
    unknown = sorted(set(ov) - set(OVERRIDES))
    if unknown:
        raise UserError(f"unknown phantom parameter(s) {', '.join(unknown)}: expected some of {', '.join(OVERRIDES)}")
    out: dict[str, Any] = {}
    for key, val in ov.items():
        if val is None:
            continue
        if key == "n_slices":
            out[key] = _check_int(key, val, 1, 64)
        elif key == "n_frames":
            out[key] = _check_int(key, val, 4, 100)
        elif key == "matrix":
            try:
                nx, ny = val
            except (TypeError, ValueError):
                raise UserError(f"phantom parameter matrix={val!r} must be a pair (nx, ny)") from None
            out[key] = (_check_int("matrix[0]", nx, 64, 1024), _check_int("matrix[1]", ny, 64, 1024))
        elif key in _RANGES:
            out[key] = _check_range(key, val, *_RANGES[key])
    return out


# ---------------------------------------------------------------------------------------
# drawing the parameters (an override's default is drawn too: the draw order never changes)


def _sample_body(rng: np.random.Generator, ov: dict[str, Any], p: dict[str, Any]) -> None:
    """Height, weight and body surface area."""
    height = ov.get("height_cm", float(np.clip(rng.normal(171.0, 9.0), 150.0, 198.0)))
    bmi = float(np.clip(rng.normal(25.0, 3.5), 18.5, 36.0))
    weight = ov.get("weight_kg", bmi * (height / 100.0) ** 2)
    p["height_cm"] = round(float(height), 1)
    p["weight_kg"] = round(float(weight), 1)
    p["bsa_m2"] = bsa_mosteller(p["height_cm"], p["weight_kg"])


def _sample_function(rng: np.random.Generator, gr: GroupRanges, ov: dict[str, Any], p: dict[str, Any]) -> None:
    """Target volumes and EF, wall thickness, RV size and function, long axis and its descent."""
    u = rng.uniform
    edv = ov.get("edv_ml", u(*gr.edvi) * p["bsa_m2"])
    ef = ov.get("ef_percent", u(*gr.ef))
    p["edv_target"] = float(edv)
    p["ef_target"] = float(ef)
    p["wall"] = float(ov.get("wall_mm", u(*gr.wall)))
    p["septal_extra"] = u(*gr.septal_extra)
    p["rv_ratio"] = u(*gr.rv_ratio)
    p["rv_ef_target"] = u(*gr.rv_ef)
    p["infarct"] = gr.infarct
    # long axis (endocardial base-to-apex length) grows with the cube root of the volume
    p["L"] = float(np.clip(84.0 * (edv / 140.0) ** (1.0 / 3.0) * u(0.94, 1.06), 62.0, 118.0))
    p["p"] = u(2.1, 2.8)  # profile exponent (larger = more cylindrical)
    # mitral annular plane systolic excursion: ~12-16 mm normal, reduced with low EF
    p["descent"] = float(np.clip((0.06 + 0.11 * ef / 65.0) * p["L"] * u(0.9, 1.1), 4.0, 17.0))


def _sample_acquisition(rng: np.random.Generator, style: VendorStyle, ov: dict[str, Any], p: dict[str, Any]) -> None:
    """Pixel spacing, matrix, frames per cycle, the ES frame and the frame interval."""
    u = rng.uniform
    pix = ov.get("pixel_mm", round(u(*style.pixel), 4))
    p["pixel_mm"] = float(pix)
    if "matrix" in ov:
        nx, ny = ov["matrix"]
    else:
        nx = int(rng.choice(style.matrix))
        ny = int(max(192, nx - int(rng.choice([0, 16, 24, 32, 40]))))
    p["matrix"] = (int(nx), int(ny))
    n_frames = ov.get("n_frames", int(rng.integers(20, 31)))
    p["n_frames"] = int(n_frames)
    lo, hi = math.ceil(0.35 * n_frames), math.floor(0.40 * n_frames)
    p["es"] = int(rng.integers(lo, hi + 1)) if hi >= lo else int(round(0.375 * n_frames))
    p["rr_ms"] = u(750.0, 1100.0)
    p["frame_interval_ms"] = round(p["rr_ms"] / n_frames, 2)


def _stack_size(rng: np.random.Generator, ov: dict[str, Any], span: float) -> tuple[float, int]:
    """Slice spacing and count covering ``span`` mm (8-12 slices of 8-10 mm unless overridden)."""
    if "slice_mm" in ov and "n_slices" in ov:
        return float(ov["slice_mm"]), int(ov["n_slices"])
    if "slice_mm" in ov:
        dz = float(ov["slice_mm"])
        return dz, int(np.clip(int(span // dz) + 1, 8, 12))
    if "n_slices" in ov:
        n = int(ov["n_slices"])
        return float(np.clip(span / max(n - 1, 1), 8.0, 10.0)), n
    dz = round(rng.uniform(8.0, 10.0) * 2.0) / 2.0
    n = int(span // dz) + 1
    if n > 12:
        n = 12
        dz = float(np.clip(span / 11.0, 8.0, 10.0))
    elif n < 8:
        n = 8
        dz = float(np.clip(span / 7.0, 8.0, 10.0))
    return dz, n


def _place_slices(rng: np.random.Generator, ov: dict[str, Any], p: dict[str, Any]) -> None:
    """Slice placement: the first slice is just below where the base sits at end-systole, so
    every slice crosses the LV in every frame (the usual clinical planning). The
    ``first_slice_mm`` override (depth below the ED base, may be negative) moves the stack;
    slices above the base show the atria and the aortic root, unlabelled."""
    wall_apex = 0.8 * p["wall"]
    first = ov.get("first_slice_mm", p["descent"] + rng.uniform(0.5, 3.0))
    s0 = first / p["L"]
    span = p["L"] * (1.0 - s0) + 0.45 * wall_apex  # from first slice to near the apex tip
    dz, n = _stack_size(rng, ov, span)
    p["slice_mm"] = round(float(dz), 3)
    p["n_slices"] = int(n)
    p["z"] = s0 * p["L"] + np.arange(n) * p["slice_mm"]  # depth below the ED base, mm
    p["wall_apex"] = wall_apex


def _sample_shape(rng: np.random.Generator, group: str, ov: dict[str, Any], p: dict[str, Any]) -> None:
    """In-plane placement (display frame: x to the right, y down = posterior, mm), outline
    harmonics, infarct, papillary muscles, trabeculation, RV shape, epicardial fat, noise."""
    u = rng.uniform
    p["heart_c"] = (u(-6.0, 18.0), u(-16.0, 6.0))
    p["tilt"] = (u(-0.15, 0.15), u(-0.12, 0.12))
    p["theta_rv"] = math.pi + u(0.05, 0.45)
    p["rot_body"] = u(-0.15, 0.15)
    p["shape_a"] = rng.normal(0.0, 0.025, 3)
    p["shape_b"] = rng.normal(0.0, 0.025, 3)
    p["infarct_theta"] = float(p["theta_rv"] + math.pi + u(-1.6, 1.6))  # not the septum
    p["infarct_width"] = u(1.1, 1.7)
    p["infarct_thin"] = u(0.45, 0.65)
    p["pm_r"] = u(3.5, 5.0) * (1.25 if group == "HCM" else 1.0)
    p["pm_off"] = (u(-0.25, 0.25), u(-0.25, 0.25))
    p["trab"] = (int(rng.integers(9, 16)), u(0, 2 * math.pi), u(0.35, 0.7))
    p["rv_width_k"] = u(0.5, 0.65) * (p["rv_ratio"] ** 0.9)  # x (R + 8 mm), set in solve_size
    p["rv_beta"] = u(0.95, 1.1) * (1.0 + 0.18 * (p["rv_ratio"] - 1.0))
    # RV free wall + pericardium appear as a 4-6 mm dark band between the RV blood and the
    # epicardial fat (wall ~3-5 mm, Kawel-Boehm 2015); the judge relies on that band.
    p["rv_wall"] = u(4.0, 5.5) + (0.8 if group == "RV" else 0.0)
    p["rv_end"] = u(0.82, 0.95)
    p["rv_ant"] = u(0.05, 0.18)
    p["fat"] = (u(0.5, 1.5), u(3.0, 8.0), u(1.5, 4.0))  # base, groove, RV free-wall extra
    p["noise_scale"] = float(ov.get("noise_scale", 1.0))


def sample_params(rng: np.random.Generator, vendor: str, group: str, ov: dict[str, Any]) -> dict[str, Any]:
    """One subject's parameters drawn from ``rng`` (overrides ``ov`` replace drawn values)."""
    p: dict[str, Any] = {}
    _sample_body(rng, ov, p)
    _sample_function(rng, GROUP_RANGES[group], ov, p)
    _sample_acquisition(rng, VENDOR_STYLES[vendor], ov, p)
    _place_slices(rng, ov, p)
    _sample_shape(rng, group, ov, p)
    return p


# ---------------------------------------------------------------------------------------
# sizing to the targets


def solve_size(p: dict) -> None:
    """Choose R (endocardial base radius) and systolic shortening c0 to hit EDV and EF."""
    L, descent, P = p["L"], p["descent"], p["p"]
    z = p["z"]
    dz = p["slice_mm"]
    th = np.linspace(-np.pi, np.pi, 360, endpoint=False)
    a_s, b_s = p["shape_a"], p["shape_b"]
    shape = 1.0 + sum(a_s[i] * np.cos((i + 1) * th) + b_s[i] * np.sin((i + 1) * th) for i in range(3))
    if p["infarct"]:
        k = 1.0 - 0.9 * angular_bump(th, p["infarct_theta"], p["infarct_width"])
    else:
        k = 1.0 + 0.08 * np.cos(th - p["theta_rv"] + math.pi)
    A = np.mean(shape ** 2)
    B = np.mean(shape ** 2 * k)
    C = np.mean(shape ** 2 * k * k)
    g_ed = np.sum(np.where(z < 0, 0.0, long_axis_profile(z / L, P) ** 2))
    s_es = (z - descent) / (L - descent)
    g_es = np.sum(np.where(s_es < 0, 0.0, long_axis_profile(s_es, P) ** 2))  # above the base: atria
    R2 = p["edv_target"] * 1000.0 / (np.pi * dz * g_ed * A)
    p["R"] = float(np.sqrt(R2))
    esv = p["edv_target"] * (1.0 - p["ef_target"] / 100.0) * 1000.0
    Q = esv / (np.pi * R2 * dz * g_es)  # mean_theta shape^2 (1 - c k)^2 must equal Q
    disc = B * B - C * (A - Q)
    c0 = (B - math.sqrt(max(disc, 0.0))) / C
    p["c0"] = float(np.clip(c0, 0.0, 0.75))
    p["rv_width"] = float(p["rv_width_k"] * (p["R"] + 8.0))  # scales with the LV cavity, not its wall
    # RV: crude inversion of the RVEF (crescent area ~ width^1.5 x shortening)
    lr = (L - descent) / L
    p["c_rv"] = float(np.clip(1.0 - ((1.0 - p["rv_ef_target"] / 100.0) / lr) ** (1 / 1.5), 0.05, 0.8))
