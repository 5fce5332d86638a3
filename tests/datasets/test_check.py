"""The layout checker: per-dataset report, missing pieces with their DATASETS.md section, exit code,
and no files written."""

import json

import pytest

import datasets.check as check_module
from datasets.caltech101 import Caltech101
from datasets.check import main
from tests.datasets.conftest import make_cfg
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


@pytest.mark.parametrize(
    ("missing", "name", "report", "code_skipping_images"),
    [
        # a layout piece: named with its section, whatever --skip-images says
        ("annotations/trainval.txt", "oxfordpets", "DATASETS.md#oxfordpets", 1),
        # an image the split lists: counted, and not looked for under --skip-images
        ("images/Bengal_12.jpg", "OxfordPets", "1 of 39 images listed by the split are missing", 0),
    ],
)
def test_missing_file_is_listed(tmp_path, capsys, missing, name, report, code_skipping_images):
    ds_dir = write_pets(tmp_path)
    (ds_dir / missing).unlink()
    code, out = run(capsys, "--root", tmp_path, name)
    assert code == 1
    assert str(ds_dir / missing) in out
    assert report in out
    code, _ = run(capsys, "--root", tmp_path, "--skip-images", name)
    assert code == code_skipping_images


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


def break_images(ds_dir):
    """One truncated JPEG and one empty file among the pets images; returns their paths."""
    truncated, empty = ds_dir / "images" / "Abyssinian_2.jpg", ds_dir / "images" / "Bengal_13.jpg"
    truncated.write_bytes(truncated.read_bytes()[:200])
    empty.write_bytes(b"")
    return truncated, empty


@pytest.mark.parametrize("workers", [1, 2])
def test_verify_images_decodes_every_listed_image_and_lists_the_bad_ones(
    tmp_path, capsys, monkeypatch, workers
):
    monkeypatch.setattr(check_module, "_DECODE_CHUNK", 4)  # 2 workers: a pool, even for 39 images
    ds_dir = write_pets(tmp_path)
    code, out = run(capsys, "--root", tmp_path, "OxfordPets", "--verify-images")
    assert code == 0 and "Unreadable" not in out

    truncated, empty = break_images(ds_dir)
    code = main(["--root", str(tmp_path), "OxfordPets", "--verify-images", f"--workers={workers}"])
    captured = capsys.readouterr()
    assert code == 1
    assert "Decoding OxfordPets: 100%" in captured.err and "39/39" in captured.err
    out = captured.out
    assert "[INCOMPLETE] OxfordPets" in out and "2 of 39 images cannot be decoded" in out
    listed = out.split("Unreadable images (2):\n")[1].splitlines()
    assert listed[0].startswith(f'  Cannot read image "{truncated}" (')
    assert listed[0].endswith("The file is corrupt or not an image: replace it with a good copy "
                              "from the original dataset archive.")
    assert listed[1] == (
        f'  Image file "{empty}" is empty (0 bytes), e.g. left by an interrupted copy or '
        "unpacking: replace it with a good copy from the original dataset archive."
    )
    assert listed[2] == "0 of 1 dataset(s) complete"


def test_without_verify_images_nothing_is_decoded(tmp_path, capsys):
    break_images(write_pets(tmp_path))
    code, out = run(capsys, "--root", tmp_path, "OxfordPets")
    assert code == 0 and "[OK] OxfordPets" in out


def test_verify_images_is_documented_in_help_and_exclusive_with_skip_images(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "--verify-images" in capsys.readouterr().out
    with pytest.raises(SystemExit) as err:
        main(["--root", "x", "--verify-images", "--skip-images"])
    assert err.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        main(["--root", "x", "--verify-images", "--workers", "0"])
    assert err.value.code == 2
    assert "--workers must be at least 1, got 0" in capsys.readouterr().err


def test_inconsistent_split_is_reported_with_rows_and_fix(tmp_path, capsys):
    ds_dir = write_caltech(tmp_path)
    Caltech101(make_cfg(tmp_path, "Caltech101"))
    split_path = ds_dir / "split_zhou_Caltech101.json"
    split = json.loads(split_path.read_text())
    split["test"][0][1] = 99
    split_path.write_text(json.dumps(split))
    code, out = run(capsys, "--root", tmp_path, "Caltech101")
    assert code == 1
    assert "[INCOMPLETE] Caltech101 (caltech-101): the split is inconsistent" in out
    assert f'split file "{split_path}" is inconsistent (1 problem(s)):' in out
    assert "test[0] [" in out and "label 99 has no train images" in out
    assert "delete it and the next run rebuilds it" in out


def test_train_test_overlap_is_a_warning_in_the_report(tmp_path, capsys):
    ds_dir = write_caltech(tmp_path)
    Caltech101(make_cfg(tmp_path, "Caltech101"))
    split_path = ds_dir / "split_zhou_Caltech101.json"
    split = json.loads(split_path.read_text())
    split["test"].append(split["train"][0])
    split_path.write_text(json.dumps(split))
    code, out = run(capsys, "--root", tmp_path, "Caltech101")
    assert code == 0
    assert "[OK] Caltech101 (caltech-101): 3 classes; train 15, val 6, test 10" in out
    assert "    warning: Caltech101: split file" in out
    assert "1 image(s) are in both train and test" in out


def test_folder_listed_by_the_split_but_absent_is_a_missing_piece(tmp_path, capsys):
    ds_dir = write_caltech(tmp_path)
    Caltech101(make_cfg(tmp_path, "Caltech101"))
    folder = ds_dir / "101_ObjectCategories" / "accordion"
    folder.rename(tmp_path / "accordion")
    code, out = run(capsys, "--root", tmp_path, "Caltech101")
    assert code == 1
    assert "Caltech101 (caltech-101): missing pieces, follow DATASETS.md#caltech101" in out
    assert f"folder of images listed by split_zhou_Caltech101.json: {folder}" in out
