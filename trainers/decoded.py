"""Decode-once for the ``exact`` protocol: train images decoded once per run, cropped every epoch.

The exact protocol augments every train image anew each epoch, but the decoded pixels never
change. ``DecodeOnceWrapper.decode`` reads the train images once, in the main process, and keeps
them as uint8 arrays [H, W, 3]; every epoch rebuilds the PIL image from those pixels
(``Image.fromarray``), which the transform then crops exactly as it would the freshly decoded
file: same pixels, same random draws, identical crops. What it saves is the JPEG decoding.

Memory: the arrays are held once, in the process that forks the loader workers; workers read them
through copy-on-write pages that nobody writes, so they add no copies (with the ``fork`` start
method, Linux's default; ``spawn`` would pickle them into each worker). ``TRAINER.DECODE_ONCE_MB``
caps the total; images beyond it are decoded every epoch as before, and 0 switches this off.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image
from yacs.config import CfgNode

from dassl.data.data_manager import DatasetWrapper
from dassl.data.datasets import Datum
from dassl.utils.tools import read_image

MB = 1 << 20


class DecodeOnceWrapper(DatasetWrapper):
    """DatasetWrapper serving images decoded by ``decode`` from memory, the others from disk."""

    def __init__(
        self,
        cfg: CfgNode,
        data_source: Sequence[Datum],
        transform: Callable[[Any], Any] | Sequence[Callable[[Any], Any]] | None = None,
        is_train: bool = False,
    ) -> None:
        super().__init__(cfg, data_source, transform=transform, is_train=is_train)
        self.budget_bytes = int(cfg.TRAINER.DECODE_ONCE_MB * MB)
        self.decoded: dict[int, np.ndarray] = {}

    def decode(self) -> int:
        """Decode images in order while they fit the budget; returns the bytes held. Call it in
        the main process before the loader's workers start, so they share the pixels."""
        held = sum(a.nbytes for a in self.decoded.values())
        for idx, item in enumerate(self.data_source):
            if idx in self.decoded:
                continue
            pixels = np.asarray(read_image(item.impath))
            if held + pixels.nbytes > self.budget_bytes:
                break
            pixels.setflags(write=False)
            self.decoded[idx] = pixels
            held += pixels.nbytes
        return held

    def load_image(self, idx: int) -> Image.Image:
        pixels = self.decoded.get(idx)
        if pixels is None:
            return super().load_image(idx)
        return Image.fromarray(pixels)
