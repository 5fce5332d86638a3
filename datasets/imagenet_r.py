"""ImageNet-R(endition): renditions (art, cartoons, ...) of a 200-class ImageNet subset, test only.
Labels follow the sorted wnid folders (0..199); names are ImageNet's."""

from dassl.data.datasets import DATASET_REGISTRY

from .imagenet import ImageNetVariant


@DATASET_REGISTRY.register()
class ImageNetR(ImageNetVariant):
    dataset_dir = "imagenet-rendition"
    image_folder = "imagenet-r"
