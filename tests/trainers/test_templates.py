"""Templates and the ImageNet-A/R class-index data."""

import json

from trainers import class_subsets
from trainers.templates import (
    CUSTOM_TEMPLATES,
    DEFAULT_TEMPLATE,
    IMAGENET_TEMPLATES,
    IMAGENET_TEMPLATES_SELECT,
    custom_template,
    ensemble_templates,
    taskres_templates,
)

FEW_SHOT_DATASETS = [
    "OxfordPets", "OxfordFlowers", "FGVCAircraft", "DescribableTextures", "EuroSAT",
    "StanfordCars", "Food101", "SUN397", "Caltech101", "UCF101", "ImageNet",
]  # fmt: skip
IMAGENET_VARIANTS = ["ImageNetSketch", "ImageNetV2", "ImageNetA", "ImageNetR"]


def test_every_benchmark_has_a_template_with_one_slot():
    assert set(CUSTOM_TEMPLATES) == set(FEW_SHOT_DATASETS + IMAGENET_VARIANTS)
    for template in CUSTOM_TEMPLATES.values():
        assert template.count("{}") == 1


def test_imagenet_template_lists():
    assert len(IMAGENET_TEMPLATES) == 80 == len(set(IMAGENET_TEMPLATES))
    assert len(IMAGENET_TEMPLATES_SELECT) == 7
    assert set(IMAGENET_TEMPLATES_SELECT) <= set(IMAGENET_TEMPLATES)


def test_taskres_templates_add_the_selected_ones_on_imagenet_only():
    assert taskres_templates("ImageNet") == IMAGENET_TEMPLATES_SELECT + ["a photo of a {}."]
    assert taskres_templates("OxfordPets") == ["a photo of a {}, a type of pet."]


def test_ensemble_templates_add_the_custom_one_off_imagenet():
    assert ensemble_templates("ImageNet") == IMAGENET_TEMPLATES_SELECT
    assert ensemble_templates("EuroSAT") == IMAGENET_TEMPLATES_SELECT + [
        "a centered satellite photo of {}."
    ]


def test_unknown_dataset_falls_back_with_a_note(capsys):
    assert custom_template("MyDataset") == DEFAULT_TEMPLATE
    assert "MyDataset" in capsys.readouterr().out


def test_imagenet_a_r_indices_are_200_sorted_imagenet_rows():
    with open(class_subsets.INDEX_FILE) as f:
        raw = json.load(f)
    for name in ("ImageNetA", "ImageNetR"):
        rows = raw[name]
        assert len(rows) == 200
        # Both sides are in sorted-wnid order, so the mapping must be strictly increasing.
        assert all(a < b for a, b in zip(rows, rows[1:]))
        assert 0 <= rows[0] and rows[-1] < class_subsets.NUM_IMAGENET_CLASSES
        assert class_subsets.imagenet_rows(name) == rows
    assert raw["ImageNetA"] != raw["ImageNetR"]
    assert class_subsets.imagenet_rows("ImageNet") is None
    assert class_subsets.subset_datasets() == ["ImageNetA", "ImageNetR"]
