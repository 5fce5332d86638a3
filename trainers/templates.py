"""Prompt templates: the per-dataset templates of CoOp and CLIP's ImageNet prompt ensemble.

They live here once so every method builds its text side from the same strings; the strings are
facts published with CLIP and CoOp (changing one changes every reported number).
"""

# One hand-written template per dataset, as used by CoOp, CLIP-Adapter and TaskRes.
CUSTOM_TEMPLATES: dict[str, str] = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a photo of {}, a type of food.",
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
}

# Used for a dataset that has no entry above (e.g. a user's own dataset).
DEFAULT_TEMPLATE = "a photo of a {}."

# The 80 ImageNet templates of CLIP's prompt-engineering notebook.
IMAGENET_TEMPLATES: list[str] = [
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
]

# The 7 templates CLIP's notebook selected from the 80 (the ensemble TaskRes and ZeroshotCLIP2 use).
IMAGENET_TEMPLATES_SELECT: list[str] = [
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
]


def custom_template(dataset_name: str) -> str:
    """The dataset's own template; unknown datasets get the generic one, with a printed note."""
    if dataset_name in CUSTOM_TEMPLATES:
        return CUSTOM_TEMPLATES[dataset_name]
    print(
        f'Note: no prompt template for dataset "{dataset_name}"; using "{DEFAULT_TEMPLATE}". '
        "Add an entry to trainers.templates.CUSTOM_TEMPLATES to choose another."
    )
    return DEFAULT_TEMPLATE


def taskres_templates(dataset_name: str) -> list[str]:
    """Templates of TaskRes's base classifier: ImageNet adds CLIP's 7 selected ones."""
    selected = list(IMAGENET_TEMPLATES_SELECT) if dataset_name == "ImageNet" else []
    return selected + [custom_template(dataset_name)]


def ensemble_templates(dataset_name: str) -> list[str]:
    """Templates of ZeroshotCLIP2: the 7 selected ones, plus the custom one off ImageNet."""
    extra = [] if dataset_name == "ImageNet" else [custom_template(dataset_name)]
    return list(IMAGENET_TEMPLATES_SELECT) + extra


def tip_adapter_templates(dataset_name: str) -> list[str]:
    """Templates of Tip-Adapter's zero-shot classifier: CLIP's 7 selected ones on ImageNet, the
    dataset's own elsewhere (gaopengcuhk/Tip-Adapter's datasets/*.py)."""
    if dataset_name == "ImageNet":
        return list(IMAGENET_TEMPLATES_SELECT)
    return [custom_template(dataset_name)]
