"""``audit data describe|validate|split|phantom`` (the sub-app; the main CLI mounts it as ``data``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from audit.cli.data import app
from audit.core.errors import UserError

runner = CliRunner()


def test_describe_table(acdc_dir: Path) -> None:
    r = runner.invoke(app, ["describe", str(acdc_dir)])
    assert r.exit_code == 0, r.output
    assert "subjects per vendor x group" in r.output and "EF (%)" in r.output
    assert "V1" in r.output and "DCM" in r.output


def test_describe_json(mnms_dir: Path) -> None:
    r = runner.invoke(app, ["describe", str(mnms_dir), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["layout"] == "mnms" and d["n_subjects"] == 3 and d["ef"]["n"] == 3


def test_validate_ok_and_problems(acdc_dir: Path) -> None:
    r = runner.invoke(app, ["validate", str(acdc_dir)])
    assert r.exit_code == 0 and "OK" in r.output
    (acdc_dir / "training" / "patient002" / "Info.cfg").unlink()
    (acdc_dir / "training" / "patient003" / "patient003_4d.nii.gz").write_bytes(b"junk")
    r = runner.invoke(app, ["validate", str(acdc_dir)])
    assert r.exit_code == 1
    assert "patient002/Info.cfg: missing Info.cfg" in r.output
    assert "patient003_4d.nii.gz: corrupt or truncated" in r.output


def test_bad_directory_is_user_error(tmp_path: Path) -> None:
    r = runner.invoke(app, ["describe", str(tmp_path / "nope")])
    assert isinstance(r.exception, UserError) and "no such directory" in str(r.exception)


def test_split_command(acdc_dir: Path, tmp_path: Path, writers) -> None:
    root = writers.write_acdc(tmp_path / "six", n=6)
    out = tmp_path / "s.json"
    r = runner.invoke(app, ["split", str(root), "--out", str(out), "--seed", "1"])
    assert r.exit_code == 0, r.output
    d = json.loads(out.read_text())
    assert d["seed"] == 1 and sum(len(v) for v in d["splits"].values()) == 6
    r = runner.invoke(app, ["split", str(root), "--out", str(out), "--lovo"])
    assert r.exit_code == 0 and json.loads(out.read_text())["heldout_vendor"] == "V2"
    r = runner.invoke(app, ["split", str(root), "--out", str(out), "--fractions", "1,2"])
    assert isinstance(r.exception, UserError)


def test_phantom_bad_layout(tmp_path: Path) -> None:
    r = runner.invoke(app, ["phantom", "--out", str(tmp_path / "p"), "--layout", "nifti"])
    assert isinstance(r.exception, UserError) and "--layout" in str(r.exception)


def test_help_has_examples() -> None:
    for cmd in ("describe", "validate", "split", "phantom"):
        r = runner.invoke(app, [cmd, "--help"])
        assert r.exit_code == 0 and "audit data " + cmd in r.output


def test_main_cli_exit_codes(acdc_dir: Path, tmp_path: Path, capsys) -> None:
    main = pytest.importorskip("audit.cli.main").main
    assert main(["data", "validate", str(acdc_dir)]) == 0
    assert main(["data", "describe", str(tmp_path / "nope")]) == 2
    assert "error:" in capsys.readouterr().err
    (acdc_dir / "training" / "patient002" / "Info.cfg").unlink()
    assert main(["data", "validate", str(acdc_dir)]) == 1
