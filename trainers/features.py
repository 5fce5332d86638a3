"""Image features computed once and reused.

CLIP's image encoder is frozen, so the features of an image under a deterministic transform never
change during a run. Val/test features are therefore encoded on first use and served from memory
afterwards (per-epoch validation no longer re-encodes images); the train split can be served the
same way when its augmentation is switched off (TRAINER.FEATURE_CACHE.TRAIN).
"""

from collections.abc import Callable

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm


class FeatureDataset(Dataset):
    """Precomputed features with their labels, yielding the engine's batch-dict layout.

    "img" holds a feature vector instead of an image; the CLIP trainers tell the two apart by rank.
    """

    def __init__(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        if len(features) != len(labels):
            raise ValueError(f"{len(features)} features but {len(labels)} labels")
        self.features = features
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"img": self.features[index], "label": self.labels[index], "index": index}


@torch.no_grad()
def encode_loader(
    loader: DataLoader, encode: Callable[[torch.Tensor], torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features [N, D] (on CPU) and labels [N] of every batch of `loader`, in loader order, with a
    progress bar counting images (and images/s): on ImageNet this pass takes minutes."""
    features, labels = [], []
    bar = tqdm(total=len(loader.dataset), desc="Encoding images", unit="img", unit_scale=True)
    with bar:
        for batch in loader:
            features.append(encode(batch["img"]).cpu())
            labels.append(batch["label"].cpu())
            bar.update(len(batch["label"]))
    return torch.cat(features), torch.cat(labels)


def feature_loader(
    features: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    shuffle: bool,
    drop_last: bool = False,
) -> DataLoader:
    """A loader over cached features; in-process (no workers): the data is already in memory."""
    return DataLoader(
        FeatureDataset(features, labels),
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
    )


def is_feature_loader(loader: DataLoader) -> bool:
    """Whether `loader` already serves cached features (so it is never encoded twice)."""
    return isinstance(loader.dataset, FeatureDataset)
