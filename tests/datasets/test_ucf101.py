"""UCF101: UCF-101-midframes/<Under_Scored_Action>/*.jpg and the official ucfTrainTestlist files."""

import json

import pytest

from datasets.ucf101 import UCF101, action_folder
from tests.datasets.conftest import (
    SplitCase,
    build,
    impaths,
    trainval_counts,
    write_image,
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


def test_test_list_clips_become_their_midframes(tmp_path):
    ds_dir = write_ucf(tmp_path)
    ds = build(UCF101, tmp_path)
    frame = ds_dir / "UCF-101-midframes" / "Yo_Yo" / f"{clip('YoYo', 1, 0)}.jpg"
    assert str(frame) in impaths(ds.test)

    split = json.loads((ds_dir / SPLIT_NAME).read_text())
    assert [f"Yo_Yo/{clip('YoYo', 1, 0)}.jpg", 2, "Yo_Yo"] in split["test"]


def test_list_entry_with_unknown_action_is_named(tmp_path):
    ds_dir = write_ucf(tmp_path)
    with open(ds_dir / "ucfTrainTestlist" / "testlist01.txt", "a") as f:
        f.write("Surfing/v_Surfing_g01_c01.avi\n")
    with pytest.raises(ValueError, match=r"testlist01.txt:\d+: \"Surfing/v_Surfing_g01_c01.avi\""):
        build(UCF101, tmp_path)


def published_midframe(folder, key, n):
    """A published split's midframe path: train, val and test clips from different groups."""
    group = {"train": 8, "val": 9, "test": 1}
    return f"{folder}/{clip(ACTIONS[FOLDERS.index(folder)], group[key], n)}.jpg"


CASE = SplitCase(
    UCF101, write_ucf, FOLDERS, (*trainval_counts(TRAIN), dict(enumerate(TEST))),
    missing=("ucfTrainTestlist/classInd.txt", "ucfTrainTestlist/trainlist01.txt"), shots=16,
    published=dict.fromkeys(FOLDERS, (16, 4, 1)), relpath=published_midframe,
)
