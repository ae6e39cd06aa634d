"""Utility audit (issue 11) at smoke scale: 64x64 phantom (10 subjects), tiny BasicUNets, tens
of steps, one thread (a second job on a 2-core machine makes two threads much slower).

The acceptance test (``holdout`` TSTR close to ``real``, ``noise`` clearly worse) uses one seed
and 60 steps: the nets reach a mean Dice of about 0.7-0.8 there (seed 0 when this was written:
real 0.73, holdout TSTR 0.77, noise TSTR 0.33; over seeds 0-2 the holdout-minus-real gap ranged
from -0.01 to +0.05), so the bound on the holdout-vs-real gap is loose (0.10, vs 0.03 at the
quick preset in BENCHMARKS.md) and the noise gap must exceed 0.2.
"""

from __future__ import annotations

import dataclasses

import json

import numpy as np
import pandas as pd
import pytest
import torch

from audit.core.logs import _state as log_state
from audit.core.results import metric, new_results, unavailable, validate_results
from audit.utility import metrics as M
from audit.utility.net import Pool, TrainSpec, predict, train_segmenter
from audit.pipeline.utility_stage import (
    SettingData,
    UtilityOptions,
    build_settings,
    labelled_slices,
    plan_subjects,
    train_and_score,
    unavailable_section,
    utility_section,
    vendor_key,
)
from generators.reference import NoiseGenerator
from generators.sampleset import SampleSet

FAST = UtilityOptions(seeds=1, steps=60, batch_size=8, width=8, threads=1)


@pytest.fixture(autouse=True)
def _quiet():
    old = log_state["quiet"]
    log_state["quiet"] = True  # no progress bars in test output
    yield
    log_state["quiet"] = old


@pytest.fixture(scope="module")
def cohort():
    from cohorts import source
    from cohorts.cache import load_prepared
    from cohorts.preprocess import PreprocessConfig
    from cohorts.splits import make_lovo_splits, make_splits

    root = source.resolve("phantom", phantom_subjects=10, phantom_seed=0)
    p = load_prepared(root, PreprocessConfig(target_spacing=3.0, size=64), progress=False)
    return p, make_splits(p, seed=0), make_lovo_splits(p, None, seed=0)


def _validate(section):
    doc = new_results(run_id="t", generator="holdout", preset="smoke", created_utc="2026-11-26T00:00:00Z")
    doc["provenance"] = {"config_sha256": "ab" * 32, "data_hash": "cd" * 32, "seed": 0}
    doc["utility"] = section
    validate_results(doc)


def _holdout_like(p, splits):
    """What the ``holdout`` reference generator returns: real images of the reference split, with masks."""
    ref = labelled_slices(p, splits["reference"], "ed_es")
    return SampleSet(images=ref.images, masks=ref.masks, spacing=ref.spacing, subject_ids=ref.subject_ids,
                     vendor=ref.vendor, group=ref.group)


def _noise(p, splits):
    ref = labelled_slices(p, splits["reference"], "ed_es")
    g = NoiseGenerator()
    g.spacing, g.shape = ref.spacing, ref.shape
    return g.sample(conditions={"masks": ref.masks, "subject_ids": ref.subject_ids, "vendor": ref.vendor}, seed=0)


def _setup(p, splits, samples, held="D", generator=None, opts=FAST):
    plan = plan_subjects(p, splits, condition_split="reference", sample_subject_ids=samples.subject_ids,
                         heldout_vendor=held, val_fraction=0.2, seed=0)
    real, val = labelled_slices(p, plan.train, "ed_es"), labelled_slices(p, plan.val, "ed_es")
    evaluation = labelled_slices(p, [i for v in plan.vendors for i in plan.evaluate[v]], "ed_es")
    settings = build_settings(real, val, samples, generator, plan, opts, seed=0)
    return plan, settings, evaluation


# --------------------------------------------------------------------------- metrics


def test_assd_added_to_dice_hd95_and_empty_predictions_flagged():
    ref = np.zeros((2, 40, 40), np.uint8)
    ref[:, 10:20, 10:20] = 3
    pred = ref.copy()
    pred[1] = 0  # the net found nothing in image 1
    t = M.per_image(pred, ref, spacing=(1.5, 1.5))
    assert t["dice_LV"].tolist() == [1.0, 0.0]
    assert t["assd_LV"][0] == pytest.approx(0.0) and t["hd95_LV"][0] == pytest.approx(0.0)
    assert np.isnan(t["assd_LV"][1]) and np.isnan(t["hd95_LV"][1])  # undefined, never 0
    assert t["empty_pred_LV"].tolist() == [False, True]
    assert not t["empty_pred_RV"].any()  # RV absent from the ground truth: not an empty prediction
    shifted = np.roll(ref[:1], 2, axis=1)
    s = M.per_image(shifted, ref[:1], spacing=(1.5, 1.5))
    assert 0 < s["assd_LV"][0] <= s["hd95_LV"][0] <= 3.0 + 1e-6


def test_all_empty_predictions_make_distances_unavailable_with_counts():
    ref = np.zeros((4, 32, 32), np.uint8)
    ref[:, 8:20, 8:20] = 3
    ref[:, 2:6, 2:6] = 1
    t = M.per_image(np.zeros_like(ref), ref, (2.0, 2.0))
    t.insert(0, "seed", 0)
    t.insert(0, "subject_id", ["s0", "s0", "s1", "s1"])
    out = M.absolute_entries(t, ["s0", "s1"], [0], n_boot=100, seed=0, what="test")
    assert out["dice"]["LV"]["value"] == 0.0  # Dice of a missed structure is a real 0
    for key in ("hd95_mm", "assd_mm"):
        e = out[key]["LV"]
        assert e["status"] == "unavailable" and "empty_prediction=4" in e["reason"]
    assert out["hd95_mm"]["MYO"]["status"] == "unavailable"  # MYO absent everywhere
    _validate({"settings": {"real": {"A": out}}})


def test_crossed_bootstrap():
    a = np.array([[0.8, 0.82], [0.7, 0.72], [0.9, 0.88], [0.6, 0.62]])
    lo, hi = M.crossed_bootstrap(a, n_boot=500, seed=0)
    assert lo <= a.mean() <= hi
    lo, hi = M.crossed_bootstrap(a, a - 0.05, n_boot=500, seed=0)  # a constant paired shift
    assert (lo, hi) == pytest.approx((0.05, 0.05), abs=0.03)
    assert np.isnan(M.crossed_bootstrap(a[:1], n_boot=10)[0])  # one subject: no CI
    assert M.crossed_bootstrap(a, n_boot=200, seed=3) == M.crossed_bootstrap(a, n_boot=200, seed=3)


def test_verdict_and_wilcoxon():
    assert M.verdict(0.01, 0.05, True) == "improves"
    assert M.verdict(-0.05, -0.01, True) == "worsens"
    assert M.verdict(-0.01, 0.05, True) == "no evidence"
    assert M.verdict(-3.0, -1.0, False) == "improves"  # a smaller HD95 is better
    p, _ = M.wilcoxon_p(np.array([0.1, 0.2, 0.15, 0.3, 0.05, 0.12, 0.22, 0.18, 0.09, 0.11]))
    assert p < 0.01
    assert M.wilcoxon_p(np.array([0.1]))[0] is None
    assert M.wilcoxon_p(np.zeros(5))[0] == 1.0


# --------------------------------------------------------------------------- subjects and settings


def test_evaluation_subjects_never_seen_by_the_generator(cohort):
    p, splits, lovo = cohort
    samples = _holdout_like(p, splits)
    plan = plan_subjects(p, splits, condition_split="reference", sample_subject_ids=samples.subject_ids,
                         heldout_vendor=lovo.heldout_vendor, val_fraction=0.2, seed=0)
    seen = set(splits["train"]) | set(splits["reference"])
    evaluated = {i for ids in plan.evaluate.values() for i in ids}
    assert evaluated and not evaluated & seen
    assert not evaluated & (set(plan.train) | set(plan.val))
    assert not set(plan.train) & set(plan.val) and plan.val
    assert all(p[i].vendor != lovo.heldout_vendor for i in plan.train + plan.val)
    assert set(plan.evaluate) == set(p.vendors)
    # a sample set naming a test subject (an external set, a copy of test data) removes it from evaluation
    victim = splits["test"][0]
    plan2 = plan_subjects(p, splits, condition_split="reference", sample_subject_ids=np.array([victim]),
                          heldout_vendor="D", val_fraction=0.2, seed=0)
    assert victim not in {i for ids in plan2.evaluate.values() for i in ids}


def test_synthetic_without_masks_is_unavailable_with_reason(cohort):
    p, splits, _ = cohort
    s = _holdout_like(p, splits)
    bare = SampleSet(images=s.images, spacing=s.spacing, subject_ids=s.subject_ids, vendor=s.vendor)
    plan, settings, _ = _setup(p, splits, bare)
    assert isinstance(settings["real"], SettingData)
    for name in ("synthetic", "real+synthetic"):
        assert isinstance(settings[name], str) and "no masks" in settings[name]
    assert "no SDEdit sampler" in settings["real+sdedit"]
    assert settings["real+augmentation"].strong and settings["real+augmentation"].train is settings["real"].train
    skipped = {"real": "skipped", "real+augmentation": "skipped"}
    section = utility_section(pd.DataFrame(), {k: v for k, v in settings.items() if k not in skipped} | skipped,
                              plan, seeds=1, n_boot=50, seed=0)
    for v in plan.vendors:
        for key in ("vs_real", "vs_augmentation"):
            e = section[key]["real+synthetic"][v]["dice_diff"]
            assert e["status"] == "unavailable" and "no masks" in e["reason"]
    assert section["settings"]["synthetic"]["status"] == "unavailable"
    _validate(section)


def test_heldout_vendor_images_dropped_from_synthetic_data(cohort):
    p, splits, _ = cohort
    s = _holdout_like(p, splits)
    vendor = s.vendor.copy()
    vendor[: len(vendor) // 2] = "D"
    mixed = SampleSet(images=s.images, masks=s.masks, spacing=s.spacing, subject_ids=s.subject_ids, vendor=vendor)
    _, settings, _ = _setup(p, splits, mixed)
    syn = settings["synthetic"]
    assert len(syn.train) == int((vendor != "D").sum())
    assert any("held-out vendor D dropped" in n for n in syn.notes)
    no_vendor = SampleSet(images=s.images, masks=s.masks, spacing=s.spacing, subject_ids=s.subject_ids)
    _, settings, _ = _setup(p, splits, no_vendor)
    assert any("no vendor labels" in n for n in settings["synthetic"].notes)


def test_no_evaluation_subject_of_the_heldout_vendor_is_unavailable(cohort):
    p, splits, _ = cohort
    # move every subject of vendor D into train: the held-out vendor has nobody left to test on
    d_ids = [i for i in p.ids if p[i].vendor == "D"]
    moved = type(splits)({k: [i for i in v if i not in d_ids] for k, v in splits.assignments.items()},
                         splits.data_hash, splits.seed, splits.fractions)
    moved.assignments["train"] = sorted(moved.assignments["train"] + d_ids)
    samples = _holdout_like(p, splits)
    plan, settings, evaluation = _setup(p, moved, samples, opts=UtilityOptions(seeds=1, steps=2, batch_size=4, width=2,
                                                                               threads=1))
    assert plan.evaluate["D"] == []
    table, _ = train_and_score(settings, evaluation, UtilityOptions(seeds=1, steps=2, batch_size=4, width=2, threads=1),
                               seed=0)
    section = utility_section(table, settings, plan, seeds=1, n_boot=50, seed=0)
    e = section["vs_real"]["real+synthetic"]["D"]["dice_diff"]
    assert e["status"] == "unavailable" and "held-out vendor D" in e["reason"]
    assert section["settings"]["real"]["D"]["status"] == "unavailable"
    assert section["data"]["eval_subjects"]["D"]["status"] == "unavailable"
    _validate(section)


# --------------------------------------------------------------------------- acceptance (smoke scale)


@pytest.fixture(scope="module")
def acceptance(cohort):
    """real, TSTR on a holdout-like set and TSTR on mask-shaped noise (one seed, 60 steps)."""
    log_state["quiet"] = True
    p, splits, _ = cohort
    out = {}
    for name, samples in (("holdout", _holdout_like(p, splits)), ("noise", _noise(p, splits))):
        plan, settings, evaluation = _setup(p, splits, samples)
        keep = ("real", "synthetic") if name == "holdout" else ("synthetic",)
        settings = {k: (v if k in keep else "skipped in this test") for k, v in settings.items()}
        table, runs = train_and_score(settings, evaluation, FAST, seed=0)
        out[name] = (plan, settings, table, runs)
    return out


def _mean_dice(table, setting):
    return float(table.loc[table["setting"] == setting, "dice_mean"].mean())


def test_holdout_tstr_close_to_real_and_noise_clearly_worse(acceptance):
    plan, settings, table, runs = acceptance["holdout"]
    real, tstr = _mean_dice(table, "real"), _mean_dice(table, "synthetic")
    noise = _mean_dice(acceptance["noise"][2], "synthetic")
    assert real > 0.5, f"the real baseline did not learn at smoke scale (Dice {real:.3f})"
    assert abs(tstr - real) <= 0.10, (real, tstr)
    assert noise < real - 0.2, (real, noise)
    assert (runs["best_step"] > 0).all() and (runs["steps"] <= 60).all()


def test_section_shape_units_and_schema(acceptance):
    plan, settings, table, _ = acceptance["holdout"]
    section = utility_section(table, settings, plan, seeds=1, n_boot=100, seed=0)
    _validate(section)
    for v in plan.vendors:
        if not plan.evaluate[v]:
            assert section["vs_real"]["synthetic"][v]["dice_diff"]["status"] == "unavailable"
            continue
        node = section["settings"]["real"][v]
        assert node["dice"]["mean"]["unit"] == "1" and node["hd95_mm"]["LV"]["unit"] == "mm"
        assert node["assd_mm"]["LV"]["unit"] == "mm"
        assert node["dice"]["mean"]["n"] == len(plan.evaluate[v])
        vol = node["dice_volume"]  # the ACDC challenge's per-stack Dice beside the per-slice one
        assert set(vol) == {"RV", "MYO", "LV", "mean"} and vol["mean"]["n"] == len(plan.evaluate[v])
        assert 0 <= vol["mean"]["value"] <= 1 and "ACDC challenge" in vol["mean"]["method"]
        diff = section["vs_real"]["synthetic"][v]
        d = diff["dice_diff"]
        assert d["unit"] == "1" and d["n"] == len(plan.evaluate[v])
        assert d["notes"].split(";")[0] in ("verdict: improves", "verdict: no evidence", "verdict: worsens")
        assert set(diff["dice_diff_by_structure"]) == {"RV", "MYO", "LV"}
        assert set(diff["hd95_diff_mm"]) == {"RV", "MYO", "LV", "mean"}
        assert set(diff["wilcoxon_p"]["dice"]) == {"RV", "MYO", "LV"}
        real_mean = section["settings"]["real"][v]["dice"]["mean"]["value"]
        syn_mean = section["settings"]["synthetic"][v]["dice"]["mean"]["value"]
        assert d["value"] == pytest.approx(syn_mean - real_mean, abs=1e-9)
    assert section["vs_real"]["real+synthetic"]["D"]["dice_diff"]["status"] == "unavailable"  # skipped here
    json.dumps(section, allow_nan=False)


def test_training_is_deterministic():
    rng = np.random.default_rng(0)
    images = rng.random((24, 32, 32), dtype=np.float32)
    masks = (images > 0.5).astype(np.uint8) * 3
    pool = Pool(images, masks)
    spec = TrainSpec(steps=4, batch_size=4, width=2, eval_every=2)
    torch.set_num_threads(1)
    a, ia = train_segmenter(pool, pool, spec, seed=5)
    b, ib = train_segmenter(pool, pool, spec, seed=5)
    c, _ = train_segmenter(pool, pool, spec, seed=6)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))
    assert np.array_equal(predict(a, images), predict(b, images))
    assert ia["best_val_dice"] == ib["best_val_dice"]


def test_trainings_side_by_side_give_the_serial_results(cohort):
    """Two worker processes with one thread each score exactly what one process with one thread does."""
    p, splits, _ = cohort
    plan, settings, _ = _setup(p, splits, _holdout_like(p, splits))
    ev = labelled_slices(p, [i for v in plan.vendors for i in plan.evaluate[v]], "ed_es")
    opts = UtilityOptions(seeds=1, steps=4, batch_size=4, width=4, crop=32, threads=1)
    serial, runs1 = train_and_score(settings, ev, opts, seed=0)
    parallel, runs2 = train_and_score(settings, ev, dataclasses.replace(opts, threads=2), seed=0)
    assert len(runs1) == len(runs2) >= 3
    pd.testing.assert_frame_equal(serial, parallel)
    assert list(runs1["best_val_dice"]) == list(runs2["best_val_dice"])


# --------------------------------------------------------------------------- the stage, end to end


class _FakeSDEdit:
    """Stands in for a diffusion generator: ``sdedit`` brightens the image a little (seeded noise)."""

    name = "fake-sdedit"

    class vocab:  # noqa: N801 - mimics generator.vocab.vendors
        vendors = ["A", "B", "C", "D"]

    def __init__(self):
        self.sampling = {}
        self.calls = []
        self.labelled_calls = []

    def sdedit(self, reference, masks, *, strength, vendor, group, seed):
        self.calls.append((len(reference), tuple(vendor)))
        self.labelled_calls.append(masks is not None)
        rng = np.random.default_rng(seed)
        return np.clip(reference * 0.9 + 0.05 + rng.normal(0, 0.01, reference.shape), 0, 1).astype(np.float32)


def test_sdedit_batches_are_larger_on_a_gpu():
    from audit.pipeline.utility_pools import sdedit_chunk

    class OnCuda(_FakeSDEdit):
        device = torch.device("cuda", 0)  # only read, never used

        def sdedit(self, reference, masks, *, strength, vendor, group, seed, batch_size=32):
            return reference

    assert sdedit_chunk(_FakeSDEdit()) == (32, {})  # CPU (no device attribute), no batch_size argument
    assert sdedit_chunk(OnCuda()) == (256, {"batch_size": 256})
    OnCuda.device = torch.device("cpu")
    assert sdedit_chunk(OnCuda()) == (32, {"batch_size": 32})


def test_run_utility_end_to_end(cohort, tmp_path):
    from audit.pipeline.config import resolve_config
    from audit.pipeline.context import RunContext
    from audit.pipeline.rundir import RunDir
    from audit.pipeline.utility_stage import run_utility
    from cohorts.splits import save_splits
    from generators import registry

    from cohorts.phantom import write_dataset

    p, splits, lovo = cohort
    # a second dataset in the M&Ms layout: every net is scored on it too (--utility-test-data)
    external = write_dataset(tmp_path / "mnms", n_subjects=2, seed=7, layout="mnms", vendors=("A", "B"), progress=False)
    cfg = resolve_config(preset="smoke", generator="holdout",
                         overrides={"train.num_threads": 1, "audit.utility_test_data": str(external),
                                    "audit.utility_tta_strengths": "0.25,0.5"})
    save_splits(lovo, tmp_path / "splits_lovo.json")
    gen = _FakeSDEdit()
    ctx = RunContext(cfg=cfg, run_dir=RunDir(tmp_path), entry=registry.get("holdout"),
                     artefacts={"prepared": p, "splits": splits, "samples": _holdout_like(p, splits), "generator": gen})
    info = run_utility(ctx)
    section = json.loads((tmp_path / "sections" / "utility.json").read_text())
    assert section == ctx.artefacts["results.utility"]
    _validate(section)
    assert info["heldout_vendor"] == lovo.heldout_vendor == "D"
    assert info["trainings"] == 5 * 2  # five settings x two smoke seeds
    assert info["eval_crop"] == "motion"  # the ground truth did not place the evaluation windows
    protocol = section["design"]["generator_vendors"]  # the report states the protocol
    assert protocol["value"] >= 1 and protocol["method"].startswith("all-vendors protocol")
    # SDEdit targets are seen vendors other than the source, never the held-out one
    targets = {v for _, vs in gen.calls for v in vs}
    assert targets and "D" not in targets
    # the sign-off contract: one dice_diff entry per cohort vendor under real+synthetic
    per_vendor = section["vs_real"]["real+synthetic"]
    assert set(per_vendor) == {vendor_key(v) for v in p.vendors} | {"external@A", "external@B"}
    for v in ("external@A", "external@B"):  # one external subject each, never trained on
        assert per_vendor[v]["dice_diff"]["n"] == 1
        assert "external dataset" in section["data"]["eval_subjects"][v]["method"]
        assert "value" in section["vs_augmentation"]["real+synthetic"][v]["dice_diff"]
    for v, node in per_vendor.items():
        e = node["dice_diff"]
        if ctx.artefacts["results.utility"]["data"]["eval_subjects"][v].get("status") == "unavailable":
            assert e["status"] == "unavailable"
        else:
            assert e["unit"] == "1" and e["n"] >= 1 and "verdict:" in e["notes"]
    assert "value" in per_vendor["D"]["dice_diff"]  # the held-out vendor is scored
    subj = pd.read_csv(tmp_path / "utility_per_subject.csv")
    assert set(subj["setting"]) == {"real", "real+augmentation", "synthetic", "real+synthetic", "real+sdedit"}
    # every generator setting is also compared with the augmentation baseline, per vendor
    assert set(section["vs_augmentation"]) == {"synthetic", "real+synthetic", "real+sdedit"}
    e = section["vs_augmentation"]["real+synthetic"]["D"]["dice_diff"]
    assert "real+synthetic minus real+augmentation" in e["method"] and "verdict:" in e["notes"]
    assert {"dice_RV", "hd95_LV", "assd_MYO", "empty_pred_LV", "images"} <= set(subj.columns)
    runs = pd.read_csv(tmp_path / "utility_training.csv")
    assert len(runs) == 10 and (runs["step_s"] > 0).all()
    # test-time adaptation: the unseen domains (held-out D, the external vendors) restyled without labels
    tta = section["test_time_adaptation"]
    assert set(tta) == {"sdedit_0.25", "sdedit_0.5"}
    for strength in tta.values():
        assert set(strength) == {"D", "external@A", "external@B"}
        e = strength["D"]["vs_raw"]["dice_diff"]
        assert "adapted (SDEdit" in e["method"] and "raw scans" in e["method"] and "verdict:" in e["notes"]
        assert "value" in strength["D"]["adapted"]["dice"]["mean"]
    assert False in gen.labelled_calls  # the TTA calls carried no mask (real+sdedit's do)
    masks = section["synthetic_masks"]  # no anatomy section in this context: the check says why, never a number
    assert masks["judge_dice"]["status"] == "unavailable" and "anatomy stage not run" in masks["judge_dice"]["reason"]
    assert {v for v in subj["vendor"] if v.startswith("tta")} == {f"tta{s}@{v}" for s in ("0.25", "0.5")
                                                                   for v in ("D", "external@A", "external@B")}


def test_switched_off_and_bad_options(cohort, tmp_path):
    from audit.pipeline.config import resolve_config
    from audit.core.errors import UserError
    from audit.pipeline.context import RunContext
    from audit.pipeline.rundir import RunDir
    from audit.pipeline.utility_stage import run_utility
    from audit.pipeline.utility_stage import options_from_config

    p, splits, _ = cohort
    cfg = resolve_config(preset="smoke", generator="holdout", overrides={"audit.utility": False})
    ctx = RunContext(cfg=cfg, run_dir=RunDir(tmp_path), entry=None,
                     artefacts={"prepared": p, "splits": splits, "samples": _holdout_like(p, splits)})
    run_utility(ctx)
    section = ctx.artefacts["results.utility"]
    assert section["vs_real"]["real+synthetic"]["A"]["dice_diff"]["status"] == "unavailable"
    _validate(section)
    _validate(unavailable_section("why", ["A", "Siemens Healthineers"]))
    assert vendor_key("Siemens Healthineers") == "Siemens_Healthineers"
    cfg.audit.utility_synthetic_ratio = -1.0  # until the key exists in audit.pipeline.config, set it as an attribute
    with pytest.raises(UserError, match="utility_synthetic_ratio"):
        options_from_config(cfg)
    del cfg.audit.utility_synthetic_ratio


def test_dice_bars_for_the_report():
    section = {"settings": {"real": {"A": {"dice": {"LV": metric(0.9, "1", method="m", ci=(0.8, 0.95), n=3),
                                                    "RV": unavailable("x")}}},
                            "real+sdedit": unavailable("no SDEdit")}}
    assert M.dice_bars(section) == [("real / A / LV", (0.9, 0.8, 0.95))]


def test_single_vendor_cohort_uses_the_standard_splits_and_says_so(cohort, tmp_path):
    import dataclasses

    from audit.pipeline.config import resolve_config
    from audit.pipeline.context import RunContext
    from audit.pipeline.rundir import RunDir
    from audit.pipeline.utility_stage import run_utility
    from cohorts.splits import make_splits

    p, _, _ = cohort
    one = dataclasses.replace(p, subjects=[s.with_arrays(vendor="A") for s in p.subjects])
    splits = make_splits(one, seed=0)
    cfg = resolve_config(preset="smoke", generator="holdout", overrides={"train.num_threads": 1})
    cfg.audit.utility_seeds = 1  # an attribute until the key exists in audit.pipeline.config
    ctx = RunContext(cfg=cfg, run_dir=RunDir(tmp_path), entry=None,
                     artefacts={"prepared": one, "splits": splits, "samples": _holdout_like(one, splits), "generator": None})
    info = run_utility(ctx)
    section = ctx.artefacts["results.utility"]
    _validate(section)
    assert info["heldout_vendor"] is None and info["trainings"] == 4  # real, real+augmentation, synthetic, real+synthetic
    assert "no leave-one-vendor-out" in section["design"]["heldout_vendor"]["reason"]
    assert set(section["vs_real"]["real+synthetic"]) == {"A"}
    assert "value" in section["vs_real"]["real+synthetic"]["A"]["dice_diff"]
    assert "not the training noise" in section["vs_real"]["real+synthetic"]["A"]["dice_diff"]["notes"]  # one seed
    assert section["settings"]["real+sdedit"]["status"] == "unavailable"
    assert "external sample set" in section["settings"]["real+sdedit"]["reason"]
