"""UCF101 as images: the middle frame of each clip. Without the split file, the first official
train/test list is used (trainlist01 split 80/20 into train/val, testlist01 as test)."""

import os
import re

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .benchmark import BenchmarkDataset
from .splits import parse_list_file, split_trainval

LISTS_DIR = "ucfTrainTestlist"


def action_folder(action: str) -> str:
    """CamelCase action -> midframe folder and class name, "ApplyEyeMakeup" -> "Apply_Eye_Makeup"
    (each capital starts a word, so "YoYo" -> "Yo_Yo")."""
    return "_".join(re.findall(r"[A-Z][^A-Z]*", action))


@DATASET_REGISTRY.register()
class UCF101(BenchmarkDataset):
    dataset_dir = "ucf101"
    split_file = "split_zhou_UCF101.json"
    image_folder = "UCF-101-midframes"
    raw_files = tuple(
        f"{LISTS_DIR}/{name}" for name in ("classInd.txt", "trainlist01.txt", "testlist01.txt")
    )

    def build_split(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        def class_entry(text: str) -> tuple[str, int]:
            fields = text.split()
            if len(fields) != 2 or not fields[0].isdigit():
                raise ValueError(
                    f'expected "<class id> <Action>", got {text!r}; re-download the train/test '
                    f"lists (see {self.docs_section()})"
                )
            return fields[1], int(fields[0]) - 1  # ids count from 1

        class_list = os.path.join(self.dataset_dir, LISTS_DIR, "classInd.txt")
        label_of = dict(parse_list_file(class_list, class_entry))
        trainval = self.read_list("trainlist01.txt", label_of)
        test = self.read_list("testlist01.txt", label_of)
        train, val = split_trainval(trainval)
        return train, val, test

    def read_list(self, list_file: str, label_of: dict[str, int]) -> list[Datum]:
        """Lines "<Action>/v_<Action>_g<group>_c<clip>.avi"; trainlist adds a class id (unused)."""

        def item(text: str) -> Datum:
            clip = text.split()[0]
            action, _, video = clip.partition("/")
            if action not in label_of or not video:
                raise ValueError(
                    f'"{clip}" is not "<Action>/<video>.avi" with an action from classInd.txt '
                    f"(see {self.docs_section()})"
                )
            folder = action_folder(action)
            frame = os.path.splitext(video)[0] + ".jpg"
            impath = os.path.join(self.image_dir, folder, frame)
            return Datum(impath=impath, label=label_of[action], classname=folder)

        return parse_list_file(os.path.join(self.dataset_dir, LISTS_DIR, list_file), item)
