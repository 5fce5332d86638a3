"""read_image on the files that break runs late: empty files and decompression bombs are named
with the fix, like corrupt and missing ones."""

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
