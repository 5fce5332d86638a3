"""The image-encoding pass shows its progress: a bar counting images, with images per second."""

import torch
from torch.utils.data import Dataset

from dassl.data.datasets import Datum
from trainers.encoder_seal import EncoderSeal
from trainers.features import ImageFeatures


class Images(Dataset):
    def __len__(self) -> int:
        return 10

    def __getitem__(self, index: int) -> dict:
        return {"img": torch.full((3, 2, 2), float(index)), "label": index % 3}


def test_encoding_shows_an_image_count_and_rate(tmp_path, capsys):
    items = []
    for i in range(10):
        path = tmp_path / f"{i}.jpg"
        path.write_bytes(b"x")
        items.append(Datum(impath=str(path), label=i % 3, classname=str(i % 3)))
    encode = ImageFeatures(
        encode=lambda images: images.flatten(1)[:, :2],
        dataset_root=str(tmp_path),
        group="tiny",
        batch_size=4,
        num_workers=0,
        namespace=None,
        about={},
        seal=EncoderSeal(torch.nn.Identity()),
    )
    features, encoded, stored = encode(Images(), items, view={}, split="test")
    err = capsys.readouterr().err
    assert "Encoding test images" in err
    assert "10/10" in err  # counted in images (the last batch has 2), not in batches
    assert "img/s" in err
    assert (encoded, stored) == (10, 0)
    assert features[:, 0].tolist() == [float(i) for i in range(10)]
