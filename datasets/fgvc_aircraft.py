"""FGVC-Aircraft (2013b): 100 aircraft variants with an official train/val/test partition, which is
read on every run; as in CoOp there is no split file."""

import os

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .benchmark import BenchmarkDataset
from .splits import parse_list_file

SPLITS = ("train", "val", "test")


@DATASET_REGISTRY.register()
class FGVCAircraft(BenchmarkDataset):
    dataset_dir = "fgvc_aircraft"
    split_file = ""
    image_folder = "images"
    required_paths = ("variants.txt", *(f"images_variant_{s}.txt" for s in SPLITS))

    def build_split(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        variants = parse_list_file(os.path.join(self.dataset_dir, "variants.txt"), str)
        label_of = {variant: label for label, variant in enumerate(variants)}
        train, val, test = (self.read_list(f"images_variant_{s}.txt", label_of) for s in SPLITS)
        return train, val, test

    def read_list(self, list_file: str, label_of: dict[str, int]) -> list[Datum]:
        """Lines "<image id> <variant name>"; the name may hold spaces ("Cessna 172")."""

        def item(text: str) -> Datum:
            image_id, _, variant = text.partition(" ")
            if variant not in label_of:
                raise ValueError(
                    f'variant "{variant}" is not in variants.txt; both files must come from the '
                    f"same archive (see {self.docs_section()})"
                )
            impath = os.path.join(self.image_dir, f"{image_id}.jpg")
            return Datum(impath=impath, label=label_of[variant], classname=variant)

        return parse_list_file(os.path.join(self.dataset_dir, list_file), item)
