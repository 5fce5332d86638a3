"""read_image on the files that break runs late: empty files and decompression bombs are named
with the fix, like corrupt and missing ones."""

import numpy as np
import pytest
from PIL import Image

from dassl.utils import ImageReadError, read_image
from tests.datasets.conftest import IMAGE_SIZE, write_image


def test_empty_file_is_named_with_the_fix(tmp_path):
    path = tmp_path / "images" / "empty.jpg"
    path.parent.mkdir()
    path.touch()
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    assert f'Image file "{path}" is empty (0 bytes)' in str(err.value)
    assert "replace it with a good copy" in str(err.value)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize(
    "limit",
    [
        IMAGE_SIZE * IMAGE_SIZE - 1,  # over the limit: PIL only warns, without the file's name
        IMAGE_SIZE * IMAGE_SIZE // 2 - 1,  # over twice the limit: PIL's DecompressionBombError
    ],
    ids=["warning", "error"],
)
def test_decompression_bomb_is_an_error_naming_the_file(tmp_path, monkeypatch, limit):
    """PIL's limit is lowered so that the 8x8 test image counts as a bomb."""
    path = write_image(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    message = str(err.value)
    assert f'Image "{path}" is too large to decode safely' in message
    assert "(8x8 pixels, more than" in message or "(64 pixels) exceeds limit" in message
    assert "decompression bomb: replace it with a good copy" in message


def test_image_at_the_limit_loads(tmp_path, monkeypatch):
    path = write_image(tmp_path / "ok.jpg")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", IMAGE_SIZE * IMAGE_SIZE)
    assert read_image(path).size == (IMAGE_SIZE, IMAGE_SIZE)


def _gradient(high: int) -> np.ndarray:
    """An 8 x 32 ramp over [0, high], with both ends present."""
    return np.linspace(0, high, 8 * 32).round().reshape(8, 32)


@pytest.mark.parametrize("dtype", ["<u2", ">u2"], ids=["I;16", "I;16B"])
def test_16_bit_png_is_scaled_not_clipped(tmp_path, dtype):
    """PIL's convert("RGB") reads every pixel above 255 of a 16-bit PNG as white."""
    values = _gradient(65535).astype(dtype)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as raw:
        assert raw.mode.startswith("I;16")  # the file really is 16-bit
    pixels = np.asarray(read_image(path))
    assert pixels.shape == (8, 32, 3) and pixels.dtype == np.uint8
    expected = np.rint(values.astype(np.float64) / 257).astype(np.uint8)
    for channel in range(3):
        np.testing.assert_array_equal(pixels[..., channel], expected)
    assert pixels.min() == 0 and pixels.max() == 255 and (pixels == 255).mean() < 0.01


def test_32_bit_integer_image_reads_as_16_bit_values(tmp_path):
    path = tmp_path / "deep.tiff"
    Image.fromarray(_gradient(65535).astype(np.int32), "I").save(path)
    with Image.open(path) as raw:
        assert raw.mode == "I"
    expected = np.rint(_gradient(65535) / 257).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(read_image(path))[..., 1], expected)

    Image.fromarray(np.full((8, 8), 70000, np.int32), "I").save(path)
    with pytest.raises(ImageReadError, match=rf'"{path}" has I pixels .* outside \[0, 65535\]'):
        read_image(path)


def test_float_image_in_0_1_is_scaled_and_others_refused(tmp_path):
    path = tmp_path / "float.tiff"
    values = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    Image.fromarray(values, "F").save(path)
    expected = np.rint(values.astype(np.float64) * 255).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(read_image(path))[..., 2], expected)

    for bad in (values * 255, np.where(values > 0.5, np.nan, values).astype(np.float32)):
        Image.fromarray(bad, "F").save(path)
        with pytest.raises(ImageReadError, match=rf'"{path}" has F pixels .* outside \[0, 1\]'):
            read_image(path)


def test_8_bit_images_read_as_before(tmp_path):
    values = _gradient(255).astype(np.uint8)
    for mode, image in (
        ("L", Image.fromarray(values)),
        ("RGB", Image.fromarray(values).convert("RGB")),
    ):
        path = tmp_path / f"{mode}.png"
        image.save(path)
        np.testing.assert_array_equal(
            np.asarray(read_image(path)), np.asarray(image.convert("RGB"))
        )
