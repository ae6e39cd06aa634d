"""Fetching (hash check, unavailability) and input validation; fast, no network needed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from audit.core.errors import UserError
from cohorts.judge import fetch as F
from cohorts.judge.network import validate_slices


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CMR_AUDIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(F.ENV_JUDGE, raising=False)
    return tmp_path / "cache"


def test_override_with_wrong_hash_names_file_and_both_hashes(tmp_path, monkeypatch):
    fake = tmp_path / "judge.onnx"
    fake.write_bytes(b"not the judge")
    monkeypatch.setenv(F.ENV_JUDGE, str(fake))
    with pytest.raises(UserError) as info:
        F.fetch_judge()
    msg = str(info.value)
    assert str(fake) in msg and F.JUDGE_SHA256 in msg and F.sha256_file(fake) in msg
    assert "\n" not in msg


def test_override_missing_file_is_unavailable(tmp_path, monkeypatch):
    monkeypatch.setenv(F.ENV_JUDGE, str(tmp_path / "nope.onnx"))
    with pytest.raises(F.JudgeUnavailable, match=r"^judge unavailable: "):
        F.fetch_judge()


def test_download_failure_is_judge_unavailable(cache, monkeypatch):
    def fail(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for myopari==0.1.6\n")

    monkeypatch.setattr(F.subprocess, "run", fail)
    with pytest.raises(F.JudgeUnavailable) as info:
        F.fetch_judge()
    assert str(info.value).startswith("judge unavailable: ")
    assert "No matching distribution" in str(info.value)
    assert isinstance(info.value, UserError)


def test_pip_missing_is_judge_unavailable(cache, monkeypatch):
    def boom(cmd, **kw):
        raise FileNotFoundError("python not found")

    monkeypatch.setattr(F.subprocess, "run", boom)
    with pytest.raises(F.JudgeUnavailable, match="^judge unavailable: pip download"):
        F.fetch_judge()


def test_wheel_without_member_is_unavailable(cache, monkeypatch):
    import zipfile

    def fake_pip(cmd, **kw):
        dest = Path(cmd[cmd.index("-d") + 1])
        with zipfile.ZipFile(dest / "myopari-0.1.6-py3-none-any.whl", "w") as zf:
            zf.writestr("myopari/__init__.py", "")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(F.subprocess, "run", fake_pip)
    with pytest.raises(F.JudgeUnavailable, match="has no member"):
        F.fetch_judge()


def test_wheel_with_wrong_member_hash_is_rejected_and_not_cached(cache, monkeypatch):
    import zipfile

    def fake_pip(cmd, **kw):
        dest = Path(cmd[cmd.index("-d") + 1])
        with zipfile.ZipFile(dest / "myopari-0.1.6-py3-none-any.whl", "w") as zf:
            zf.writestr(F.JUDGE_MEMBER, b"tampered")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(F.subprocess, "run", fake_pip)
    with pytest.raises(UserError, match="sha256 mismatch"):
        F.fetch_judge()
    assert not (cache / "judge" / F.JUDGE_FILENAME).exists()


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros(5), "1D"),
        (np.zeros((1, 1, 1, 4, 4)), "5D"),
        (np.zeros((0, 8, 8)), "empty"),
        (np.array([[np.nan, 1.0], [1.0, 1.0]]), "NaN"),
        (np.array([[np.inf, 1.0], [1.0, 1.0]]), "NaN or Inf"),
        (np.array([["a", "b"], ["c", "d"]]), "numeric"),
    ],
)
def test_bad_inputs_are_user_errors(bad, match):
    with pytest.raises(UserError, match=match):
        validate_slices(bad)


def test_good_inputs_pass_as_float32():
    assert validate_slices(np.ones((2, 3, 8, 8), np.int16)).dtype == np.float32
