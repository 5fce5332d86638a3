"""From images to features: the one path every CLIP method's images take.

CLIP's image encoder is frozen, so an image's features under a deterministic view never change.
Batches come in two kinds, told apart by their key, never by tensor rank: image batches (the
engine's ``img``) and feature batches (``FEATURES``), served by ``FeatureDataset`` from features
encoded once. ``ImageFeatures`` produces those features: it reads what the feature store already
holds, encodes the rest, and adds them to the store, but only while the image tower is the one
loaded (``EncoderSeal``, trainers/encoder_seal.py): features of any other weights never reach
the store, and the store never serves features to a tower that has changed.

On the CPU, images bound for the store or for evaluation are encoded one per forward pass
(``encode_each``): CPU kernels round differently depending on a row's batch and position in it, so
only then are an image's features a function of the image alone, equal whichever run, batch size
or neighbours produced them. That is what makes results with and without the store bit-identical.
On CUDA they are encoded in batches (speed first; GPU results are not bit-reproducible anyway).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from dassl.data.datasets import Datum
from dassl.data.samplers import build_sampler

from .encoder_seal import EncoderSeal
from .feature_store import Namespace, image_key

FEATURES = "features"  # the batch key of feature batches (image batches carry "img")
SHARD_ROWS = 1024  # features written to the store per shard, so a killed run keeps its progress

Encoder = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def encode_each(encoder: Encoder, images: torch.Tensor) -> torch.Tensor:
    """Features [N, D] of images [N, 3, H, W] that do not depend on the batch (see the module
    docstring): one image per forward on the CPU, the whole batch elsewhere."""
    if images.device.type != "cpu":
        return encoder(images)
    return torch.cat([encoder(image[None]) for image in images])


def batching(device: torch.device) -> str:
    """How ``encode_each`` batches on ``device`` (part of the store's key)."""
    return "one image per forward" if device.type == "cpu" else "batched"


class FeatureDataset(Dataset):
    """Features [V, N, D] of N images under V views, serving one view per image at a time.

    Items are feature batches, ``{FEATURES: [D], "label": int, "index": i}``, of the view that
    ``choose_views`` picked for each image (view 0 until then). A train set is built before its
    features exist (its loader is the engine's from the start) and filled by ``set_features``.
    """

    def __init__(self, labels: torch.Tensor, features: torch.Tensor | None = None) -> None:
        self.labels = labels
        self.features: torch.Tensor | None = None
        self.choice = torch.zeros(len(labels), dtype=torch.long)
        if features is not None:
            self.set_features(features)

    def set_features(self, features: torch.Tensor) -> None:
        """``features``: [N, D] (one view) or [V, N, D]."""
        if features.dim() == 2:
            features = features[None]
        if features.shape[1] != len(self.labels):
            raise ValueError(
                f"features of {features.shape[1]} images for {len(self.labels)} labels"
            )
        self.features = features

    @property
    def num_views(self) -> int:
        return 0 if self.features is None else self.features.shape[0]

    def choose_views(self, choice: torch.Tensor) -> None:
        """The view of each image, [N] ints in [0, V)."""
        if (
            choice.shape != self.choice.shape
            or bool((choice < 0).any())
            or bool((choice >= self.num_views).any())
        ):
            raise ValueError(f"need one view in [0, {self.num_views}) per image, got {choice}")
        self.choice = choice

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.features is None:
            raise RuntimeError(
                "train features are encoded by ClipTrainer.before_train; call it first"
            )
        return {
            FEATURES: self.features[self.choice[index], index],
            "label": self.labels[index],
            "index": index,
        }


def feature_loader(
    dataset: FeatureDataset, batch_size: int, sampler_type: str, drop_last: bool = False
) -> DataLoader:
    """A loader over features in memory (no workers) with the sampler of the image loader it
    stands for, so it takes the same draws of torch's global generator per epoch."""
    sampler = build_sampler(sampler_type, data_source=dataset)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last)


def labels_of(data_source: Sequence[Datum]) -> torch.Tensor:
    return torch.tensor([item.label for item in data_source], dtype=torch.long)


class ImageFeatures:
    """Features of dataset images under a view: from the store where present, encoded (and
    added to the store) where not. Encoding draws nothing from torch's global generator.

    The store is read and written only while ``seal`` holds (the image tower is the loaded one);
    otherwise every image is encoded and nothing is written.
    """

    def __init__(
        self,
        encode: Encoder,
        dataset_root: str,
        group: str,
        batch_size: int,
        num_workers: int,
        namespace: Callable[[dict[str, Any]], Namespace] | None,
        about: dict[str, Any],
        seal: EncoderSeal,
    ) -> None:
        self.encode = encode
        self.dataset_root = dataset_root
        self.group = group  # the store folder of this dataset
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.namespace = namespace  # view identity -> store namespace; None: store off
        self.about = about  # shown by `python -m tools.feature_store list`
        self.seal = seal
        self.refusal_reported = False

    def store_usable(self) -> bool:
        """Whether the store may be read or written now: the image tower is the loaded one."""
        broken = self.seal.broken()
        if broken is not None and not self.refusal_reported:
            print(f"Feature store not used: the image tower is not the loaded one ({broken})")
            self.refusal_reported = True
        return broken is None

    def __call__(
        self,
        images: Dataset,
        data_source: Sequence[Datum],
        view: dict[str, Any],
        split: str,
        use_store: bool = True,
    ) -> tuple[torch.Tensor, int, int]:
        """Features [N, D] of ``images`` (a dataset of image batches over ``data_source``), and
        how many were encoded and how many came from the store."""
        keys = [image_key(item.impath, self.dataset_root) for item in data_source]
        usable = self.namespace is not None and use_store and self.store_usable()
        ns = self.namespace(view) if usable else None
        found: dict[int, np.ndarray] = {}
        missing = list(range(len(keys)))
        if ns is not None:
            found, missing = ns.lookup(keys, self.group)
        rows: dict[int, torch.Tensor] = {i: torch.from_numpy(np.array(f)) for i, f in found.items()}
        if missing:
            rows.update(self._encode(images, missing, keys, ns, split))
        return torch.stack([rows[i] for i in range(len(keys))]), len(missing), len(found)

    def _encode(
        self,
        images: Dataset,
        positions: list[int],
        keys: list[str],
        ns: Namespace | None,
        split: str,
    ) -> dict[int, torch.Tensor]:
        # Its own generator: creating the iterator takes no draw from the global one.
        loader = DataLoader(
            Subset(images, positions),
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            generator=torch.Generator(),
        )
        rows: dict[int, torch.Tensor] = {}
        pending: list[int] = []
        done = 0
        # Counted in images, with their rate: encoding ImageNet's test split takes minutes. Closed
        # however the loop ends: a bar left open by an exception is drawn at interpreter exit.
        with tqdm(total=len(positions), desc=f"Encoding {split} images", unit="img") as progress:
            for batch in loader:
                features = self.encode(batch["img"]).cpu()
                progress.update(len(features))
                for row in features:
                    rows[positions[done]] = row
                    pending.append(positions[done])
                    done += 1
                if ns is not None and (len(pending) >= SHARD_ROWS or done == len(positions)):
                    if not self.store_usable():  # the tower changed while these were encoded
                        ns = None
                        continue
                    ns.add(
                        [keys[i] for i in pending],
                        torch.stack([rows[i] for i in pending]),
                        self.group,
                        about={**self.about, "split": split},
                    )
                    pending = []
        return rows
