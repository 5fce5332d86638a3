"""build_transform: output shapes, normalisation, the test-time resize + center crop, printed
summary lines and errors for choices this engine does not implement."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, RandomResizedCrop, Resize

from dassl.data.transforms import AVAI_CHOICES, build_transform
from tests.support.tiny_run import full_cfg

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def make_cfg(size=(24, 20), transforms=(), interpolation="bilinear"):
    keys = {"INPUT.SIZE": size, "INPUT.TRANSFORMS": transforms, "INPUT.GB_K": 3}
    return full_cfg({**keys, "INPUT.INTERPOLATION": interpolation})


def stripes_image(width=48, height=32) -> Image.Image:
    """Three vertical bands of equal width: red | green | blue."""
    arr = np.zeros((height, width, 3), dtype=np.uint8)
    third = width // 3
    arr[:, :third, 0] = 255
    arr[:, third : 2 * third, 1] = 255
    arr[:, 2 * third :, 2] = 255
    return Image.fromarray(arr)


@pytest.mark.parametrize("choice", [c for c in AVAI_CHOICES if c != "normalize"])
def test_each_train_choice_outputs_target_size(choice):
    """Every choice (with the resize it implies) yields a (3, H, W) float tensor."""
    tfm = build_transform(make_cfg(transforms=(choice,)), is_train=True)
    torch.manual_seed(0)
    for img in (stripes_image(48, 32), stripes_image(17, 40)):
        out = tfm(img)
        assert out.shape == (3, 24, 20)
        assert out.dtype == torch.float32


def test_test_transform_resizes_shorter_side_then_center_crops():
    """48x32 image, INPUT.SIZE 16x16: shorter side 32 -> 16 gives 24x16 with 8 px bands;
    the centred 16 px window holds 4 px red, 8 px green, 4 px blue."""
    tfm = build_transform(make_cfg(size=(16, 16), interpolation="nearest"), is_train=False)
    out = tfm(stripes_image(48, 32))
    assert out.shape == (3, 16, 16)
    red, green, blue = torch.eye(3)
    for col, colour in [(0, red), (3, red), (4, green), (11, green), (12, blue), (15, blue)]:
        assert torch.equal(out[:, :, col], colour[:, None].expand(3, 16)), col


def test_test_transform_uses_max_of_non_square_size():
    tfm = build_transform(make_cfg(size=(24, 20)), is_train=False)
    resize = tfm.transforms[0]
    assert isinstance(resize, Resize) and resize.size == 24
    assert tfm(stripes_image(30, 60)).shape == (3, 24, 20)


def test_normalize_uses_pixel_mean_and_std():
    colour = (255, 0, 128)
    img = Image.new("RGB", (20, 20), colour)
    cfg = make_cfg(size=(8, 8), transforms=("normalize",))
    expected = torch.tensor([(c / 255 - m) / s for c, m, s in zip(colour, MEAN, STD)])
    for is_train in (True, False):
        out = build_transform(cfg, is_train=is_train)(img)
        assert torch.allclose(out, expected[:, None, None].expand(3, 8, 8), atol=1e-6)

    # Without "normalize" the tensor stays in [0, 1].
    out = build_transform(make_cfg(size=(8, 8)), is_train=False)(img)
    assert torch.allclose(out[:, 0, 0], torch.tensor([1.0, 0.0, 128 / 255]))


@pytest.mark.parametrize(
    "name,mode",
    [
        ("bilinear", InterpolationMode.BILINEAR),
        ("bicubic", InterpolationMode.BICUBIC),
        ("nearest", InterpolationMode.NEAREST),
    ],
)
def test_interpolation_and_rrcrop_scale_reach_the_transforms(name, mode):
    cfg = make_cfg(transforms=("random_resized_crop",), interpolation=name)
    cfg.INPUT.RRCROP_SCALE = (0.5, 1.0)
    rrc = build_transform(cfg, is_train=True).transforms[0]
    assert isinstance(rrc, RandomResizedCrop)
    assert rrc.scale == (0.5, 1.0) and rrc.size == (24, 20) and rrc.interpolation == mode
    assert build_transform(cfg, is_train=False).transforms[0].interpolation == mode


def test_random_flip_flips_sometimes():
    tfm = build_transform(make_cfg(size=(32, 48), transforms=("random_flip",)), is_train=True)
    torch.manual_seed(0)
    first_cols = {tuple(tfm(stripes_image())[:, 0, 0].tolist()) for _ in range(20)}
    assert first_cols == {(1.0, 0.0, 0.0), (0.0, 0.0, 1.0)}  # red left, or flipped: blue left


def test_random_crop_pads_by_crop_padding():
    cfg = make_cfg(size=(32, 48), transforms=("random_crop",))
    cfg.INPUT.CROP_PADDING = 4
    crop = build_transform(cfg, is_train=True).transforms[0]
    assert crop.padding == 4 and crop.size == (32, 48)


def test_summary_lines(capsys):
    cfg = make_cfg(size=(32, 32), transforms=("random_resized_crop", "random_flip", "normalize"))
    build_transform(cfg, is_train=True)
    build_transform(cfg, is_train=False)
    norm = f"+ normalization (mean={MEAN}, std={STD})"
    assert capsys.readouterr().out.splitlines() == [
        "Building transform_train",
        "+ random resized crop (size=(32, 32), scale=(0.08, 1.0))",
        "+ random flip",
        "+ to torch tensor of range [0, 1]",
        norm,
        "Building transform_test",
        "+ resize the smaller edge to 32",
        "+ 32x32 center crop",
        "+ to torch tensor of range [0, 1]",
        norm,
    ]

    build_transform(make_cfg(size=(24, 20), transforms=("colorjitter",)), is_train=True)
    assert capsys.readouterr().out.splitlines()[1:3] == [
        "+ resize to 24x20",
        "+ color jitter (brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)",
    ]


def test_choices_argument_overrides_cfg():
    cfg = make_cfg(transforms=("random_flip",))
    tfm = build_transform(cfg, is_train=True, choices=("random_resized_crop",))
    assert isinstance(tfm.transforms[0], RandomResizedCrop)


def test_no_transform_returns_none(capsys):
    cfg = make_cfg()
    cfg.INPUT.NO_TRANSFORM = True
    assert build_transform(cfg, is_train=True) is None
    assert "Note: no transform is applied!" in capsys.readouterr().out


def test_bad_choices_fail_listing_supported_ones():
    with pytest.raises(ValueError, match=r'"randaugment" is an upstream .* not supported') as err:
        build_transform(make_cfg(transforms=("randaugment",)))
    assert "random_resized_crop" in str(err.value)
    with pytest.raises(ValueError, match=r'"random_rotate" is not a known transform.*random_flip'):
        build_transform(make_cfg(transforms=("random_rotate",)))
    with pytest.raises(ValueError, match=r"INTERPOLATION \"lanczos\".*bicubic"):
        build_transform(make_cfg(interpolation="lanczos"))
    with pytest.raises(ValueError, match="INPUT.SIZE must be two positive ints"):
        build_transform(make_cfg(size=(224,)))
