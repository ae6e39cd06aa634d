"""The privacy audit entry point: :func:`privacy_section` and :func:`write_artifacts`.

Setup: members = images of ``train`` subjects, non-members = images of every
subject the generator never trained on and whose masks did not condition the samples (same
distribution; normally the ``holdout`` and ``test`` splits, chosen by
:func:`audit.privacy.design.membership_design`), attacker population data = the ``reference``
split. Every attack scores every member and non-member image; scores are evaluated per image
and per subject (the mean and the max of a subject's image scores), with subject-level
bootstrap CIs (:mod:`audit.privacy.metrics`). Memorisation (:mod:`audit.privacy.memorisation`)
and the DP lower bound (:mod:`audit.privacy.dp_verify`) complete the section.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audit.core.atomic import atomic_write_json, jsonable
from audit.core.errors import UserError
from audit.core.results import metric, unavailable
from audit.core.tables import write_csv
from audit.privacy import attacks as atk
from audit.privacy import dp_verify, memorisation, metrics, one_run
from audit.privacy.canaries import CanarySet
from audit.privacy.design import MembershipDesign
from generators.data import SliceSet
from generators.sampleset import SampleSet

log = logging.getLogger(__name__)

#: smallest sets the audit accepts (subject-level bootstrap needs >= 2 subjects per class)
MIN_SUBJECTS = 2
MIN_IMAGES = 10
SPACING_RTOL = 0.02
LEVELS = ("image", "subject_mean", "subject_max")


# --------------------------------------------------------------------------- validation


def validate_inputs(train: SliceSet, nonmembers: SliceSet, reference: SliceSet, samples: SampleSet) -> None:
    """Refuse inputs that would make the audit meaningless; one-line :class:`UserError`."""
    for name, s in (("train (members)", train), ("non-member", nonmembers), ("reference (attacker data)", reference)):
        if s is None or len(s) == 0:
            raise UserError(f"privacy audit: the {name} set is empty")
    overlap = sorted(set(train.subject_ids.tolist()) & set(nonmembers.subject_ids.tolist()))
    if overlap:
        raise UserError(f"privacy audit: {len(overlap)} subjects are both members (train) and non-members, "
                        f"e.g. {overlap[:3]}; membership inference would be meaningless")
    for name, s in (("train", train), ("non-member", nonmembers)):
        ref_overlap = sorted(set(reference.subject_ids.tolist()) & set(s.subject_ids.tolist()))
        if ref_overlap:
            raise UserError(f"privacy audit: reference (attacker) subjects overlap the {name} set, e.g. {ref_overlap[:3]}")
    for name, s, min_subj in (("train (members)", train, MIN_SUBJECTS), ("non-member", nonmembers, MIN_SUBJECTS),
                              ("reference (attacker data)", reference, 1)):
        n_subj = len(np.unique(s.subject_ids))
        if n_subj < min_subj or len(s) < MIN_IMAGES:
            raise UserError(f"privacy audit: the {name} set has {n_subj} subjects / {len(s)} images; "
                            f"the minimum is {min_subj} subjects and {MIN_IMAGES} images")
    if samples is None or len(samples) < MIN_IMAGES:
        raise UserError(f"privacy audit: the sample set has {0 if samples is None else len(samples)} images; "
                        f"the minimum is {MIN_IMAGES}")
    if samples.is_cine:
        raise UserError("privacy audit: pass a cine sample set's frames (SampleSet.frames()) as 2D images")
    if samples.subject_ids is not None:  # a subject whose mask conditioned samples is no non-member (design.py)
        echo = sorted(set(np.asarray(samples.subject_ids).astype(str).tolist()) & set(nonmembers.subject_ids.tolist()))
        if echo:
            raise UserError(f"privacy audit: {len(echo)} non-member subjects conditioned the samples (named in their "
                            f"subject_ids), e.g. {echo[:3]}; leave them out of the non-members")
    if not np.isfinite(samples.images).all():
        raise UserError(f"privacy audit: the sample set has {int((~np.isfinite(samples.images)).sum())} NaN/Inf values")
    for name, s in (("non-member", nonmembers), ("reference", reference)):
        if s.shape != train.shape or not np.allclose(s.spacing, train.spacing, rtol=SPACING_RTOL):
            raise UserError(f"privacy audit: the {name} set is {s.shape} at {np.round(s.spacing, 4).tolist()} mm but "
                            f"train is {train.shape} at {np.round(train.spacing, 4).tolist()} mm")
    if tuple(samples.images.shape[1:]) != tuple(train.shape):
        raise UserError(f"privacy audit: synthetic images are {samples.images.shape[1]}x{samples.images.shape[2]} but the "
                        f"cohort is prepared at {train.shape[0]}x{train.shape[1]}; resample the samples or set data.size")
    if not np.allclose(samples.pixel_spacing, train.spacing, rtol=SPACING_RTOL):
        raise UserError(f"privacy audit: sample spacing {np.round(samples.pixel_spacing, 4).tolist()} mm differs from the "
                        f"cohort's {np.round(train.spacing, 4).tolist()} mm (tolerance {SPACING_RTOL:.0%})")


def _cap(s: SliceSet, max_images: int | None, seed: int, salt: int) -> SliceSet:
    if max_images is None or len(s) <= max_images:
        return s
    idx = np.sort(np.random.default_rng([seed, salt]).choice(len(s), int(max_images), replace=False))
    return s.subset(idx)


# --------------------------------------------------------------------------- aggregation


def subject_scores(scores: np.ndarray, labels: np.ndarray, subjects: np.ndarray, how: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-subject ``mean`` or ``max`` of image scores -> ``(scores, labels, subject ids)``."""
    df = pd.DataFrame({"s": scores, "y": labels, "subject": subjects})
    g = df.groupby("subject", sort=True)
    agg = g["s"].mean() if how == "mean" else g["s"].max()
    y = g["y"].first()
    return agg.to_numpy(np.float64), y.to_numpy(bool), agg.index.to_numpy(str)


def _rank(scores: np.ndarray) -> np.ndarray:
    """1 = most member-like; ties share the best rank."""
    return pd.Series(scores).rank(ascending=False, method="min").to_numpy(np.int64)


# --------------------------------------------------------------------------- the section


@dataclass
class _Scored:
    """The member and non-member images every attack scores, with their labels and subjects."""

    images: np.ndarray
    masks: np.ndarray
    labels: np.ndarray  # True = member
    subjects: np.ndarray
    conditions: dict[str, np.ndarray]

    @classmethod
    def of(cls, train: SliceSet, holdout: SliceSet) -> "_Scored":
        return cls(images=np.concatenate([train.images, holdout.images]),
                   masks=np.concatenate([train.masks, holdout.masks]),
                   labels=np.r_[np.ones(len(train), bool), np.zeros(len(holdout), bool)],
                   subjects=np.r_[train.subject_ids, holdout.subject_ids].astype(str),
                   conditions={"vendor": np.r_[train.vendor, holdout.vendor], "group": np.r_[train.group, holdout.group]})


def privacy_section(train: SliceSet, nonmembers: SliceSet, reference: SliceSet, samples: SampleSet, generator: Any = None,
                    *, n_boot: int = 1000, seed: int = 0, max_images: int | None = None,
                    claimed_epsilon: float | None = None, delta: float = 0.0,
                    attacks: list[atk.Attack] | None = None,
                    design: MembershipDesign | None = None,
                    canaries: CanarySet | None = None) -> tuple[dict[str, Any], pd.DataFrame, dict[str, Any]]:
    """Run the privacy audit; return ``(section, per-image risk table, extras for the report)``.

    ``nonmembers``: slices of the non-member subjects; ``design`` says which split each comes
    from (:func:`audit.privacy.design.membership_design`; None = all from ``holdout``).
    ``max_images`` caps the member and the non-member images (each, seeded random subset).
    ``claimed_epsilon``/``delta``: the DP claim to check (None = no claim). ``attacks``
    replaces the default suite (black-box + whatever the generator's ``score`` supports).
    ``canaries``: the planted canaries' slices and whether each canary was trained on (one-run DP
    audit, :mod:`audit.privacy.canaries`); they are scored with the strongest white-box attack.
    """
    t_start = time.perf_counter()
    cine = samples is not None and samples.is_cine
    if cine:  # cine frames are images like any other: every attack compares them with real frames
        samples = samples.frames()
    validate_inputs(train, nonmembers, reference, samples)
    train = _cap(train, max_images, seed, 11)
    holdout = _cap(nonmembers, max_images, seed, 12)  # "holdout" below: the non-member images, whatever their split
    if len(train) < MIN_IMAGES or len(holdout) < MIN_IMAGES:
        raise UserError(f"privacy audit: max_images={max_images} leaves fewer than {MIN_IMAGES} member or non-member images")
    scored = _Scored.of(train, holdout)
    knowledge = atk.Knowledge(
        synthetic=samples.images, reference=reference.images, reference_masks=reference.masks,
        reference_conditions={"vendor": reference.vendor, "group": reference.group},
        synthetic_masks=samples.masks, synthetic_conditions={"vendor": samples.vendor, "group": samples.group},
        generator=generator, seed=seed,
    )
    t0 = time.perf_counter()
    knowledge.embed()
    timing: dict[str, float] = {"embedding_fit": time.perf_counter() - t0}
    suite, wb_missing, plugin_names = _suite(attacks, generator)

    nonmember_split, names = _nonmember_splits(holdout, design)
    section: dict[str, Any] = {"setup": _setup_entries(train, holdout, reference, samples, cine, nonmember_split, design)}
    extras: dict[str, Any] = {"roc": {}, "attacks": {}, "memorisation": {}}
    table = pd.DataFrame({
        "row_id": [f"train:{i}" for i in range(len(train))] + [f"nonmember:{i}" for i in range(len(holdout))],
        "split": np.r_[np.full(len(train), "train", dtype=object), nonmember_split], "member": scored.labels,
        "subject_id": scored.subjects,
        "image_index": np.r_[np.arange(len(train)), np.arange(len(holdout))],
    })
    att_section, image_scores = _run_attacks(suite, plugin_names, knowledge, scored, table, extras, timing,
                                             n_boot=n_boot, seed=seed, nonmember_splits=names)
    for name, reason in wb_missing.items():
        att_section[name] = unavailable(reason)
    section["attacks"] = att_section
    section["summary"] = _summary(att_section, suite)
    section["memorisation"] = _memorisation(samples, train, holdout, knowledge, table, extras, timing,
                                            n_boot=n_boot, seed=seed)
    section["dp_verification"] = _dp_entries(image_scores, scored.labels, scored.subjects, claimed_epsilon, delta)
    section["dp_verification"]["one_run_epsilon_lb"] = _one_run_entry(suite, att_section, canaries, delta,
                                                                      claimed_epsilon, extras)
    timing["total"] = time.perf_counter() - t_start
    extras["timing_s"] = {k: round(v, 4) for k, v in timing.items()}
    table = table.sort_values([c for c in table.columns if c.endswith("_rank")][:1] or ["row_id"], kind="mergesort")
    return section, table.reset_index(drop=True), extras


def _suite(attacks: list[atk.Attack] | None, generator: Any) -> tuple[list[atk.Attack], dict[str, str], set[str]]:
    """The attacks to run, ``{name: reason}`` of the white-box / plugin attacks that cannot, and the
    plugin attacks' names. ``attacks`` given: exactly those."""
    if attacks is not None:
        return list(attacks), {}, set()
    wb, wb_missing = atk.white_box_attacks(generator)
    suite = atk.black_box_attacks() + wb
    plugged, broken = _plugin_attacks({a.name for a in suite} | set(wb_missing), generator)
    suite += plugged
    wb_missing.update(broken)
    return suite, wb_missing, {a.name for a in plugged}


def _nonmember_splits(holdout: SliceSet, design: MembershipDesign | None) -> tuple[np.ndarray, str]:
    """The split of every non-member image, and the splits' names joined by "+" (design order first)."""
    split_of = dict(design.nonmember_splits) if design is not None else {}
    nonmember_split = np.array([split_of.get(str(s), "holdout") for s in holdout.subject_ids], dtype=object)
    order = design.nonmember_split_names if design is not None else []
    names = "+".join(n for n in dict.fromkeys(order + nonmember_split.tolist()) if n in set(nonmember_split.tolist()))
    return nonmember_split, names


def _run_attacks(suite: list[atk.Attack], plugin_names: set[str], knowledge: atk.Knowledge, scored: _Scored,
                 table: pd.DataFrame, extras: dict[str, Any], timing: dict[str, float], *, n_boot: int, seed: int,
                 nonmember_splits: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Fit and score every attack, evaluate its scores (entries, ROC) and add its columns to ``table``;
    an attack that cannot score becomes an unavailable entry. Returns the entries and the image scores."""
    att_section: dict[str, Any] = {}
    image_scores: dict[str, np.ndarray] = {}
    for attack in suite:
        t0 = time.perf_counter()
        try:
            attack.fit(knowledge)
            s = np.asarray(attack.score(scored.images, scored.masks, **scored.conditions), np.float64)
        except UserError as exc:  # e.g. a generator that cannot score these inputs
            att_section[attack.name] = unavailable(f"{attack.description}: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - a failing plugin attack must not lose the audit
            if attack.name not in plugin_names:
                raise
            log.warning("privacy: plugin attack %s failed", attack.name, exc_info=True)
            att_section[attack.name] = unavailable(f"plugin attack failed: {type(exc).__name__}: {exc}")
            continue
        timing[attack.name] = time.perf_counter() - t0
        if s.shape != (len(scored.images),) or not np.isfinite(s).all():
            att_section[attack.name] = unavailable(f"attack '{attack.name}' returned non-finite or mis-shaped scores")
            continue
        image_scores[attack.name] = s
        table[f"{attack.name}_score"] = s
        table[f"{attack.name}_rank"] = _rank(s)
        node, roc = _evaluate_attack(attack, s, scored.labels, scored.subjects, n_boot=n_boot, seed=seed,
                                     nonmember_splits=nonmember_splits)
        att_section[attack.name] = node
        extras["roc"][attack.name] = roc
        extras["attacks"][attack.name] = {"kind": attack.kind, "description": attack.description, **attack.info()}
        log.info("privacy: %s AUC %.3f [%.3f, %.3f] (%.1f s)", attack.name, node["image"]["auc"]["value"],
                 node["image"]["auc"]["ci_low"] or np.nan, node["image"]["auc"]["ci_high"] or np.nan, timing[attack.name])
    return att_section, image_scores


def _memorisation(samples: SampleSet, train: SliceSet, holdout: SliceSet, knowledge: atk.Knowledge, table: pd.DataFrame,
                  extras: dict[str, Any], timing: dict[str, float], *, n_boot: int, seed: int) -> dict[str, Any]:
    """Memorisation in two spaces (pixel correlation, PCA): the entries, the per-image columns of
    ``table`` and the nearest pairs and histograms for the report."""
    syn_clusters = samples.subject_ids if samples.subject_ids is not None else None
    mem: dict[str, Any] = {}
    for space_name in ("pixel_correlation", "pca"):
        t0 = time.perf_counter()
        r = memorisation.analyse_space(space_name, samples.images, train.images, holdout.images,
                                       train_subjects=train.subject_ids, holdout_subjects=holdout.subject_ids, emb=knowledge.embedding,
                                       syn_clusters=syn_clusters, n_boot=n_boot, seed=seed)
        timing[f"memorisation_{space_name}"] = time.perf_counter() - t0
        mem[space_name] = r.entries
        table[f"nn_distance_{space_name}"] = r.real_to_syn
        table[f"nn_synthetic_index_{space_name}"] = r.real_syn_index
        table[f"copy_flag_{space_name}"] = r.real_to_syn < r.threshold
        extras["memorisation"][space_name] = {"top_pairs": r.top_pairs, "histogram": r.histogram,
                                              "distance": r.unit_note}
    return mem


def _setup_entries(train, holdout, reference, samples, cine: bool = False, nonmember_split: np.ndarray | None = None,
                   design: MembershipDesign | None = None) -> dict[str, Any]:
    """Counts per role; the notes name the splits each role comes from (and why subjects were left out)."""
    def count(v, unit, what, notes=None):
        return metric(v, unit, method=what, n=v, notes=notes)

    if nonmember_split is None:
        nonmember_split = np.full(len(holdout), "holdout", dtype=object)
    order = design.nonmember_split_names if design is not None else []
    per_split = {name: (int((nonmember_split == name).sum()),
                        len(np.unique(holdout.subject_ids[nonmember_split == name])))
                 for name in dict.fromkeys(order + nonmember_split.tolist()) if (nonmember_split == name).any()}
    names = " + ".join(per_split)
    img_notes = "; ".join(f"{k}: {v[0]} images" for k, v in per_split.items())
    subj_notes = "; ".join(f"{k}: {v[1]} subjects" for k, v in per_split.items())
    if design is not None:
        subj_notes = design.describe()["nonmembers"]
    return {
        "member_images": count(len(train), "images", "images of train subjects (members)", "split train"),
        "member_subjects": count(len(np.unique(train.subject_ids)), "subjects", "train subjects (members)",
                                 design.describe()["members"] if design is not None else "split train"),
        "nonmember_images": count(len(holdout), "images", f"images of non-member subjects ({names})", img_notes),
        "nonmember_subjects": count(len(np.unique(holdout.subject_ids)), "subjects",
                                    f"non-member subjects ({names}): never trained on, masks never conditioned the "
                                    "samples", subj_notes),
        "reference_images": count(len(reference), "images", "reference split images (attacker population data)",
                                  design.describe()["reference"] if design is not None else "split reference"),
        "synthetic_images": count(len(samples), "images", "synthetic images audited"
                                  + (" (every frame of the cine sample set, as a 2D image)" if cine else "")),
    }


def _evaluate_attack(attack: atk.Attack, s: np.ndarray, labels: np.ndarray, subjects: np.ndarray, *, n_boot: int,
                     seed: int, nonmember_splits: str = "holdout") -> tuple[dict[str, Any], dict[str, Any]]:
    node: dict[str, Any] = {}
    roc: dict[str, Any] = {}
    ev = metrics.evaluate(s, labels, subjects, level="image", n_boot=n_boot, seed=seed)
    node["image"] = metrics.entries(ev, "images", nonmember_splits=nonmember_splits)
    roc["image"] = ev.roc
    for how in ("mean", "max"):
        ss, yy, ids = subject_scores(s, labels, subjects, how)
        ev = metrics.evaluate(ss, yy, ids, level=f"subject_{how}", n_boot=n_boot, seed=seed)
        node[f"subject_{how}"] = metrics.entries(ev, "subjects", nonmember_splits=nonmember_splits)
        roc[f"subject_{how}"] = ev.roc
    if attack.kind == "white-box":
        ips = attack.info().get("images_per_s")
        if ips is not None and np.isfinite(ips):
            node["cost"] = metric(ips, "images/s", method="scoring throughput of the white-box attack on this machine",
                                  n=len(s))
    return node, roc


def _summary(att_section: dict[str, Any], suite: list[atk.Attack]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("black-box", "white-box"):
        best_name, best = None, None
        for a in suite:
            e = att_section.get(a.name, {})
            if a.kind == kind and "image" in e and (best is None or e["image"]["auc"]["value"] > best["value"]):
                best_name, best = a.name, e["image"]["auc"]
        key = f"best_{kind.replace('-', '_')}_auc"
        if best is None:
            out[key] = unavailable(f"no {kind} attack produced scores")
        else:
            out[key] = {**best, "notes": f"attack '{best_name}' (image level)"}
    return out


def _plugin_attacks(taken: set[str], generator: Any) -> tuple[list[atk.Attack], dict[str, str]]:
    """Attacks registered by plugins (entry point group ``cmr_audit.attacks``), and ``{name: reason}``
    for those that are broken, clash with a built-in name, or need a generator that is absent."""
    out, missing = [], {}
    for p in atk.plugin_attacks():
        name = p.name if p.broken else p.obj.name
        if p.broken:
            missing[name] = f"attack plugin {p.source} is broken: {p.error}"
        elif name in taken:
            missing[f"plugin:{p.name}"] = f"attack plugin {p.source} is named {name!r}, which a built-in attack uses"
        elif p.obj.kind == "white-box" and generator is None:
            missing[name] = f"white-box plugin attack {name!r} needs the generator (black-box sample set only)"
        else:
            out.append(p.obj)
            taken.add(name)
    return out, missing


def _dp_entries(image_scores: dict[str, np.ndarray], labels: np.ndarray, subjects: np.ndarray,
                claimed_epsilon: float | None, delta: float) -> dict[str, Any]:
    if not image_scores:
        reason = "no attack produced scores"
        return {k: unavailable(reason) for k in ("epsilon_lb", "epsilon_lb_image_level", "claimed_epsilon", "violation")}
    out: dict[str, Any] = {}
    best_subj = best_img = None
    for name, s in image_scores.items():
        ss, yy, _ = subject_scores(s, labels, subjects, "mean")
        b = dp_verify.empirical_epsilon(ss, yy, delta=delta)
        if best_subj is None or b.epsilon_lb > best_subj[1].epsilon_lb:
            best_subj = (name, b)
        bi = dp_verify.empirical_epsilon(s, labels, delta=delta)
        if best_img is None or bi.epsilon_lb > best_img[1].epsilon_lb:
            best_img = (name, bi)
    out["epsilon_lb"] = dp_verify.bound_entry(best_subj[1], attack=best_subj[0], level="subject (mean score)")
    img = dp_verify.bound_entry(best_img[1], attack=best_img[0], level="image")
    img["notes"] += "; images of one subject are not independent trials: valid only for image-level DP"
    out["epsilon_lb_image_level"] = img
    out.update(dp_verify.compare_with_claim(best_subj[1], claimed_epsilon))
    return out


def _one_run_entry(suite: list[atk.Attack], att_section: dict[str, Any], canaries: CanarySet | None,
                   delta: float, claimed_epsilon: float | None, extras: dict[str, Any]) -> dict[str, Any]:
    """The one-run epsilon lower bound (Steinke, Nasr, Jagielski 2023) from the planted canaries.

    Scored with the white-box attack of the highest member vs non-member AUC at the canaries' level
    (subject canaries: the subject-mean AUC; image canaries: the image AUC), or, when none could be
    evaluated there (e.g. non-members of a vendor the generator cannot condition on), the first
    white-box attack of the suite: either choice never sees a canary's coin, so the bound keeps its
    confidence. A subject canary's score is the mean score of its slices. Every white-box attack
    was fitted by then (its fit reads synthetic and reference data only)."""
    if canaries is None:
        return unavailable("no canaries were planted (audit run --dp-audit-canaries K)")
    white = [a for a in suite if a.kind == "white-box"]
    if not white:
        return unavailable("the generator offers no white-box attack, so the canaries cannot be scored")
    level = "subject_mean" if canaries.unit == "subject" else "image"

    def auc_of(a: atk.Attack) -> float:
        node = att_section.get(a.name)
        return node[level]["auc"]["value"] if isinstance(node, dict) and level in node else float("-inf")

    attack = max(white, key=auc_of)  # the first of equals: suite order
    chosen = (f"{level.replace('_', '-')} AUC {auc_of(attack):.3f} on members vs non-members"
              if np.isfinite(auc_of(attack)) else "no member/non-member AUC to rank by: the suite's first white-box attack")
    images = canaries.images
    try:
        raw = np.asarray(attack.score(images.images, images.masks, vendor=images.vendor, group=images.group), np.float64)
    except UserError as exc:
        return unavailable(f"white-box attack '{attack.name}' could not score the canaries: {exc}")
    if raw.shape != (len(images),) or not np.isfinite(raw).all():
        return unavailable(f"white-box attack '{attack.name}' returned non-finite or mis-shaped canary scores")
    scores = canaries.canary_scores(raw)
    res = one_run.audit_canaries(scores, canaries.included, delta=delta)
    extras["one_run"] = {"attack": attack.name, "unit": canaries.unit, "subject_ids": canaries.subject_ids.tolist(),
                         "scores": scores.round(6).tolist(), "included": canaries.included.tolist(),
                         "n_slices": np.bincount(canaries.owner, minlength=canaries.k).tolist()}
    return metric(res.epsilon_lb, "1", n=res.m, params=_one_run_params(res, delta, claimed_epsilon),
                  method=_one_run_method(res, canaries, attack.name, chosen),
                  notes=_one_run_notes(res, claimed_epsilon))


def _one_run_params(res: one_run.OneRunAudit, delta: float, claimed_epsilon: float | None) -> dict[str, float]:
    params = {"k": res.k, "guesses": res.r, "correct": res.v, "delta": delta, "ceiling": round(res.ceiling, 4)}
    if claimed_epsilon is not None:  # 1: no outcome of this game could have contradicted the claim
        params["claim_above_ceiling"] = float(claimed_epsilon > res.ceiling)
    return params


def _one_run_method(res: one_run.OneRunAudit, canaries: CanarySet, attack: str, chosen: str) -> str:
    if canaries.unit == "subject":
        what = (f"{res.m} canary subjects, each trained on with all of its slices with probability 1/2 "
                f"({res.n_included} were); white-box attack '{attack}' ({chosen}) scores every slice and a "
                "canary scores the mean over its slices")
    else:
        what = (f"{res.m} canary images, each trained on with probability 1/2 ({res.n_included} were); "
                f"white-box attack '{attack}' ({chosen}) scores them")
    return (f"one-run DP audit (Steinke, Nasr, Jagielski 2023): {what}; the k highest are guessed 'trained on' "
            f"and the k lowest 'left out' for k in {list(res.grid)} fixed in advance (Bonferroni over the grid); "
            f"largest epsilon rejected at {res.confidence:.0%} confidence")


def _one_run_notes(res: one_run.OneRunAudit, claimed_epsilon: float | None) -> str:
    claim = "" if claimed_epsilon is None else f"; claimed epsilon {claimed_epsilon:.4g}"
    power = f"; the largest bound any outcome of this game could prove is {res.ceiling:.2f}"
    if claimed_epsilon is not None and claimed_epsilon > res.ceiling:
        power += " (below the claim: this audit cannot contradict it, whatever the model leaks)"
    return f"{res.v} of {res.r} guesses right at k = {res.k}{claim}{power}"


# --------------------------------------------------------------------------- artefacts


def write_artifacts(run_dir: str | Path, table: pd.DataFrame, extras: dict[str, Any]) -> dict[str, Path]:
    """Write ``privacy_per_sample.csv`` and ``privacy_curves.json`` (atomically) into ``run_dir``."""
    run_dir = Path(run_dir)
    csv = write_csv(run_dir / "privacy_per_sample.csv", table)
    curves = atomic_write_json(run_dir / "privacy_curves.json", jsonable(extras))
    return {"table": csv, "curves": curves}


