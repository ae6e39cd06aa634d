"""Reference tests for clinical indices (closed-form volumes, EF, mass) and their agreement
(Pearson r with Fisher-z CI vs SciPy, MAE, Bland-Altman bias and limits of agreement)."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from audit.anatomy.clinical import (
    INDICES,
    MYOCARDIAL_DENSITY_G_PER_ML,
    agreement,
    bland_altman_plot,
    clinical_section,
    indices_table,
    stack_indices,
)
from audit.core.errors import UserError
from audit.core.results import new_results, validate_results

SPACING = (1.5, 2.0, 10.0)  # one voxel = 30 mm^3 = 0.03 mL
VOXEL_ML = 1.5 * 2.0 * 10.0 / 1000.0


def _stacks(z=6):
    ed = np.zeros((z, 20, 20), np.uint8)
    es = np.zeros_like(ed)
    ed[:, 2:6, 2:7] = 3          # LV: 4 x 5 per slice
    ed[:, 10:13, 2:4] = 2        # MYO: 3 x 2 per slice
    ed[:, 14:18, 10:18] = 1      # RV: 4 x 8 per slice
    es[:, 2:4, 2:7] = 3          # LV: 2 x 5 per slice
    es[:, 10:13, 2:4] = 2
    es[:, 14:17, 10:18] = 1      # RV: 3 x 8 per slice
    return ed, es


def test_volumes_ef_and_mass_closed_form():
    ed, es = _stacks(z=6)
    out = stack_indices(ed, es, SPACING)
    assert set(out) == set(INDICES)
    assert out["lv_edv_ml"] == pytest.approx(6 * 4 * 5 * VOXEL_ML)   # 3.6 mL
    assert out["lv_esv_ml"] == pytest.approx(6 * 2 * 5 * VOXEL_ML)   # 1.8 mL
    assert out["lv_ef_pct"] == pytest.approx(50.0)
    assert out["rv_edv_ml"] == pytest.approx(6 * 4 * 8 * VOXEL_ML)
    assert out["rv_esv_ml"] == pytest.approx(6 * 3 * 8 * VOXEL_ML)
    assert out["rv_ef_pct"] == pytest.approx(100.0 * (32 - 24) / 32)
    assert MYOCARDIAL_DENSITY_G_PER_ML == 1.05
    assert out["lv_mass_g"] == pytest.approx(1.05 * 6 * 3 * 2 * VOXEL_ML)


def test_ef_is_nan_not_zero_when_edv_is_zero():
    ed, es = _stacks()
    ed[ed == 1] = 0
    es[es == 1] = 0
    out = stack_indices(ed, es, SPACING)
    assert out["rv_edv_ml"] == 0.0 and math.isnan(out["rv_ef_pct"])
    assert out["lv_ef_pct"] == pytest.approx(50.0)


@pytest.mark.parametrize("case, match", [
    ("shape", "same"),
    ("label", "outside 0..3"),
    ("nan", "NaN"),
    ("spacing0", "positive"),
    ("spacing_neg", "positive"),
    ("spacing_nan", "finite"),
    ("spacing_len", "three numbers"),
    ("ndim", r"\(Z,H,W\)"),
])
def test_bad_input_is_a_user_error(case, match):
    ed, es = _stacks()
    spacing = SPACING
    if case == "shape":
        es = es[:-1]
    elif case == "label":
        ed[0, 0, 0] = 4
    elif case == "nan":
        ed = ed.astype(np.float32)
        ed[0, 0, 0] = np.nan
    elif case == "spacing0":
        spacing = (1.5, 0.0, 10.0)
    elif case == "spacing_neg":
        spacing = (1.5, 2.0, -10.0)
    elif case == "spacing_nan":
        spacing = (1.5, float("nan"), 10.0)
    elif case == "spacing_len":
        spacing = (1.5, 2.0)
    elif case == "ndim":
        ed, es = ed[0], es[0]
    with pytest.raises(UserError, match=match):
        stack_indices(ed, es, spacing)


def test_table_rows_columns_and_shape_checks():
    a_ed, a_es = _stacks(z=6)
    b_ed, b_es = _stacks(z=9)  # Z differs between subjects
    pred_b_es = b_es.copy()
    pred_b_es[pred_b_es == 3] = 0  # judge finds no LV at ES in subject b
    t = indices_table(["a", "b"], [a_ed, b_ed], [a_es, pred_b_es], [a_ed, b_ed], [a_es, b_es],
                      [SPACING, (1.0, 1.0, 5.0)])
    assert list(t["subject_id"]) == ["a", "b"]
    for k in INDICES:
        assert f"{k}_measured" in t and f"{k}_requested" in t
    assert t.loc[0, "lv_ef_pct_measured"] == pytest.approx(50.0)
    assert t.loc[1, "lv_edv_ml_requested"] == pytest.approx(9 * 4 * 5 * 5.0 / 1000)
    assert t.loc[1, "lv_ef_pct_measured"] == pytest.approx(100.0)
    assert t.loc[1, "lv_ef_pct_requested"] == pytest.approx(50.0)

    with pytest.raises(UserError, match="subject b: judge and conditioning masks differ"):
        indices_table(["a", "b"], [a_ed, b_ed[:, :10]], [a_es, b_es], [a_ed, b_ed], [a_es, b_es], SPACING)
    with pytest.raises(UserError, match="1 stacks for 2 subject ids"):
        indices_table(["a", "b"], [a_ed], [a_es, b_es], [a_ed, b_ed], [a_es, b_es], SPACING)
    with pytest.raises(UserError, match="unique"):
        indices_table(["a", "a"], [a_ed, b_ed], [a_es, b_es], [a_ed, b_ed], [a_es, b_es], SPACING)


def _validate(section):
    doc = new_results(run_id="x", generator="g", preset="p", created_utc="2026-01-01T00:00:00Z")
    doc["provenance"] = {"config_sha256": "0" * 64, "data_hash": "abc", "seed": 0}  # required by the schema
    doc["anatomy"]["clinical"] = section
    validate_results(doc)


def _pairs(n=12, seed=3):
    rng = np.random.default_rng(seed)
    requested = rng.uniform(40, 70, n)
    measured = requested + rng.normal(1.0, 3.0, n)
    return measured, requested


@pytest.mark.parametrize("n", [3, 4, 12, 40])
def test_pearson_r_and_fisher_ci_match_scipy(n):
    measured, requested = _pairs(n)
    out = agreement(measured, requested, unit="%", name="lv_ef_pct", n_boot=200)
    ref = stats.pearsonr(measured, requested)
    ci = ref.confidence_interval(0.95)  # SciPy's default method is the Fisher z-transform
    r = out["pearson_r"]
    assert r["unit"] == "1" and r["n"] == n
    assert r["value"] == pytest.approx(ref.statistic, abs=1e-12)
    assert r["ci_low"] == pytest.approx(ci.low, abs=1e-6)
    assert r["ci_high"] == pytest.approx(ci.high, abs=1e-6)


def test_bland_altman_and_mae_closed_form_hand_example():
    measured = np.array([10.0, 12.0, 14.0, 17.0, 20.0])
    requested = np.array([9.0, 12.0, 15.0, 15.0, 18.0])
    # d = [1, 0, -1, 2, 2]: mean 0.8, sum of squared deviations 6.8, sd = sqrt(6.8 / 4)
    out = agreement(measured, requested, unit="mL", name="lv_edv_ml", n_boot=500)
    sd = math.sqrt(1.7)
    t4 = 2.7764451051977987  # t(0.975, 4 df)
    bias = out["bland_altman_bias"]
    assert bias["value"] == pytest.approx(0.8)
    assert (bias["ci_low"], bias["ci_high"]) == pytest.approx((0.8 - t4 * sd / math.sqrt(5), 0.8 + t4 * sd / math.sqrt(5)))
    se_loa = math.sqrt(3 * 1.7 / 5)
    for key, loa in (("loa_low", 0.8 - 1.96 * sd), ("loa_high", 0.8 + 1.96 * sd)):
        e = out[key]
        assert e["value"] == pytest.approx(loa)
        assert (e["ci_low"], e["ci_high"]) == pytest.approx((loa - t4 * se_loa, loa + t4 * se_loa))
        assert e["unit"] == "mL" and e["n"] == 5
    mae = out["mae"]
    assert mae["value"] == pytest.approx(6.0 / 5) and mae["unit"] == "mL" and mae["n"] == 5
    assert 0.0 <= mae["ci_low"] <= mae["value"] <= mae["ci_high"] <= 2.0


def test_fewer_than_three_finite_pairs_is_unavailable():
    out = agreement([50.0, np.nan, 60.0, 55.0], [52.0, 50.0, np.nan, 54.0], unit="%", name="lv_ef_pct")
    assert set(out) == {"pearson_r", "mae", "bland_altman_bias", "loa_low", "loa_high"}
    for entry in out.values():
        assert entry["status"] == "unavailable" and "only 2 subject" in entry["reason"]


def test_non_finite_pairs_are_left_out_and_counted():
    measured, requested = _pairs(8)
    measured[2] = np.nan
    out = agreement(measured, requested, unit="%", name="lv_ef_pct", n_boot=200)
    keep = np.isfinite(measured)
    assert out["mae"]["n"] == 7 and "1 subject(s) left out" in out["mae"]["notes"]
    assert out["mae"]["value"] == pytest.approx(np.abs(measured[keep] - requested[keep]).mean())


def test_zero_variance_makes_only_pearson_unavailable():
    out = agreement([5.0, 6.0, 7.0, 8.0], [6.0, 6.0, 6.0, 6.0], unit="g", name="lv_mass_g", n_boot=200)
    assert out["pearson_r"]["status"] == "unavailable" and "constant" in out["pearson_r"]["reason"]
    assert out["bland_altman_bias"]["value"] == pytest.approx(0.5)
    assert out["mae"]["value"] == pytest.approx(1.0)
    assert out["loa_high"]["value"] == pytest.approx(0.5 + 1.96 * np.std([-1, 0, 1, 2], ddof=1))


def test_length_mismatch_is_a_user_error():
    with pytest.raises(UserError, match="3 measured values for 4 requested"):
        agreement([1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0], unit="mL", name="lv_edv_ml")


def test_section_validates_in_results_document():
    rng = np.random.default_rng(0)
    n = 6
    data = {"subject_id": [f"s{i}" for i in range(n)]}
    for k in INDICES:
        req = rng.uniform(20, 150, n)
        data[f"{k}_requested"] = req
        data[f"{k}_measured"] = req + rng.normal(0, 5, n)
    data["rv_ef_pct_measured"][:4] = np.nan  # judge missed the RV: too few pairs
    section = clinical_section(pd.DataFrame(data), n_boot=100)
    assert set(section) == set(INDICES)
    assert section["rv_ef_pct"]["mae"]["status"] == "unavailable"
    assert section["lv_mass_g"]["mae"]["unit"] == "g"
    _validate(section)

    with pytest.raises(UserError, match="lacks columns"):
        clinical_section(pd.DataFrame({"lv_ef_pct_measured": [1.0]}))


@pytest.mark.parametrize("n", [12, 2])
def test_plot_is_a_png_written_without_pyplot_state(tmp_path, n):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    measured, requested = _pairs(12)
    path = bland_altman_plot(measured[:n], requested[:n], tmp_path / "figs" / "ba_lv_ef.png", name="lv_ef_pct", unit="%")
    assert path == tmp_path / "figs" / "ba_lv_ef.png"
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert plt.get_fignums() == before
    assert [p.name for p in path.parent.iterdir()] == ["ba_lv_ef.png"]  # no temporary left behind


@pytest.mark.slow
def test_phantom_stacks_identical_masks_agree_perfectly():
    from cohorts import source
    from cohorts.cache import load_prepared
    from cohorts.preprocess import PreprocessConfig

    root = source.resolve("phantom", phantom_subjects=10, phantom_seed=0)
    p = load_prepared(root, PreprocessConfig(target_spacing=3.0, size=64), progress=False)
    subjects = [p[i] for i in p.ids]
    for s in subjects:
        ind = stack_indices(s.mask[s.ed], s.mask[s.es], s.spacing)
        ref = s.ejection_fraction()
        assert ind["lv_ef_pct"] == pytest.approx(ref["ef"], abs=1e-6)
        assert ind["lv_edv_ml"] == pytest.approx(ref["edv"], abs=1e-6)
        assert ind["lv_esv_ml"] == pytest.approx(ref["esv"], abs=1e-6)
    ed = [s.mask[s.ed] for s in subjects]
    es = [s.mask[s.es] for s in subjects]
    table = indices_table(list(p.ids), ed, es, ed, es, [s.spacing for s in subjects])
    assert len(table) == 10
    section = clinical_section(table, n_boot=200)
    for k in INDICES:
        e = section[k]
        assert e["pearson_r"]["value"] == pytest.approx(1.0, abs=1e-9)
        assert e["mae"]["value"] == 0.0 and e["mae"]["ci_high"] == 0.0
        assert e["bland_altman_bias"]["value"] == 0.0
        assert e["loa_low"]["value"] == 0.0 and e["loa_high"]["value"] == 0.0
        assert e["mae"]["n"] == 10
    _validate(section)
