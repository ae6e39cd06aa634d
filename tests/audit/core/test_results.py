import copy
import json

import pytest

from audit.core.errors import UserError
from audit.core.results import (
    SCHEMA_VERSION, iter_entries, load_results, metric, new_results, unavailable, validate_results, write_results,
)


def _doc():
    doc = new_results(run_id="r1", generator="ldm", preset="smoke", created_utc="2026-11-26T00:00:00Z")
    doc["privacy"] = {
        "attacks": {"dcr": {"auc": metric(0.51, "1", method="roc_auc, subject bootstrap", ci=(0.45, 0.57), n=40)}},
        "copy_rate": metric(0.0, "fraction", method="nn threshold", n=100),
    }
    doc["fidelity"] = {"fid_judge": unavailable("judge unavailable: no network")}
    doc["provenance"] = {"config_sha256": "0" * 64, "data_hash": "abc", "seed": 0}
    return doc


def test_valid_document_passes_and_round_trips(tmp_path):
    doc = _doc()
    validate_results(doc)
    path = write_results(tmp_path / "results.json", doc)
    assert load_results(path) == json.loads(json.dumps(doc))
    keys = dict(iter_entries(doc["privacy"]))
    assert set(keys) == {"attacks.dcr.auc", "copy_rate"}


def test_missing_unit_fails_and_nothing_is_written(tmp_path):
    doc = _doc()
    del doc["privacy"]["copy_rate"]["unit"]
    with pytest.raises(UserError, match="privacy/copy_rate.*unit"):
        validate_results(doc)
    with pytest.raises(UserError):
        write_results(tmp_path / "results.json", doc)
    assert not (tmp_path / "results.json").exists()


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("dp"),
        lambda d: d["privacy"].update(x={"value": "high", "unit": "1", "ci_low": None, "ci_high": None, "n": 1, "method": "m"}),
        lambda d: d["privacy"].update(x={"status": "unavailable"}),
        lambda d: d["privacy"].update(x={"status": "unavailable", "reason": ""}),
        lambda d: d["privacy"]["copy_rate"].update(extra=1),
        lambda d: d["provenance"].pop("data_hash"),
        lambda d: d.update(schema="cmr-audit/results/v0"),
    ],
)
def test_invalid_documents_fail(mutate):
    doc = copy.deepcopy(_doc())
    mutate(doc)
    with pytest.raises(UserError):
        validate_results(doc)


def test_other_schema_version_has_a_clear_message():
    doc = _doc()
    doc["schema"] = "cmr-audit/results/v9"
    with pytest.raises(UserError, match="not supported"):
        validate_results(doc)


def test_metric_refuses_non_finite_and_unavailable_needs_reason():
    with pytest.raises(ValueError):
        metric(float("nan"), "1", method="m")
    with pytest.raises(ValueError):
        unavailable("  ")
    assert SCHEMA_VERSION == "cmr-audit/results/v1"


def test_schema_file_ships_in_package():
    from importlib import resources

    assert resources.files("audit").joinpath("schema/results-v1.schema.json").is_file()


def test_params_record_what_defines_a_figure_and_are_validated():
    doc = _doc()
    doc["privacy"]["attacks"]["dcr"]["tpr_at_lowest_fpr"] = metric(0.2, "fraction", method="m", params={"fpr": 10 / 296})
    validate_results(doc)
    assert doc["privacy"]["attacks"]["dcr"]["tpr_at_lowest_fpr"]["params"] == {"fpr": pytest.approx(0.033784, abs=1e-6)}
    assert "params" not in metric(0.2, "1", method="m")  # optional: absent unless given
    with pytest.raises(ValueError, match="params must be finite"):
        metric(0.2, "fraction", method="m", params={"fpr": float("nan")})
    doc["privacy"]["attacks"]["dcr"]["tpr_at_lowest_fpr"]["params"] = {"fpr": "low"}
    with pytest.raises(UserError, match="tpr_at_lowest_fpr/params/fpr"):
        validate_results(doc)
