"""The layout checker: per-dataset report, missing pieces with their DATASETS.md section, exit code,
and no files written."""

import pytest

from datasets.check import main
from tests.datasets.test_caltech101 import write_caltech
from tests.datasets.test_oxford_pets import write_pets


def run(capsys, *args):
    code = main([str(a) for a in args])
    return code, capsys.readouterr().out


def test_complete_dataset_reports_counts_and_writes_nothing(tmp_path, capsys):
    write_pets(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    code, out = run(capsys, "--root", tmp_path, "OxfordPets")
    assert code == 0
    # fixture: 3 breeds, 10 trainval (8 train + 2 val) and 3 test images each
    assert "[OK] OxfordPets (oxford_pets): 3 classes; train 24, val 6, test 9" in out
    assert "split_zhou_OxfordPets.json absent" in out
    assert sorted(tmp_path.rglob("*")) == before


def test_missing_dataset_is_reported_with_docs_section_and_exit_code(tmp_path, capsys):
    write_caltech(tmp_path)
    code, out = run(capsys, "--root", tmp_path, "caltech-101", "stanford_cars")
    assert code == 1
    assert "[OK] Caltech101 (caltech-101): 3 classes; train 15, val 6, test 9" in out
    assert "[INCOMPLETE] StanfordCars (stanford_cars)" in out
    assert "DATASETS.md#stanfordcars" in out
    assert str(tmp_path / "stanford_cars") in out
    assert "1 of 2 dataset(s) complete" in out


def test_missing_annotation_is_listed(tmp_path, capsys):
    ds_dir = write_pets(tmp_path)
    (ds_dir / "annotations" / "trainval.txt").unlink()
    code, out = run(capsys, "--root", tmp_path, "oxfordpets")
    assert code == 1
    assert str(ds_dir / "annotations" / "trainval.txt") in out
    assert "DATASETS.md#oxfordpets" in out


def test_images_listed_by_the_split_but_absent_are_reported(tmp_path, capsys):
    ds_dir = write_pets(tmp_path)
    (ds_dir / "images" / "Bengal_12.jpg").unlink()
    code, out = run(capsys, "--root", tmp_path, "OxfordPets")
    assert code == 1
    assert "1 of 39 images listed by the split are missing" in out
    assert "Bengal_12.jpg" in out
    code, _ = run(capsys, "--root", tmp_path, "--skip-images", "OxfordPets")
    assert code == 0


def test_unreadable_split_file_is_reported(tmp_path, capsys):
    ds_dir = write_caltech(tmp_path)
    (ds_dir / "split_zhou_Caltech101.json").write_text('{"train": []}')
    code, out = run(capsys, "--root", tmp_path, "Caltech101")
    assert code == 1
    assert "cannot be read" in out and "keys" in out


def test_default_checks_every_benchmark_dataset(tmp_path, capsys):
    code, out = run(capsys, "--root", tmp_path)
    assert code == 1
    for name in ("ImageNet", "ImageNetV2", "ImageNetSketch", "ImageNetA", "ImageNetR"):
        assert f"[INCOMPLETE] {name} (" in out
    assert "0 of 15 dataset(s) complete" in out


def test_unknown_name_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        main(["--root", str(tmp_path), "pets"])
    assert err.value.code == 2
    assert "OxfordPets" in capsys.readouterr().err


def test_truncated_split_file_is_reported_with_the_fix(tmp_path, capsys):
    ds_dir = write_caltech(tmp_path)
    split = ds_dir / "split_zhou_Caltech101.json"
    split.write_text('{"train": [["Faces/image_0001.jpg", 0, "fa')
    code, out = run(capsys, "--root", tmp_path, "Caltech101")
    assert code == 1
    assert "truncated or corrupt" in out and str(split) in out and "delete it" in out
