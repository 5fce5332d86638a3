"""UCF101: UCF-101-midframes/<Under_Scored_Action>/*.jpg and the official ucfTrainTestlist files."""

import json

import pytest

from datasets.ucf101 import UCF101, action_folder
from tests.datasets.conftest import (
    build_from_split_file,
    check_fewshot_cache,
    check_layout_error,
    check_split_file_is_deterministic,
    impaths,
    make_cfg,
    per_class,
    per_split,
    trainval_counts,
    write_image,
    write_split_dataset,
)

# classInd.txt order; midframe folder (= class name); clips in trainlist01 and testlist01
ACTIONS = ["ApplyEyeMakeup", "BalanceBeam", "YoYo"]
FOLDERS = ["Apply_Eye_Makeup", "Balance_Beam", "Yo_Yo"]
TRAIN, TEST = [10, 7, 12], [3, 2, 4]
SPLIT_NAME = "split_zhou_UCF101.json"


def clip(action, group, n):
    return f"v_{action}_g{group:02d}_c{n:02d}"


def write_ucf(root):
    """Midframes for every clip plus the lists, with the CRLF line ends of the official files."""
    ds_dir = root / "ucf101"
    lists_dir = ds_dir / "ucfTrainTestlist"
    lists_dir.mkdir(parents=True)
    class_ind, trainlist, testlist = [], [], []
    for label, (action, folder) in enumerate(zip(ACTIONS, FOLDERS), 1):
        class_ind.append(f"{label} {action}")
        for n in range(TRAIN[label - 1] + TEST[label - 1]):
            is_test = n < TEST[label - 1]
            name = clip(action, 1 if is_test else 8, n)
            write_image(ds_dir / "UCF-101-midframes" / folder / f"{name}.jpg", shade=n)
            if is_test:
                testlist.append(f"{action}/{name}.avi")
            else:
                trainlist.append(f"{action}/{name}.avi {label}")
    for fname, lines in [
        ("classInd.txt", class_ind),
        ("trainlist01.txt", trainlist),
        ("testlist01.txt", testlist),
    ]:
        (lists_dir / fname).write_bytes(("\r\n".join(lines) + "\r\n").encode())
    return ds_dir


def test_action_folder_splits_camel_case_like_coop():
    assert [action_folder(a) for a in ACTIONS] == FOLDERS
    assert action_folder("PlayingDaf") == "Playing_Daf"


def test_builds_split_from_official_lists_and_writes_it(tmp_path):
    ds_dir = write_ucf(tmp_path)
    ds = UCF101(make_cfg(tmp_path, "UCF101"))
    assert ds.classnames == FOLDERS
    assert per_split(ds) == (*trainval_counts(TRAIN), dict(enumerate(TEST)))
    frame = ds_dir / "UCF-101-midframes" / "Yo_Yo" / f"{clip('YoYo', 1, 0)}.jpg"
    assert str(frame) in impaths(ds.test)

    split = json.loads((ds_dir / SPLIT_NAME).read_text())
    assert [f"Yo_Yo/{clip('YoYo', 1, 0)}.jpg", 2, "Yo_Yo"] in split["test"]
    assert len(split["train"]) + len(split["val"]) == sum(TRAIN)


def test_generated_split_is_deterministic_and_read_back(tmp_path):
    a = check_split_file_is_deterministic(UCF101, write_ucf, tmp_path, SPLIT_NAME, (1, 6))
    for f in (a / "ucfTrainTestlist").iterdir():  # not needed once the split file exists
        f.unlink()
    ds = build_from_split_file(UCF101, tmp_path / "a")
    assert per_class(ds.test) == dict(enumerate(TEST))


def test_split_file_fewshot_and_cache(tmp_path):
    ds_dir = tmp_path / "ucf101"
    action = dict(zip(FOLDERS, ACTIONS))
    group = {"train": 8, "val": 9, "test": 1}

    def midframe(folder, key, n):
        return f"{folder}/{clip(action[folder], group[key], n)}.jpg"

    sizes = dict.fromkeys(FOLDERS, (16, 4, 1))
    write_split_dataset(ds_dir / "UCF-101-midframes", ds_dir / SPLIT_NAME, sizes, relpath=midframe)
    # K = 16 train and min(16, 4) val per class
    check_fewshot_cache(UCF101, ds_dir, 16, 1, {0: 16, 1: 16, 2: 16}, {0: 4, 1: 4, 2: 4})


@pytest.mark.parametrize("missing", ["classInd.txt", "trainlist01.txt"])
def test_missing_list_names_path_and_section(tmp_path, missing):
    ds_dir = write_ucf(tmp_path)
    target = ds_dir / "ucfTrainTestlist" / missing
    target.unlink()
    check_layout_error(UCF101, tmp_path, target, "ucf101")
    assert not (ds_dir / SPLIT_NAME).exists()


def test_list_entry_with_unknown_action_is_named(tmp_path):
    ds_dir = write_ucf(tmp_path)
    with open(ds_dir / "ucfTrainTestlist" / "testlist01.txt", "a") as f:
        f.write("Surfing/v_Surfing_g01_c01.avi\n")
    with pytest.raises(ValueError, match=r"testlist01.txt:\d+: \"Surfing/v_Surfing_g01_c01.avi\""):
        UCF101(make_cfg(tmp_path, "UCF101"))
