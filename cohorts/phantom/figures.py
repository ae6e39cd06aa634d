"""Documentation figure: one mid-ventricular ED/ES pair per vendor style."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from audit.core.atomic import atomic_write_bytes

from .generator import generate_subject
from .params import VENDOR_STYLES, VENDORS

__all__ = ["vendor_figure"]


def vendor_figure(path: str | os.PathLike, seed: int = 0, group: str = "NOR", contours: bool = False) -> Path:
    """Draw a 2 x 4 grid (ED / ES rows, vendors A-D columns) of mid-ventricular slices.

    Slices are shown exactly as stored (nibabel array order, first axis down), each with
    its own 0.5-99.5 percentile window, like the judge sees them. ``contours`` overlays the
    ground truth (RV red, MYO green, LV blue).
    """
    import matplotlib  # lazy: matplotlib only when a figure is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib only when a figure is drawn

    fig, axes = plt.subplots(2, len(VENDORS), figsize=(3.2 * len(VENDORS), 6.6))
    for j, v in enumerate(VENDORS):
        s = generate_subject(f"fig{v}", seed + j, v, group)
        z = s.n_slices // 2
        for i, (name, t) in enumerate((("ED", s.ed), ("ES", s.es))):
            ax = axes[i, j]
            sl = s.image[:, :, z, t]
            lo, hi = np.percentile(sl[sl > 0], [0.5, 99.5])
            ax.imshow(sl, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            if contours:
                ax.contour(s.mask[:, :, z, t], levels=[0.5, 1.5, 2.5], colors=["r", "g", "b"], linewidths=0.5)
            ax.set_title(f"{v} ({VENDOR_STYLES[v].name}) {name}, frame {t}", fontsize=8)
            ax.set_axis_off()
    fig.suptitle(f"cmr-audit phantom, group {group}: mid-ventricular slice, ED (top) / ES (bottom)", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
