"""build_transform: upstream Dassl's INPUT.TRANSFORMS choices as torchvision pipelines.

Train pipelines apply the chosen augmentations; the test pipeline is always "resize the shorter
side to max(INPUT.SIZE), center-crop INPUT.SIZE, to tensor (+ normalize)". The summary lines
printed here are upstream's, so logs of both engines read the same.
"""

import random
from collections.abc import Sequence

import torch
from PIL import Image
from torchvision.transforms import (
    CenterCrop,
    ColorJitter,
    Compose,
    GaussianBlur,
    Normalize,
    RandomApply,
    RandomCrop,
    RandomGrayscale,
    RandomHorizontalFlip,
    RandomResizedCrop,
    Resize,
    ToTensor,
)
from torchvision.transforms import functional as F
from torchvision.transforms.functional import InterpolationMode
from yacs.config import CfgNode

INTERPOLATION_MODES = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}

# Choices this engine implements. "center_crop" is accepted for upstream configs; as upstream,
# it adds nothing to the train pipeline because every test pipeline center-crops already.
AVAI_CHOICES = [
    "random_flip",
    "random_resized_crop",
    "normalize",
    "instance_norm",
    "random_crop",
    "random_translation",
    "center_crop",
    "cutout",
    "gaussian_noise",
    "colorjitter",
    "randomgrayscale",
    "gaussian_blur",
]
# Upstream choices left out of this lean engine (AutoAugment/RandAugment policies).
UNSUPPORTED_CHOICES = [
    "imagenet_policy",
    "cifar10_policy",
    "svhn_policy",
    "randaugment",
    "randaugment_fixmatch",
    "randaugment2",
]


class Random2DTranslation:
    """With probability ``p``, enlarge to 1.125x (height, width) and crop a random
    (height, width) window; otherwise just resize to (height, width)."""

    def __init__(
        self,
        height: int,
        width: int,
        p: float = 0.5,
        interpolation: InterpolationMode = InterpolationMode.BILINEAR,
    ) -> None:
        self.height = height
        self.width = width
        self.p = p
        self.interpolation = interpolation

    def __call__(self, img: Image.Image) -> Image.Image:
        if random.uniform(0, 1) > self.p:
            return F.resize(img, [self.height, self.width], interpolation=self.interpolation)
        new_h, new_w = round(self.height * 1.125), round(self.width * 1.125)
        img = F.resize(img, [new_h, new_w], interpolation=self.interpolation)
        top = round(random.uniform(0, new_h - self.height))
        left = round(random.uniform(0, new_w - self.width))
        return F.crop(img, top, left, self.height, self.width)


class InstanceNormalization:
    """Per-image, per-channel standardisation of a (C, H, W) tensor."""

    def __init__(self, eps: float = 1e-8) -> None:
        self.eps = eps

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        c = img.size(0)
        flat = img.reshape(c, -1)  # (C, H*W)
        mean = flat.mean(1).view(c, 1, 1)
        std = flat.std(1).view(c, 1, 1)
        return (img - mean) / (std + self.eps)


class Cutout:
    """Zero ``n_holes`` random ``length`` x ``length`` squares of a (C, H, W) tensor
    (squares are clipped at the border, so their centres can be anywhere)."""

    def __init__(self, n_holes: int = 1, length: int = 16) -> None:
        self.n_holes = n_holes
        self.length = length

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.size(1), img.size(2)
        mask = torch.ones(h, w, dtype=img.dtype)
        half = self.length // 2
        for _ in range(self.n_holes):
            y, x = random.randrange(h), random.randrange(w)
            mask[max(y - half, 0) : min(y + half, h), max(x - half, 0) : min(x + half, w)] = 0
        return img * mask  # (H, W) broadcasts over channels


class GaussianNoise:
    """With probability ``p``, add N(mean, std^2) noise to a tensor image."""

    def __init__(self, mean: float = 0.0, std: float = 0.15, p: float = 0.5) -> None:
        self.mean = mean
        self.std = std
        self.p = p

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if random.uniform(0, 1) > self.p:
            return img
        return img + torch.randn_like(img) * self.std + self.mean


def _check_choices(choices: Sequence[str]) -> None:
    for choice in choices:
        if choice in AVAI_CHOICES:
            continue
        problem = (
            "is an upstream Dassl choice not supported by this engine"
            if choice in UNSUPPORTED_CHOICES
            else "is not a known transform"
        )
        raise ValueError(f'INPUT.TRANSFORMS: "{choice}" {problem}; use choices from {AVAI_CHOICES}')


def interpolation_mode(cfg: CfgNode) -> InterpolationMode:
    """The torchvision mode for INPUT.INTERPOLATION, or a clear error naming the choices."""
    name = cfg.INPUT.INTERPOLATION
    if name not in INTERPOLATION_MODES:
        raise ValueError(
            f'INPUT.INTERPOLATION "{name}" is not supported; use one of {list(INTERPOLATION_MODES)}'
        )
    return INTERPOLATION_MODES[name]


def _input_size(cfg: CfgNode) -> tuple[int, int]:
    size = cfg.INPUT.SIZE
    if not (
        isinstance(size, (list, tuple))
        and len(size) == 2
        and all(isinstance(s, int) and s > 0 for s in size)
    ):
        raise ValueError(
            f"INPUT.SIZE must be two positive ints (height, width), got {size!r}; "
            'e.g. INPUT.SIZE "(224, 224)"'
        )
    return size[0], size[1]


def build_transform(
    cfg: CfgNode, is_train: bool = True, choices: Sequence[str] | None = None
) -> Compose | None:
    """The train (``is_train``) or test pipeline for ``choices`` (default INPUT.TRANSFORMS);
    ``None`` when INPUT.NO_TRANSFORM is set, as upstream."""
    if cfg.INPUT.NO_TRANSFORM:
        print("Note: no transform is applied!")
        return None
    if choices is None:
        choices = cfg.INPUT.TRANSFORMS
    _check_choices(choices)
    input_size = _input_size(cfg)
    print(f"Building transform_{'train' if is_train else 'test'}")
    image_steps = _train_image_steps if is_train else _test_image_steps
    tfm = image_steps(cfg, choices, input_size, interpolation_mode(cfg))
    return Compose(tfm + _tensor_steps(cfg, choices, is_train))


def _train_image_steps(
    cfg: CfgNode, choices: Sequence[str], input_size: tuple[int, int], interp: InterpolationMode
) -> list:
    """The augmentations on the PIL image, in upstream's order."""
    target_size = f"{input_size[0]}x{input_size[1]}"
    tfm: list = []

    # Without a cropping step, resize so every image comes out at the target size.
    if "random_crop" not in choices and "random_resized_crop" not in choices:
        print(f"+ resize to {target_size}")
        tfm += [Resize(input_size, interpolation=interp)]

    if "random_translation" in choices:
        print("+ random translation")
        tfm += [Random2DTranslation(input_size[0], input_size[1], interpolation=interp)]

    if "random_crop" in choices:
        crop_padding = cfg.INPUT.CROP_PADDING
        print(f"+ random crop (padding = {crop_padding})")
        tfm += [RandomCrop(input_size, padding=crop_padding)]

    if "random_resized_crop" in choices:
        scale = cfg.INPUT.RRCROP_SCALE
        print(f"+ random resized crop (size={cfg.INPUT.SIZE}, scale={scale})")
        tfm += [RandomResizedCrop(input_size, scale=scale, interpolation=interp)]

    if "random_flip" in choices:
        print("+ random flip")
        tfm += [RandomHorizontalFlip()]

    if "colorjitter" in choices:
        b, c, s, h = (
            cfg.INPUT.COLORJITTER_B,
            cfg.INPUT.COLORJITTER_C,
            cfg.INPUT.COLORJITTER_S,
            cfg.INPUT.COLORJITTER_H,
        )
        print(f"+ color jitter (brightness={b}, contrast={c}, saturation={s}, hue={h})")
        tfm += [ColorJitter(brightness=b, contrast=c, saturation=s, hue=h)]

    if "randomgrayscale" in choices:
        print("+ random gray scale")
        tfm += [RandomGrayscale(p=cfg.INPUT.RGS_P)]

    if "gaussian_blur" in choices:
        print(f"+ gaussian blur (kernel={cfg.INPUT.GB_K})")
        tfm += [RandomApply([GaussianBlur(cfg.INPUT.GB_K)], p=cfg.INPUT.GB_P)]

    return tfm


def eval_view_identity(cfg: CfgNode) -> dict:
    """Every setting the test pipeline depends on, as plain values: features of images under it
    are keyed by this (trainers/feature_store.py), so keep it in step with the pipeline below."""
    input_size = _input_size(cfg)
    choices = cfg.INPUT.TRANSFORMS
    normalize = "normalize" in choices
    return {
        "resize_smaller_edge": max(input_size),
        "center_crop": list(input_size),
        "interpolation": cfg.INPUT.INTERPOLATION,
        "normalize": [list(cfg.INPUT.PIXEL_MEAN), list(cfg.INPUT.PIXEL_STD)] if normalize else None,
        "instance_norm": "instance_norm" in choices,
    }


def _test_image_steps(
    cfg: CfgNode, choices: Sequence[str], input_size: tuple[int, int], interp: InterpolationMode
) -> list:
    """Resize the shorter side, then center-crop: no randomness."""
    print(f"+ resize the smaller edge to {max(input_size)}")
    print(f"+ {input_size[0]}x{input_size[1]} center crop")
    return [Resize(max(input_size), interpolation=interp), CenterCrop(input_size)]


def _tensor_steps(cfg: CfgNode, choices: Sequence[str], is_train: bool) -> list:
    """The steps on the tensor, shared by both pipelines in upstream's order; cutout and gaussian
    noise are augmentations, so only the train pipeline has them."""
    print("+ to torch tensor of range [0, 1]")
    tfm: list = [ToTensor()]

    if is_train and "cutout" in choices:
        n_holes, length = cfg.INPUT.CUTOUT_N, cfg.INPUT.CUTOUT_LEN
        print(f"+ cutout (n_holes={n_holes}, length={length})")
        tfm += [Cutout(n_holes, length)]

    if "normalize" in choices:
        print(f"+ normalization (mean={cfg.INPUT.PIXEL_MEAN}, std={cfg.INPUT.PIXEL_STD})")
        tfm += [Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD)]

    if is_train and "gaussian_noise" in choices:
        print(f"+ gaussian noise (mean={cfg.INPUT.GN_MEAN}, std={cfg.INPUT.GN_STD})")
        tfm += [GaussianNoise(cfg.INPUT.GN_MEAN, cfg.INPUT.GN_STD)]

    if "instance_norm" in choices:
        print("+ instance normalization")
        tfm += [InstanceNormalization()]

    return tfm
