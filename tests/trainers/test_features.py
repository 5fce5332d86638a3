"""The image-encoding pass shows its progress: a bar counting images, with images per second."""

import torch
from torch.utils.data import DataLoader, Dataset

from trainers.features import encode_loader


class Images(Dataset):
    def __len__(self) -> int:
        return 10

    def __getitem__(self, index: int) -> dict:
        return {"img": torch.full((3, 2, 2), float(index)), "label": index % 3}


def test_encoding_shows_an_image_count_and_rate(capsys):
    loader = DataLoader(Images(), batch_size=4)
    features, labels = encode_loader(loader, lambda images: images.flatten(1)[:, :2])
    err = capsys.readouterr().err
    assert "Encoding images" in err
    assert "10.0/10.0" in err  # counted in images (the last batch has 2), not in batches
    assert "img/s" in err
    assert features[:, 0].tolist() == [float(i) for i in range(10)]
    assert labels.tolist() == [i % 3 for i in range(10)]
