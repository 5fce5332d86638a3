"""ImageNetV2 (matched frequency): new test images for ImageNet's 1000 classes, test only.
Its class folders are named by label ("0".."999") in the order of ImageNet's classnames.txt."""

import os

from dassl.data.datasets import DATASET_REGISTRY, Datum
from dassl.utils import listdir_nohidden

from .imagenet import ImageNetVariant, read_classnames


@DATASET_REGISTRY.register()
class ImageNetV2(ImageNetVariant):
    dataset_dir = "imagenetv2"
    image_folder = "imagenetv2-matched-frequency-format-val"

    def load_split(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        classnames = list(read_classnames(self.classnames_path(self.root)).values())
        test = []
        for label, classname in enumerate(classnames):
            class_dir = self.require(
                os.path.join(self.image_dir, str(label)), f"class {label} folder"
            )
            test += [
                Datum(impath=os.path.join(class_dir, im), label=label, classname=classname)
                for im in listdir_nohidden(class_dir, sort=True)
            ]
        return [], [], test
