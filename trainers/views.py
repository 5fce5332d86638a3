"""Augmented views of train images for ``TRAINER.PROTOCOL views:V``: drawn once, shared by runs.

How a view is drawn (the rule the feature store's keys rely on):

- View ``v`` (0 <= v < V) of an image is the configured train transform (INPUT.TRANSFORMS with
  every INPUT.* setting, as ``build_transform(cfg, is_train=True)`` builds it) applied to the
  decoded image, with python's ``random`` and torch's CPU generator both seeded with
  ``view_seed(stable key, v)``: the first 8 bytes (little-endian, top bit cleared) of
  SHA-256(``"<stable key>|view<v>"``), where the stable key is the image's path relative to
  DATASET.ROOT and its size in bytes, ``"<relpath>|<size>"`` (the start of its feature-store
  key, without the file's times and inode). Every transform here draws from those two
  generators, so a view depends on nothing but the image, v and the transform settings: not on
  the run's seed, shot count, method, loader workers or the order images are encoded in. Runs
  that use the same image share its views.
- The global random streams are saved before and restored after each view, so drawing views never
  moves a run's own random numbers.
- Each epoch, before its batches are shuffled, the run picks one view per train image with its own
  global torch generator: ``torch.randint(V, (N,))`` over the N train images in DataManager order
  (``ClipTrainer.before_epoch``). Checkpoints hold that generator's state, so a resumed run picks
  the same views as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from dassl.data.datasets import Datum
from dassl.utils.tools import read_image

SEEDING = "sha256(relpath|size|view<v>)[:8] seeds python random and torch cpu"


def stable_key(path: str, root: str) -> str:
    """``"<relpath>|<size>"``: the start of the image's store key, without the file's times and
    inode (views survive a touch or a copy)."""
    return f"{os.path.relpath(path, root)}|{os.path.getsize(path)}"


def view_seed(key: str, view: int) -> int:
    """The seed of view ``view`` of the image with stable key ``key`` (see the module docstring)."""
    digest = hashlib.sha256(f"{key}|view{view}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@contextlib.contextmanager
def seeded_rng(seed: int) -> Iterator[None]:
    """Run the block with python's and torch's CPU generators seeded with ``seed``, then put both
    global streams back as they were."""
    state = random.getstate()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(state)


class AugmentedView(Dataset):
    """View ``view`` of each image of ``data_source``, in the engine's image-batch layout."""

    def __init__(
        self,
        data_source: Sequence[Datum],
        transform: Callable[[Any], torch.Tensor],
        root: str,
        view: int,
    ) -> None:
        self.data_source = data_source
        self.transform = transform
        self.seeds = [view_seed(stable_key(item.impath, root), view) for item in data_source]

    def __len__(self) -> int:
        return len(self.data_source)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        item = self.data_source[idx]
        image = read_image(item.impath)
        with seeded_rng(self.seeds[idx]):
            view = self.transform(image)
        return {"img": view, "label": item.label, "index": idx}
