"""Oxford-IIIT Pets: 37 breeds, official trainval/test lists; val is split off trainval."""

import os

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .benchmark import BenchmarkDataset
from .splits import parse_list_file, split_trainval


@DATASET_REGISTRY.register()
class OxfordPets(BenchmarkDataset):
    dataset_dir = "oxford_pets"
    split_file = "split_zhou_OxfordPets.json"
    image_folder = "images"
    raw_files = ("annotations/trainval.txt", "annotations/test.txt")

    def build_split(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        trainval = self.read_annotations("trainval.txt")
        test = self.read_annotations("test.txt")
        train, val = split_trainval(trainval)
        return train, val, test

    def read_annotations(self, list_file: str) -> list[Datum]:
        """Lines "<Breed_name>_<n> <class id 1..37> <species> <breed id>" ("#" starts a comment);
        the class name is the image name without its number, in lower case ("american_bulldog")."""

        def item(text: str) -> Datum | None:
            fields = text.split()
            if text.startswith("#"):
                return None
            if len(fields) != 4:
                raise ValueError(
                    f'expected "<image> <class id> <species> <breed id>", got {text!r}; '
                    f"re-download the annotations (see {self.docs_section()})"
                )
            imname, class_id = fields[0], int(fields[1])
            breed = imname.rsplit("_", 1)[0].lower()
            impath = os.path.join(self.image_dir, f"{imname}.jpg")
            return Datum(impath=impath, label=class_id - 1, classname=breed)

        path = self.require(os.path.join(self.dataset_dir, "annotations", list_file), list_file)
        return parse_list_file(path, item)
