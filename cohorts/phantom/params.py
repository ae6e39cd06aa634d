"""Subject parameters of the cine phantom: pathology groups, vendor styles, acquisition.

Group definitions follow the ACDC challenge (Bernard et al., "Deep learning techniques for
automatic MRI cardiac multi-structures segmentation and diagnosis: is the problem solved?",
IEEE TMI 37(11):2514-2525, 2018, section II-A):

* ``NOR``  normal subjects;
* ``DCM``  dilated cardiomyopathy: LV EDV > 100 ml/m^2 and LVEF < 40 %;
* ``HCM``  hypertrophic cardiomyopathy: LV mass > 110 g/m^2, several segments thicker than
  15 mm in diastole, normal EF;
* ``MINF`` previous myocardial infarction: LVEF < 40 % and several segments with abnormal
  contraction (here: one coronary territory thinned and hypokinetic);
* ``RV``   abnormal right ventricle (``ARV`` in M&Ms): RV EDV > 110 ml/m^2 or RVEF < 40 %.

Normal ranges are taken from Kawel-Boehm et al., "Normal values for cardiovascular magnetic
resonance in adults and children", JCMR 17:29 (2015) and its update JCMR 22:87 (2020)
(bSSFP, adults): LVEF about 57-77 %, LV EDV index about 57-105 ml/m^2, end-diastolic
mid-ventricular wall thickness about 5-10 mm, RV EDV index about 61-121 ml/m^2, RVEF about
47-73 %. Body surface area uses Mosteller's formula (NEJM 317:1098, 1987).

Vendor styles A-D mirror the M&Ms vendors (Campello et al., "Multi-centre, multi-vendor and
multi-disease cardiac segmentation: the M&Ms challenge", IEEE TMI 40(12):3543-3554, 2021):
A Siemens, B Philips, C GE, D Canon. The numbers below are *styles*, not measurements of
those scanners: they make each vendor a distinct intensity / noise / resolution domain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audit.core.errors import UserError

__all__ = [
    "GROUPS",
    "GROUP_ALIASES",
    "VENDORS",
    "VendorStyle",
    "VENDOR_STYLES",
    "GroupRanges",
    "GROUP_RANGES",
    "normalise_group",
    "normalise_vendor",
    "bsa_mosteller",
]

GROUPS: tuple[str, ...] = ("NOR", "DCM", "HCM", "MINF", "RV")
GROUP_ALIASES: dict[str, str] = {"ARV": "RV"}
VENDORS: tuple[str, ...] = ("A", "B", "C", "D")


@dataclass(frozen=True)
class GroupRanges:
    """Sampling ranges of one pathology group (uniform within each range).

    ``ef`` LVEF in %; ``edvi`` LV EDV index in ml/m^2; ``wall`` end-diastolic wall
    thickness of normal segments in mm; ``rv_edvi`` RV EDV / LV EDV ratio range;
    ``rv_ef`` RVEF in %.
    """

    ef: tuple[float, float]
    edvi: tuple[float, float]
    wall: tuple[float, float]
    rv_ratio: tuple[float, float]
    rv_ef: tuple[float, float]
    septal_extra: tuple[float, float] = (0.0, 0.1)  # relative septal thickening
    infarct: bool = False


# Ranges: NOR from Kawel-Boehm 2015/2020; the pathological groups satisfy the ACDC
# criteria of Bernard et al. 2018 with margins (EF < 40 % for DCM/MINF, EDVi > 100 ml/m^2
# for DCM, segments > 15 mm for HCM, RVEF < 40 % for RV).
GROUP_RANGES: dict[str, GroupRanges] = {
    "NOR": GroupRanges(ef=(57.0, 70.0), edvi=(62.0, 90.0), wall=(6.5, 9.5),
                       rv_ratio=(1.0, 1.2), rv_ef=(50.0, 62.0)),
    "DCM": GroupRanges(ef=(15.0, 35.0), edvi=(115.0, 160.0), wall=(5.5, 8.0),
                       rv_ratio=(0.8, 1.0), rv_ef=(35.0, 55.0)),
    "HCM": GroupRanges(ef=(62.0, 78.0), edvi=(55.0, 80.0), wall=(12.5, 15.0),
                       rv_ratio=(0.9, 1.1), rv_ef=(55.0, 68.0), septal_extra=(0.35, 0.7)),
    "MINF": GroupRanges(ef=(25.0, 38.0), edvi=(85.0, 120.0), wall=(7.0, 9.5),
                        rv_ratio=(0.85, 1.05), rv_ef=(40.0, 55.0), infarct=True),
    "RV": GroupRanges(ef=(52.0, 65.0), edvi=(60.0, 85.0), wall=(6.5, 9.0),
                      rv_ratio=(1.6, 2.1), rv_ef=(22.0, 38.0)),
}


@dataclass(frozen=True)
class VendorStyle:
    """Image-formation style of one vendor.

    Tissue signals are relative to blood = 1 before ``blood`` scaling. ``noise`` is the
    Rician sigma relative to blood; ``blur`` the Gaussian PSF sigma in mm (lower effective
    resolution); ``bias`` the peak-to-peak amplitude of the multiplicative coil-sensitivity
    field; ``scale`` the stored intensity of blood; ``gamma`` a display-like nonlinearity;
    ``pixel`` the in-plane spacing range in mm and ``matrix`` the candidate matrix sizes.
    """

    name: str
    blood: float
    myo: float
    fat: float
    liver: float
    lung: float
    noise: float
    blur: float
    bias: float
    scale: float
    gamma: float
    pixel: tuple[float, float]
    matrix: tuple[int, ...]
    centres: tuple[int, ...]
    tissue: dict[str, float] = field(default_factory=dict)


VENDOR_STYLES: dict[str, VendorStyle] = {
    "A": VendorStyle("Siemens", blood=1.00, myo=0.27, fat=0.80, liver=0.33, lung=0.04,
                     noise=0.022, blur=0.55, bias=0.15, scale=600.0, gamma=1.00,
                     pixel=(1.30, 1.50), matrix=(256, 240, 224, 216), centres=(1,)),
    "B": VendorStyle("Philips", blood=0.95, myo=0.33, fat=0.88, liver=0.38, lung=0.06,
                     noise=0.035, blur=0.85, bias=0.30, scale=2400.0, gamma=0.85,
                     pixel=(1.40, 1.65), matrix=(240, 224, 208), centres=(2, 3)),
    "C": VendorStyle("GE", blood=0.88, myo=0.36, fat=0.78, liver=0.42, lung=0.08,
                     noise=0.045, blur=1.05, bias=0.40, scale=255.0, gamma=1.10,
                     pixel=(1.50, 1.80), matrix=(224, 208, 192), centres=(4,)),
    "D": VendorStyle("Canon", blood=0.92, myo=0.24, fat=0.92, liver=0.30, lung=0.03,
                     noise=0.030, blur=1.30, bias=0.25, scale=1200.0, gamma=1.20,
                     pixel=(1.25, 1.45), matrix=(256, 240, 232), centres=(5,)),
}


def normalise_group(group: Any) -> str:
    """Return the canonical group code (``ARV`` -> ``RV``) or raise :class:`UserError`."""
    g = str(group).strip().upper()
    g = GROUP_ALIASES.get(g, g)
    if g not in GROUPS:
        raise UserError(f"unknown phantom group {group!r}: expected one of {', '.join(GROUPS)} (or ARV)")
    return g


def normalise_vendor(vendor: Any) -> str:
    """Return the canonical vendor letter or raise :class:`UserError`."""
    v = str(vendor).strip().upper()
    if v not in VENDORS:
        raise UserError(f"unknown phantom vendor {vendor!r}: expected one of {', '.join(VENDORS)}")
    return v


def bsa_mosteller(height_cm: float, weight_kg: float) -> float:
    """Body surface area in m^2 (Mosteller 1987): sqrt(height_cm * weight_kg / 3600)."""
    return float(np.sqrt(height_cm * weight_kg / 3600.0))
