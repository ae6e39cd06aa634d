"""Can the synthetic masks be trusted as training labels? The judge's check of the synthetic
image/mask pairs, reported beside the utility figures (``utility.synthetic_masks``).

A segmentation net trained on synthetic pairs learns whatever their masks say. For the 2D
families the mask is the conditioning mask and the image is generated to follow it; for the cine
generator (arXiv 2606.26764) the mask is a second output of the generator, its own segmentation
decoder's reading of the frame it generated, and nothing forces the two to agree. A pair is a
useful training example only if an independent segmenter finds the same structures in the image.
The anatomy stage measures exactly that on the same sample set: ``anatomy.judge_agreement`` is the
Dice of the judge network's segmentation of the synthetic images (frames, for a cine set) against
their masks, and ``anatomy.judge_agreement_real_test`` is the judge's own Dice on real unseen scans
against expert masks, the most that agreement can show. This module reads both:

* ``judge_dice``: mean Dice over RV / MYO / LV of the synthetic pairs (CI over subjects, as in the
  anatomy section);
* ``fraction_of_ceiling``: that Dice divided by the real-scan ceiling (the CI bounds divided by the
  ceiling's point value: the ceiling's own uncertainty is not propagated), with the verdict
  ``consistent`` at or above ``audit.utility_mask_agreement`` (0.9 by default: the same fraction
  the generator goals of this project ask of the judge Dice) and ``doubtful`` below. A doubtful
  verdict is also written into the notes of every setting that trains on synthetic pairs, since
  their Dice then measures label noise as much as image realism.

The judge is the referee here, never a coach: the check selects, drops or weights no synthetic
image; it only says how far the labels the nets learned from can be trusted.
"""

from __future__ import annotations

from typing import Any, Mapping

from audit.core.results import metric, unavailable

CONSISTENT, DOUBTFUL = "consistent", "doubtful"
SOURCE_PREFIX, SOURCE_END = "masks from ", ". "
"""``judge_dice``'s method text starts with ``masks from <source>. `` (the report quotes the source)."""


def mask_source_of(entry: Mapping) -> str | None:
    """The masks' source named at the start of a ``judge_dice`` entry's method, or ``None``."""
    method = str(entry.get("method") or "")
    if not method.startswith(SOURCE_PREFIX) or SOURCE_END not in method:
        return None
    return method[len(SOURCE_PREFIX):method.index(SOURCE_END)]


def _entry(section: Mapping | None, key: str) -> Mapping | None:
    node = (section or {}).get(key)
    mean = node.get("dice", {}).get("mean") if isinstance(node, Mapping) else None
    return mean if isinstance(mean, Mapping) and mean.get("value") is not None else None


def _reason(section: Mapping | None, key: str, what: str) -> str:
    node = (section or {}).get(key)
    if isinstance(node, Mapping) and node.get("status") == "unavailable":
        return f"{what} is unavailable: {node.get('reason', 'no reason given')}"
    if section is None:
        return f"{what} is unavailable: the anatomy section is missing (anatomy stage not run)"
    return f"{what} is unavailable: anatomy.{key}.dice.mean is missing"


def mask_check(anatomy: Mapping | None, *, mask_source: str, threshold: float) -> dict[str, Any]:
    """The ``utility.synthetic_masks`` entries from the run's ``anatomy`` section.

    ``mask_source`` says where the masks come from (e.g. the conditioning masks, the generator's
    segmentation decoder); ``threshold`` is ``audit.utility_mask_agreement``. Returns unavailable
    entries with the reason when either anatomy figure is missing, never a guessed value."""
    syn = _entry(anatomy, "judge_agreement")
    ceil = _entry(anatomy, "judge_agreement_real_test")
    if syn is None:
        why = _reason(anatomy, "judge_agreement", "the judge's agreement with the synthetic masks")
        return {"judge_dice": unavailable(why), "fraction_of_ceiling": unavailable(why)}
    d = float(syn["value"])
    method = (f"{SOURCE_PREFIX}{mask_source}{SOURCE_END}Dice of the judge's segmentation of the synthetic images vs "
              "those masks, mean over RV/MYO/LV per image, then over images; the anatomy stage's figure "
              "(anatomy.judge_agreement)")
    out: dict[str, Any] = {"judge_dice": metric(d, "1", method=method, n=syn.get("n"),
                                                ci=(syn["ci_low"], syn["ci_high"]) if syn.get("ci_low") is not None else None)}
    if ceil is None or not float(ceil["value"]) > 0:
        out["fraction_of_ceiling"] = unavailable(_reason(anatomy, "judge_agreement_real_test",
                                                         "the judge's real-scan ceiling"))
        return out
    c = float(ceil["value"])
    frac = d / c
    verdict = CONSISTENT if frac >= threshold else DOUBTFUL
    ci = (syn["ci_low"] / c, syn["ci_high"] / c) if syn.get("ci_low") is not None else None
    out["fraction_of_ceiling"] = metric(
        frac, "1", ci=ci, n=syn.get("n"),
        method=(f"judge Dice of the synthetic pairs / the judge's Dice on real test scans vs expert masks ({c:.3f}, the "
                "ceiling); CI: the synthetic CI over the ceiling's point value"),
        notes=(f"verdict: {verdict} (threshold audit.utility_mask_agreement = {threshold:g})"
               + ("" if verdict == CONSISTENT else
                  "; the synthetic masks disagree with what an independent segmenter sees in the images, so nets "
                  "trained on these pairs learn partly wrong labels")),
        params={"ceiling": c, "threshold": float(threshold)})
    return out


def doubtful_note(check: Mapping[str, Any]) -> str | None:
    """The note for the synthetic settings when the check's verdict is doubtful, else ``None``."""
    frac = check.get("fraction_of_ceiling")
    if not isinstance(frac, Mapping) or f"verdict: {DOUBTFUL}" not in str(frac.get("notes") or ""):
        return None
    return (f"the synthetic masks agree with the judge at only {frac['value']:.2f} of its real-scan ceiling "
            "(utility.synthetic_masks): part of this setting's figure reflects label noise")
