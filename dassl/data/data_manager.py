"""DataManager, DatasetWrapper and build_data_loader with upstream Dassl's names and batches.

A batch is a dict: ``img`` (plus ``img2``, ``img3``... for a list of transforms, and ``img0``
with DATALOADER.RETURN_IMG0), ``label``, ``domain``, ``impath`` and ``index``.
"""

import functools
import os
import signal
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torchvision.transforms as T
from tabulate import tabulate
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset
from yacs.config import CfgNode

from dassl.utils.tools import ReadOnly, read_image

from .datasets import Datum, build_dataset
from .samplers import build_sampler
from .transforms import build_transform, interpolation_mode

Transform = Callable[[Any], Any]


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave SIGINT/SIGTERM to the main process, which stops at a batch
    boundary and then shuts them down. Ctrl-C and Slurm signal every process of the job: a
    worker dying of it first would make the main process fail mid-batch instead."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class DatasetWrapper(TorchDataset):
    """Reads one Datum's image and applies the transform(s).

    ``transform`` may be a list/tuple: transform i fills ``img`` (i = 0) or ``img{i+1}``.
    With DATALOADER.K_TRANSFORMS = k > 1 (train only), each of those is a list of k views.
    """

    def __init__(
        self,
        cfg: CfgNode,
        data_source: Sequence[Datum],
        transform: Transform | Sequence[Transform] | None = None,
        is_train: bool = False,
    ) -> None:
        self.cfg = cfg
        self.data_source = data_source
        self.transform = transform
        self.is_train = is_train
        # Several augmented views of one image only make sense for training.
        self.k_tfm = cfg.DATALOADER.K_TRANSFORMS if is_train else 1
        self.return_img0 = cfg.DATALOADER.RETURN_IMG0

        if not isinstance(self.k_tfm, int) or self.k_tfm < 1:
            raise ValueError(
                f"DATALOADER.K_TRANSFORMS must be an int >= 1, got {cfg.DATALOADER.K_TRANSFORMS!r}"
            )
        if self.k_tfm > 1 and transform is None:
            raise ValueError(
                f"DATALOADER.K_TRANSFORMS = {self.k_tfm} needs a transform to make the views, "
                "but the transform is None (INPUT.NO_TRANSFORM is set?)"
            )

        # img0: the image only resized to INPUT.SIZE, without any augmentation.
        to_tensor = [T.Resize(cfg.INPUT.SIZE, interpolation=interpolation_mode(cfg)), T.ToTensor()]
        if "normalize" in cfg.INPUT.TRANSFORMS:
            to_tensor.append(T.Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD))
        self.to_tensor = T.Compose(to_tensor)

    def __len__(self) -> int:
        return len(self.data_source)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        item = self.data_source[idx]
        output: dict[str, Any] = {
            "label": item.label,
            "domain": item.domain,
            "impath": item.impath,
            "index": idx,
        }
        img0 = self.load_image(idx)

        if self.transform is None:
            output["img"] = img0
        elif isinstance(self.transform, (list, tuple)):
            for i, tfm in enumerate(self.transform):
                key = "img" if i == 0 else f"img{i + 1}"
                output[key] = self._transform_image(tfm, img0)
        else:
            output["img"] = self._transform_image(self.transform, img0)

        if self.return_img0:
            output["img0"] = self.to_tensor(img0)
        return output

    def load_image(self, idx: int) -> Any:
        """Item ``idx``'s image, read from disk (a subclass may keep decoded images instead)."""
        return read_image(self.data_source[idx].impath)

    def _transform_image(self, tfm: Transform, img0: Any) -> Any:
        views = [tfm(img0) for _ in range(self.k_tfm)]
        return views[0] if len(views) == 1 else views


def usable_cpu_count() -> int:
    """CPUs this process may run on (a Slurm or taskset allocation, not the whole machine)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@functools.cache
def effective_num_workers(requested: int) -> int:
    """DATALOADER.NUM_WORKERS capped at the usable CPU count (said once per process).

    More workers than CPUs only adds processes competing for the same cores, and makes torch warn
    at every loader start; the shipped configs ask for 8.
    """
    cpus = usable_cpu_count()
    if requested > cpus:
        print(
            f"Note: DATALOADER.NUM_WORKERS is {requested} but this process can use {cpus} "
            f"CPUs; using {cpus} loader workers"
        )
        return cpus
    return requested


def build_data_loader(
    cfg: CfgNode,
    sampler_type: str = "SequentialSampler",
    data_source: Sequence[Datum] | None = None,
    batch_size: int = 64,
    n_domain: int = 0,
    n_ins: int = 2,
    tfm: Transform | Sequence[Transform] | None = None,
    is_train: bool = True,
    dataset_wrapper: type[TorchDataset] | None = None,
) -> DataLoader:
    """A DataLoader over ``data_source`` wrapped by ``dataset_wrapper`` (DatasetWrapper).

    Training drops the last incomplete batch only when the source holds at least one full
    batch, so a few-shot set smaller than the batch size still yields one batch (upstream).
    """
    if data_source is None or len(data_source) == 0:
        raise ValueError(
            "build_data_loader got an empty data source: the dataset split has no items "
            "(check DATASET.ROOT, the split file and DATASET.NUM_SHOTS)"
        )
    if batch_size < 1:
        raise ValueError(f"Batch size must be >= 1, got {batch_size}; fix DATALOADER.*.BATCH_SIZE")
    sampler = build_sampler(
        sampler_type,
        cfg=cfg,
        data_source=data_source,
        batch_size=batch_size,
        n_domain=n_domain,
        n_ins=n_ins,
    )
    if dataset_wrapper is None:
        dataset_wrapper = DatasetWrapper
    return DataLoader(
        dataset_wrapper(cfg, data_source, transform=tfm, is_train=is_train),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=effective_num_workers(cfg.DATALOADER.NUM_WORKERS),
        worker_init_fn=ignore_stop_signals,
        drop_last=is_train and len(data_source) >= batch_size,
        pin_memory=torch.cuda.is_available() and cfg.USE_CUDA,
    )


def keeping_last_batch(loader: DataLoader) -> DataLoader:
    """``loader`` with its last, incomplete batch kept: Dassl's train loaders drop it, the loops
    of Tip-Adapter-F and CLIP-LoRA keep it (same dataset, sampler and workers)."""
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        sampler=loader.sampler,
        num_workers=loader.num_workers,
        worker_init_fn=loader.worker_init_fn,
        pin_memory=loader.pin_memory,
        drop_last=False,
    )


def val_reads_test(dataset: Any) -> bool:
    """Whether a selection on ``dataset``'s val split reads test images: it has no val split
    (Dassl then evaluates test), or its val images are test images (ImageNet's val is its test
    set, as upstream)."""
    if not dataset.val:
        return True
    test = {item.impath for item in dataset.test}
    return any(item.impath in test for item in dataset.val)


def shots_per_class(items: Sequence[Datum]) -> tuple[int, int]:
    """The fewest and the most items of one class in ``items`` ((0, 0) when empty)."""
    counts = Counter(item.label for item in items).values()
    return (min(counts), max(counts)) if counts else (0, 0)


class DataManager:
    """Builds the dataset named by DATASET.NAME, its transforms and its loaders."""

    def __init__(
        self,
        cfg: CfgNode,
        custom_tfm_train: Transform | Sequence[Transform] | None = None,
        custom_tfm_test: Transform | Sequence[Transform] | None = None,
        dataset_wrapper: type[TorchDataset] | None = None,
    ) -> None:
        dataset = build_dataset(cfg)
        if cfg.DATASET.get("VAL_USE", "select") != "select":
            dataset.drop_val(into_train=cfg.DATASET.VAL_USE == "train")

        tfms = []
        for is_train, custom in ((True, custom_tfm_train), (False, custom_tfm_test)):
            if custom is None:
                tfms.append(build_transform(cfg, is_train=is_train))
            else:
                print(f"* Using custom transform for {'training' if is_train else 'testing'}")
                tfms.append(custom)
        tfm_train, tfm_test = tfms

        for split in ("train_x", "test"):
            if not getattr(dataset, split):
                raise ValueError(
                    f"Dataset {cfg.DATASET.NAME} has an empty {split} split; check the "
                    "dataset folder under DATASET.ROOT and its split file"
                )

        loaders = cfg.DATALOADER
        # SAME_AS_X: the unlabelled loader copies the labelled loader's sampling settings.
        train_u = loaders.TRAIN_X if loaders.TRAIN_U.SAME_AS_X else loaders.TRAIN_U
        # attribute: (items, DATALOADER.* settings, transform, is_train); a split without items
        # gets no loader (train_x and test were required above).
        plan = {
            "train_loader_x": (dataset.train_x, loaders.TRAIN_X, tfm_train, True),
            "train_loader_u": (dataset.train_u, train_u, tfm_train, True),
            "val_loader": (dataset.val, loaders.TEST, tfm_test, False),
            "test_loader": (dataset.test, loaders.TEST, tfm_test, False),
        }
        for attr, (items, settings, tfm, is_train) in plan.items():
            loader = None
            if items:
                loader = build_data_loader(
                    cfg,
                    sampler_type=settings.SAMPLER,
                    data_source=items,
                    batch_size=settings.BATCH_SIZE,
                    # DATALOADER.TEST has no domain settings: build_data_loader's defaults
                    n_domain=settings.get("N_DOMAIN", 0),
                    n_ins=settings.get("N_INS", 2),
                    tfm=tfm,
                    is_train=is_train,
                    dataset_wrapper=dataset_wrapper,
                )
            setattr(self, attr, loader)

        self._num_classes = dataset.num_classes
        self._num_source_domains = len(cfg.DATASET.SOURCE_DOMAINS)
        self._lab2cname = dataset.lab2cname
        self.dataset = dataset

        if cfg.VERBOSE:
            self.show_dataset_summary(cfg)
        low, high = shots_per_class(dataset.train_x)
        if 0 < low < cfg.DATASET.NUM_SHOTS and not cfg.get("RUN", {}).get("EVAL_ONLY", False):
            shown = f"{low}" if low == high else f"{low} to {high}"
            print(
                f"Note: DATASET.NUM_SHOTS is {cfg.DATASET.NUM_SHOTS}, but some classes have fewer "
                f"train images: this run trains on {shown} per class (recorded in its result)"
            )

    num_classes = ReadOnly[int]()
    num_source_domains = ReadOnly[int]()
    lab2cname = ReadOnly[dict[int, str]]()

    def show_dataset_summary(self, cfg: CfgNode) -> None:
        """Print the split sizes as a table (upstream's layout)."""
        table: list[list[Any]] = [["Dataset", cfg.DATASET.NAME]]
        if cfg.DATASET.SOURCE_DOMAINS:
            table.append(["Source", cfg.DATASET.SOURCE_DOMAINS])
        if cfg.DATASET.TARGET_DOMAINS:
            table.append(["Target", cfg.DATASET.TARGET_DOMAINS])
        table.append(["# classes", f"{self.num_classes:,}"])
        table.append(["# train_x", f"{len(self.dataset.train_x):,}"])
        if self.dataset.train_u:
            table.append(["# train_u", f"{len(self.dataset.train_u):,}"])
        if self.dataset.val:
            table.append(["# val", f"{len(self.dataset.val):,}"])
        table.append(["# test", f"{len(self.dataset.test):,}"])
        print(tabulate(table))
