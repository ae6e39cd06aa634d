"""A data folder that cannot feed the run: one line naming the folder, exit 2, before any training."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from audit.cli.main import main
from cohorts.phantom import write_dataset


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("acdc") / "ACDC", 6, 0, layout="acdc", progress=False, workers=1)


def _run(capsys, tmp_path, data: Path, *extra: str) -> tuple[int, str]:
    rc = main(["--quiet", "run", "--generator", "ldm", "--preset", "smoke", "--data", str(data),
               "--out", str(tmp_path / "run"), *extra])
    return rc, capsys.readouterr().err.strip()


def _no_training(tmp_path: Path) -> None:
    state = tmp_path / "run" / "state.json"
    assert not state.is_file() or '"fit"' not in state.read_text()
    assert not (tmp_path / "run" / "generator").exists()


def test_too_few_subjects_for_the_splits(folder, tmp_path, capsys):
    few = tmp_path / "few"
    shutil.copytree(folder, few)
    for p in sorted((few / "training").glob("patient*"))[3:]:
        shutil.rmtree(p)
    rc, err = _run(capsys, tmp_path, few)
    assert rc == 2 and len(err.splitlines()) == 1
    assert str(few) in err and "cannot fill" in err
    _no_training(tmp_path)


def test_no_labelled_frames(folder, tmp_path, capsys):
    bare = tmp_path / "bare"
    shutil.copytree(folder, bare)
    for gt in bare.rglob("*_gt.nii.gz"):
        gt.unlink()
    rc, err = _run(capsys, tmp_path, bare)
    assert rc == 2 and len(err.splitlines()) == 1
    assert str(bare) in err and "no labelled frames" in err
    _no_training(tmp_path)


def test_images_smaller_than_the_window(folder, tmp_path, capsys):
    rc, err = _run(capsys, tmp_path, folder, "--set", "data.size=128", "--set", "data.target_spacing=4")
    assert rc == 2 and len(err.splitlines()) == 1
    assert str(folder) in err and "field of view smaller than the preset's window (128 px x 4 mm = 512 mm" in err
    _no_training(tmp_path)


def test_a_fitting_folder_passes_the_check(folder):
    from audit.pipeline import config as C
    from audit.pipeline.cohort_check import check_cohort_for_run, small_field_of_view
    from cohorts.cache import load_prepared
    from cohorts.preprocess import PreprocessConfig
    from cohorts.splits import make_splits

    prepared = load_prepared(folder, PreprocessConfig(target_spacing=3.0, size=64), progress=False)
    assert small_field_of_view(prepared) == []
    cfg = C.resolve_config(preset="smoke")
    check_cohort_for_run(prepared, make_splits(prepared, seed=0), cfg, "slices", True)  # no error
