"""ImageNet-Sketch: sketches of ImageNet's 1000 classes, for testing only."""

from dassl.data.datasets import DATASET_REGISTRY

from .imagenet import ImageNetVariant


@DATASET_REGISTRY.register()
class ImageNetSketch(ImageNetVariant):
    dataset_dir = "imagenet-sketch"
    image_folder = "images"
