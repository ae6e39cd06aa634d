"""Third-party plugins (issue 13, req. 3): a tiny plugin package is installed (a distribution on
sys.path with an entry_points.txt, exactly what pip leaves behind) and goes through ``audit run``:
its generator trains and samples, its attack joins the privacy audit, its metric lands in the
results; a plugin that fails to import or returns junk is listed as broken, never fatal."""

from __future__ import annotations

import importlib
import json
import textwrap

import pytest

from audit.core import plugins
from audit.privacy.attacks import plugin_attacks
from audit.cli.main import main
from audit.pipeline.plugin_stage import entry_problem
from audit.core.results import load_results, metric

PLUGIN = textwrap.dedent('''
    import numpy as np
    from audit.privacy.attacks import Attack
    from audit.core.results import metric
    from generators.reference import NoiseGenerator


    class DemoGenerator(NoiseGenerator):
        name = "demo"
        description = "plugin test: mask-shaped noise"


    class MeanIntensityAttack(Attack):
        name = "demo_mean"
        kind = "black-box"
        description = "plugin test: brighter than the synthetic mean = member"

        def fit(self, knowledge):
            self.mu = float(np.mean(knowledge.synthetic))
            return self

        def score(self, images, masks=None, **conditions):
            return -np.abs(images.reshape(len(images), -1).mean(1) - self.mu)


    class BrightnessGap:
        section = "fidelity"
        description = "plugin test: mean intensity gap synthetic - real test"

        def compute(self, samples, real, *, seed):
            gap = float(samples.images.mean() - real["test"].images.mean())
            return {"gap": metric(gap, "intensity", method="mean synthetic - mean real test", n=len(samples))}


    class BadMetric:
        section = "anatomy"

        def compute(self, samples, real, *, seed):
            return {"bare_number": 0.5, "ok": metric(1.0, "1", method="fine")}
''')

ENTRY_POINTS = textwrap.dedent('''
    [cmr_audit.generators]
    demo = cmr_demo_plugin:DemoGenerator

    [cmr_audit.attacks]
    demo_mean = cmr_demo_plugin:MeanIntensityAttack
    broken_attack = cmr_demo_plugin_missing:Nope

    [cmr_audit.metrics]
    demo_brightness = cmr_demo_plugin:BrightnessGap
    bad_metric = cmr_demo_plugin:BadMetric
''')


@pytest.fixture
def installed(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "cmr_demo_plugin").mkdir(parents=True)
    (site / "cmr_demo_plugin" / "__init__.py").write_text(PLUGIN)
    info = site / "cmr_demo_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cmr-demo-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    yield site


def test_plugins_are_listed_and_broken_ones_explained(installed, capsys):
    attacks = {p.name: p for p in plugin_attacks()}
    assert not attacks["demo_mean"].broken and attacks["demo_mean"].obj.kind == "black-box"
    assert attacks["broken_attack"].broken and "ModuleNotFoundError" in attacks["broken_attack"].error
    assert {p.name for p in plugins.metrics()} == {"demo_brightness", "bad_metric"}
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "demo_mean" in out and "broken_attack" in out and "ModuleNotFoundError" in out and "demo_brightness" in out


@pytest.mark.slow
def test_plugin_generator_attack_and_metric_go_through_audit_run(installed, tmp_path):
    out = tmp_path / "run"
    assert main(["--quiet", "run", "--generator", "demo", "--preset", "smoke", "--out", str(out),
                 "--set", "audit.anatomy=false", "--set", "audit.utility=false"]) == 0
    results = load_results(out / "results.json")
    assert results["run"]["generator"] == "demo"
    attacks = results["privacy"]["attacks"]
    auc = attacks["demo_mean"]["image"]["auc"]
    assert 0 <= auc["value"] <= 1 and auc["ci_low"] is not None
    assert attacks["broken_attack"]["status"] == "unavailable" and "ModuleNotFoundError" in attacks["broken_attack"]["reason"]
    assert "gan_leaks_dcr" in attacks  # the built-in suite still ran
    gap = results["fidelity"]["plugins"]["demo_brightness"]["gap"]
    assert gap["unit"] == "intensity" and gap["n"] > 0
    bad = results["anatomy"]["plugins"]["bad_metric"]
    assert bad["bare_number"]["status"] == "unavailable" and "not an entry" in bad["bare_number"]["reason"]
    assert bad["ok"]["value"] == 1.0
    state = json.loads((out / "state.json").read_text())
    assert state["stages"]["plugins"]["metrics"] == 2


def test_entry_check_refuses_bare_and_malformed_figures():
    assert entry_problem(metric(0.3, "1", method="m")) == ""
    assert "not an entry" in entry_problem(0.3)
    assert "without" in entry_problem({"value": 1.0})
    assert "finite" in entry_problem({**metric(0.3, "1", method="m"), "value": float("nan")})
    assert entry_problem({"status": "unavailable", "reason": "x"}) == ""
    assert entry_problem(metric(0.3, "fraction", method="m", params={"fpr": 0.01})) == ""  # e.g. a TPR at an FPR
    assert "params" in entry_problem({**metric(0.3, "1", method="m"), "params": {"fpr": "low"}})
    assert "malformed" in entry_problem({"status": "unavailable"})
