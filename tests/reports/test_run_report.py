"""The run report (``reports.run_report.write_report``) on a small synthetic run directory.

The fixture writes every input an ``audit run`` leaves behind (results.json valid against the v1
schema, privacy_curves.json, samples.npz, judge_samples.npz, the per-sample CSVs, a clinical
PNG, config / env / state), small enough that a full render takes about a second. Tests that do
not look at figures replace the figure builder with a stub to stay fast.
"""

from __future__ import annotations

import base64
import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from audit.core.errors import UserError
from audit.core.results import metric, new_results, unavailable, write_results
from generators.sampleset import SampleSet
from reports import run_report
from reports.run_report import SECTION_IDS, render_report, write_report

EVIL = "<script>alert(1)</script>"
PNG_SIG = b"\x89PNG\r\n\x1a\n"
N, H = 8, 32


# --------------------------------------------------------------------------- fixture

def _m(v, unit="1", method="test method", ci=None, n=16, notes=None):
    return metric(v, unit, method=method, ci=ci, n=n, notes=notes)


def _attack(auc):
    level = {
        "auc": _m(auc, method="ROC AUC (Mann-Whitney)", ci=(auc - 0.1, auc + 0.1), n=32),
        "balanced_accuracy": _m(0.55, n=32),
        "tpr_at_fpr_1%": unavailable("only 16 non-member images: a FPR of 0.01 needs at least 100"),
        "tpr_at_fpr_0.1%": unavailable("only 16 non-member images: a FPR of 0.001 needs at least 1000"),
        "n_members": _m(16, "images"),
        "n_nonmembers": _m(16, "images"),
    }
    return {"image": level, "subject_max": dict(level), "subject_mean": dict(level)}


def _masks(rng):
    yy, xx = np.mgrid[:H, :H]
    masks = np.zeros((N, H, H), np.uint8)
    for i in range(N):
        cx, cy = 16 + rng.integers(-2, 3), 16 + rng.integers(-2, 3)
        r = np.hypot(yy - cy, xx - cx)
        masks[i][r < 9] = 2
        masks[i][r < 6] = 3
        masks[i][(np.hypot(yy - cy, xx - cx + 9) < 6) & (masks[i] == 0)] = 1
    return masks


def build_run_dir(root: Path, *, generator: str = "noise", subject: str = "patient001") -> Path:
    rng = np.random.default_rng(0)
    run = root / "run"
    run.mkdir(parents=True)
    doc = new_results(run_id="test-run", generator=generator, preset="smoke", created_utc="2026-01-01T00:00:00Z")
    feat = "FID (Heusel et al. 2017) in judge (myopari 0.1.6 FC-DenseNet, pooled 288-d encoder) features"
    prdc = lambda v: _m(v, method="precision in judge (myopari 0.1.6 FC-DenseNet, pooled 288-d encoder) features",  # noqa: E731
                        ci=(max(0, v - 0.2), min(1, v + 0.2)))
    doc["privacy"] = {
        "setup": {"member_images": _m(16, "images"), "nonmember_images": _m(16, "images")},
        "summary": {"best_black_box_auc": _m(0.58, ci=(0.45, 0.7), n=32, notes="attack 'gan_leaks_dcr' (image level)"),
                    "best_white_box_auc": unavailable("no white-box attack produced scores")},
        "attacks": {"gan_leaks_dcr": _attack(0.58), "domias": _attack(0.51),
                    "loss_threshold": unavailable("generator offers no per-image white-box score")},
        "memorisation": {
            space: {"copy_rate": _m(0.0625, "fraction", ci=(0.0, 0.125)), "holdout_copy_rate": _m(0.0625, "fraction"),
                    "copy_threshold": _m(0.2), "dcr_ratio": _m(0.52, ci=(0.3, 0.7)),
                    "nn_distance_to_train_median": _m(0.3), "holdout_nn_distance_to_train_median": _m(0.28)}
            for space in ("pixel_correlation", "pca")},
        "dp_verification": {"claimed_epsilon": unavailable("no DP claim was made for this generator"),
                            "epsilon_lb": _m(0.0, n=6, notes="form tpr/fpr")},
    }
    doc["fidelity"] = {
        "judge": {
            "synthetic_vs_test": {"fid": _m(11.5, "feature units^2", method=feat, ci=(10.0, 13.0)), "kid": _m(0.7, method=feat),
                                  "precision": prdc(0.3), "recall": prdc(0.4), "density": prdc(0.2), "coverage": prdc(0.3)},
            "real_floor": {"fid": _m(5.0, "feature units^2", method=feat, ci=(2.0, 11.0)), "kid": _m(0.07, method=feat),
                           "precision": prdc(0.6), "recall": prdc(0.7), "density": prdc(0.3), "coverage": prdc(0.4)},
            "fid_ratio_to_floor": _m(2.3),
        },
        "inception": unavailable("standard Inception FID/KID need ImageNet weight files that cannot be downloaded here"),
        "paired": {"sdedit_strength_0.3": {"psnr": _m(24.0, "dB"), "ssim": _m(0.8), "ms_ssim": _m(0.9)},
                   "autoencoder": unavailable("the generator has no latent autoencoder")},
    }
    agreement = lambda d: {  # noqa: E731
        "dice": {s: _m(d, ci=(d - 0.05, d + 0.05)) for s in ("RV", "MYO", "LV", "mean")},
        "hd95_mm": {s: _m(3.0, "mm") for s in ("RV", "MYO", "LV")}}
    criteria = {"lv_connected": _m(1.0, method="the LV is one connected piece: Painchaud criteria"),
                "myo_no_holes": _m(0.9, method="the myocardium has no holes: Painchaud criteria")}
    doc["anatomy"] = {
        "judge_agreement": agreement(0.85),
        "judge_agreement_real_test": agreement(0.9),
        "plausibility": {"synthetic": {"plausible_rate": _m(0.92), "criteria": criteria},
                         "real_test": {"plausible_rate": _m(1.0), "criteria": criteria}},
        "sdedit": {"strength_0.3": {"dice": {"mean": _m(0.8)}}},
        "clinical": {"lv_ef_pct": {"pearson_r": _m(0.9), "mae": _m(3.0, "%"), "bland_altman_bias": _m(1.0, "%"),
                                   "loa_low": _m(-5.0, "%"), "loa_high": _m(7.0, "%")}},
    }
    doc["utility"] = {"audit": unavailable("the utility audit is not available yet")}
    doc["dp"] = {"accounting": unavailable("trained without differential privacy")}
    doc["provenance"] = {"config_sha256": "a" * 64, "data_hash": "b" * 64, "seed": 0, "git_commit": "c" * 40,
                         "timing_s": {"fit": 1.0, "privacy": 0.5}}
    write_results(run / "results.json", doc)

    roc = {"fpr": [0.0, 0.25, 0.5, 1.0], "tpr": [0.0, 0.5, 0.75, 1.0]}
    curves = {
        "attacks": {"gan_leaks_dcr": {"kind": "black-box", "description": "GAN-Leaks: distance to the closest sample"},
                    "domias": {"kind": "black-box", "description": "DOMIAS density ratio"}},
        "roc": {a: {lv: roc for lv in ("image", "subject_max", "subject_mean")} for a in ("gan_leaks_dcr", "domias")},
        "memorisation": {
            space: {"distance": f"{space} distance",
                    "histogram": {"bin_edges": list(np.linspace(0, 1, 11)), "copy_threshold": 0.2,
                                  "synthetic_to_train": [0, 1, 2, 3, 2, 0, 0, 0, 0, 0],
                                  "holdout_to_train": [0, 0, 1, 3, 3, 1, 0, 0, 0, 0]},
                    "top_pairs": [{"distance": 0.1 + 0.05 * i, "synthetic_index": i, "train_index": i, "train_subject": subject}
                                  for i in range(4)]}
            for space in ("pixel_correlation", "pca")},
    }
    (run / "privacy_curves.json").write_text(json.dumps(curves))

    masks = _masks(rng)
    images = np.clip(0.2 + 0.25 * masks + rng.normal(0, 0.05, masks.shape), 0, 1).astype(np.float32)
    SampleSet(images=images, spacing=np.array([1.5, 1.5], np.float32), masks=masks,
              subject_ids=np.array([subject] * N), vendor=np.array(["A"] * N), group=np.array(["NOR"] * N)).save(run / "samples.npz")
    np.savez(run / "judge_samples.npz", sample_index=np.arange(N), labels=masks)
    (run / "anatomy_per_sample.csv").write_text(
        "sample_index,subject_id,dice_RV,dice_MYO,dice_LV\n" + "".join(f"{i},{subject},0.8,0.85,\n" for i in range(N)))
    (run / "privacy_per_sample.csv").write_text(
        "row_id,split,member,subject_id,nn_distance_pca\n"
        + "".join(f"r{i},{'train' if i % 2 else 'holdout'},{bool(i % 2)},{subject},{0.1 * i}\n" for i in range(8)))
    (run / "clinical_per_subject.csv").write_text("subject_id,lv_ef_pct_measured,lv_ef_pct_requested\n"
                                                  f"{subject},55,57\n")
    (run / "figures").mkdir()
    from reports import plots
    (run / "figures" / "clinical_lv_ef_pct.png").write_bytes(
        plots.figure_bytes(plots.bar_ci_figure(["a"], {"x": [(1.0, None, None)]}, ylabel="y", title="t"), "png"))
    (run / "config.json").write_text(json.dumps({"generator": generator, "seed": 0, "preset": "smoke",
                                                 "audit": {"privacy": True, "anatomy": True, "utility": True},
                                                 "data": {"source": "phantom", "split_file": subject}}))
    (run / "env.json").write_text(json.dumps({"python": "3.11", "git": {"commit": "c" * 40, "dirty": False},
                                              "packages": {"numpy": "2.0"}, "data_hash": "b" * 64}))
    (run / "state.json").write_text(json.dumps({"stages": {"fit": {"seconds": 1.0, "finished_utc": "2026-01-01T00:00:01Z"},
                                                           "privacy": {"seconds": 0.5, "members": 16}},
                                                "status": "finished"}))
    return run


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """One full render (real figures) shared by the tests that inspect it."""
    run = build_run_dir(tmp_path_factory.mktemp("full"))
    path = write_report(run)
    return run, path.read_text("utf-8")


@pytest.fixture
def no_figures(monkeypatch):
    """Skip matplotlib in tests about text and structure only."""
    monkeypatch.setattr(run_report._Builder, "_figure", lambda self, *a, **k: None)


def _img_srcs(html: str) -> list[str]:
    return re.findall(r"<img\b[^>]*\bsrc=\"([^\"]*)\"", html)


# --------------------------------------------------------------------------- full report

def test_every_section_present(full):
    _, html = full
    for sid in SECTION_IDS:
        assert f'id="{sid}"' in html, sid
    for tile in ("privacy", "fidelity", "anatomy", "utility"):
        assert f'id="tile-{tile}"' in html
    assert "could not be rendered" not in html and "could not be drawn" not in html


def test_inline_images_decode_as_png(full):
    _, html = full
    srcs = _img_srcs(html)
    # ROC, distance histogram, closest synthetic, PRDC, Dice, sample grid, one clinical PNG
    assert len(srcs) >= 7
    for src in srcs:
        assert src.startswith("data:image/png;base64,"), src[:40]
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data.startswith(PNG_SIG)


def test_self_contained(full):
    _, html = full
    refs = re.findall(r"\b(?:src|href|action|poster|data)\s*=\s*[\"']?([^\"'\s>]+)", html, flags=re.I)
    assert refs
    external = [r for r in refs if re.match(r"(?i)(https?:|//|ftp:|file:)", r)]
    assert not external
    assert not re.search(r"(?i)url\(\s*['\"]?(https?:|//)", html)
    assert not re.search(r"(?i)<(script|iframe|object|embed|link)\b", html)
    assert "Content-Security-Policy" in html
    # every in-page link has its target
    ids = set(re.findall(r"\bid=\"([^\"]+)\"", html))
    for target in re.findall(r"href=\"#([^\"]+)\"", html):
        assert target in ids, target


def test_metrics_link_to_glossary(full):
    _, html = full
    for key in ("auc", "tpr_at_fpr", "copy_rate", "dcr_ratio", "epsilon_lb", "fid", "real_floor", "fid_ratio",
                "precision", "dice", "hd95", "ceiling", "plausible_rate", "plausibility", "pearson_r", "bland_altman"):
        assert f'href="#g-{key}"' in html, key
        assert f'id="g-{key}"' in html, key


def test_content_of_sections(full):
    _, html = full
    assert "judge (myopari 0.1.6 FC-DenseNet, pooled 288-d encoder)" in html  # feature space named
    assert "the utility audit is not available yet" in html
    assert "no white-box attack produced scores" in html
    assert "GAN-Leaks: distance to the closest sample" in html
    assert "the LV is one connected piece" in html
    assert "trained without differential privacy" in html
    assert "c" * 40 in html and "b" * 64 in html  # git commit, data hash
    assert 'id="real-images-banner"' not in html
    assert "0.58" in html  # best black-box AUC headline
    # colours from the shipped default policy (no sign-off yet): mia_auc passes at <= 0.60,
    # fid_vs_real_floor at <= 3, plausible_rate and judge_dice_vs_ceiling at >= 0.90
    assert 'class="tile good" id="tile-privacy"' in html  # 0.58 <= 0.60
    assert 'class="tile good" id="tile-fidelity"' in html  # 2.3 <= 3
    assert 'class="tile good" id="tile-anatomy"' in html  # 0.92 and 0.85/0.9 = 0.94
    assert "cmr-audit default release policy" in html
    assert 'class="tile na" id="tile-utility"' in html


def test_figures_and_tables_written(full):
    run, html = full
    fig_dir = run / "figures"
    stems = {"privacy_roc", "privacy_nn_distance", "privacy_nearest_pixel_correlation", "fidelity_prdc_judge",
             "anatomy_dice", "samples_grid"}
    for stem in stems:
        png, svg = fig_dir / f"{stem}.png", fig_dir / f"{stem}.svg"
        assert png.read_bytes().startswith(PNG_SIG), stem
        assert b"<svg" in svg.read_bytes()[:2000], stem
        assert f"figures/{stem}.png" in html
    tables = sorted((run / "tables").glob("*.csv"))
    names = {t.stem for t in tables}
    assert {"privacy_attacks", "privacy_memorisation", "privacy_dp", "fidelity_judge", "fidelity_paired",
            "anatomy_agreement", "anatomy_plausibility", "anatomy_clinical", "provenance_config", "samples"} <= names
    with (run / "tables" / "privacy_attacks.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    auc = [r for r in rows if r["row"] == "gan_leaks_dcr" and r["column"] == "AUC"]
    assert auc and float(auc[0]["value"]) == pytest.approx(0.58) and float(auc[0]["ci_low"]) == pytest.approx(0.48)
    assert any(r["status"] == "unavailable" and "1000" in r["reason"] for r in rows)
    assert not list(run.glob(".*.tmp")) and not list(fig_dir.glob(".*.tmp"))


# --------------------------------------------------------------------------- privacy of the report

def test_text_is_escaped(tmp_path, no_figures):
    run = build_run_dir(tmp_path, generator=EVIL, subject=EVIL)
    html = write_report(run).read_text("utf-8")
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # subject ids (samples table, nearest-neighbour table), generator name and config strings all escaped
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 4


def test_real_images_banner_only_with_flag(tmp_path, no_figures):
    run = build_run_dir(tmp_path)
    html, _ = render_report(run)
    assert 'id="real-images-banner"' not in html
    html, ctx = render_report(run, include_real_images=True)
    assert 'id="real-images-banner"' in html and "REAL PATIENT DATA" in html
    assert ctx["include_real_images"] is True


# --------------------------------------------------------------------------- bad input

def test_missing_files_are_named(tmp_path, no_figures):
    run = build_run_dir(tmp_path)
    for name in ("privacy_curves.json", "judge_samples.npz", "samples.npz", "state.json"):
        (run / name).unlink()
    shutil.rmtree(run / "figures")
    html = write_report(run).read_text("utf-8")
    for sid in SECTION_IDS:
        assert f'id="{sid}"' in html
    for name in ("privacy_curves.json", "judge_samples.npz", "samples.npz", "state.json", "figures/clinical_*.png"):
        assert re.search(rf"<th scope=\"row\">{re.escape(name)}</th><td>missing</td>", html), name
    assert "samples.npz is missing: no sample grid" in html
    assert "privacy_curves.json is missing" in html


def test_missing_file_reason_from_config(tmp_path, no_figures):
    run = build_run_dir(tmp_path)
    (run / "privacy_curves.json").unlink()
    cfg = json.loads((run / "config.json").read_text())
    cfg["audit"]["privacy"] = False
    (run / "config.json").write_text(json.dumps(cfg))
    html, _ = render_report(run)
    assert "audit.privacy = false in config.json" in html


def test_no_results(tmp_path, no_figures):
    run = build_run_dir(tmp_path)
    (run / "results.json").unlink()
    html = write_report(run).read_text("utf-8")
    for sid in SECTION_IDS:
        assert f'id="{sid}"' in html
    assert 'id="results-error"' in html
    assert "results.json is unreadable" in html or "results.json is missing" in html


def test_other_schema_version_gives_clear_message(tmp_path, no_figures):
    run = build_run_dir(tmp_path)
    doc = json.loads((run / "results.json").read_text())
    doc["schema"] = "cmr-audit/results/v0"
    (run / "results.json").write_text(json.dumps(doc))
    html, _ = render_report(run)
    assert "schema version &#39;cmr-audit/results/v0&#39; is not supported" in html


def test_corrupt_inputs_are_reported(tmp_path, no_figures):
    run = build_run_dir(tmp_path)
    (run / "privacy_curves.json").write_text("{not json")
    (run / "samples.npz").write_bytes(b"garbage")
    html, _ = render_report(run)
    assert re.search(r"privacy_curves.json</th><td>unreadable: ", html)
    assert re.search(r"samples.npz</th><td>unreadable: ", html)


def test_unexpected_result_shapes_do_not_crash(tmp_path, no_figures):
    """Whole audits recorded as unavailable (older runs) and unknown extra entries."""
    run = build_run_dir(tmp_path)
    doc = json.loads((run / "results.json").read_text())
    doc["privacy"] = {"audit": unavailable("the privacy audit is not available yet")}
    doc["fidelity"]["fvd_judge"] = {"fvd": _m(12.0)}
    doc["anatomy"]["judge_agreement_real_test"] = unavailable("no labelled test images")
    doc["utility"] = {"in_domain": {"dice": _m(0.8, ci=(0.75, 0.85))}}
    write_results(run / "results.json", doc)
    html, ctx = render_report(run)
    assert "the privacy audit is not available yet" in html
    assert "fidelity.fvd_judge.fvd" in html  # listed under "other fidelity figures"
    assert "no labelled test images" in html
    assert "utility.in_domain.dice" not in html and "in_domain.dice" in html
    tiles = {t["axis"]: t for t in ctx["tiles"]}
    assert tiles["privacy"]["level"] == "na" and tiles["anatomy"]["level"] == "good"


def test_cine_clinical_from_the_generator_masks_gets_its_own_table(tmp_path, no_figures):
    run = build_run_dir(tmp_path)
    doc = json.loads((run / "results.json").read_text())
    ef = {"pearson_r": _m(0.7), "mae": _m(6.0, "%", notes="whole cine stacks of 5 subject(s)"),
          "bland_altman_bias": _m(2.0, "%"), "loa_low": _m(-9.0, "%"), "loa_high": _m(13.0, "%")}
    doc["anatomy"]["clinical_generator_masks"] = {"lv_ef_pct": ef,
                                                  "lv_mass_g": unavailable("a cine sample set requests only ef, edv, esv")}
    write_results(run / "results.json", doc)
    (run / "figures" / "clinical_generator_masks_lv_ef_pct.png").write_bytes((run / "figures" / "clinical_lv_ef_pct.png").read_bytes())
    html = write_report(run).read_text("utf-8")
    assert "measured on the generator&#39;s own masks (its segmentation decoder) vs requested" in html
    assert "Clinical index lv ef pct (generator&#39;s own masks)" in html
    assert "anatomy.clinical_generator_masks" not in html  # not left over under "other anatomy figures"
    assert (run / "tables" / "anatomy_clinical_generator_masks.csv").is_file()


def test_not_a_directory(tmp_path):
    with pytest.raises(UserError, match="not a run directory"):
        write_report(tmp_path / "nope")


def test_tile_colours_follow_the_policy_thresholds_and_its_warning_band():
    from reports.policy import load_policy
    from reports.thresholds import tile_level, tile_thresholds

    th = tile_thresholds(load_policy())
    assert th["privacy_auc"] == {"pass": 0.60, "warn": 0.65, "better": "lower", "criterion": "mia_auc"}
    assert [tile_level(v, th["privacy_auc"]) for v in (0.58, 0.60, 0.62, 0.70)] == ["good", "good", "warn", "bad"]
    assert [tile_level(v, th["anatomy_plausible"]) for v in (0.95, 0.89)] == ["good", "bad"]  # no warning band
    assert tile_level(None, th["fidelity_fid_ratio"]) == "na" and tile_level(0.5, None) == "na"


def test_tiles_use_the_policy_the_run_was_signed_off_with(tmp_path):
    """A stricter policy recorded in signoff.json recolours the tiles; without it, the default."""
    import shutil

    from reports.policy import default_policy_path
    from reports.run_report import _Builder, load_inputs

    run = tmp_path / "run"
    run.mkdir()
    strict = tmp_path / "strict.toml"
    text = default_policy_path().read_text("utf-8")
    strict.write_text(text.replace("threshold = 0.60\nwarn_threshold = 0.65", "threshold = 0.52\nwarn_threshold = 0.55")
                      .replace('name = "cmr-audit default release policy"', 'name = "strict"'), "utf-8")
    assert "threshold = 0.52" in strict.read_text("utf-8")
    (run / "signoff.json").write_text(json.dumps({"policy": {"path": str(strict)}, "verdict": "FAIL"}))
    name, th = _Builder(load_inputs(run), include_real_images=False).tile_policy()
    assert name == "strict" and th["privacy_auc"]["pass"] == 0.52 and th["privacy_auc"]["warn"] == 0.55
    shutil.rmtree(run)
    run.mkdir()
    name, th = _Builder(load_inputs(run), include_real_images=False).tile_policy()
    assert name == "cmr-audit default release policy" and th["privacy_auc"]["pass"] == 0.60
