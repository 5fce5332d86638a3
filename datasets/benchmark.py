"""The shared base of the 15 benchmark datasets: layout checks, split files, few-shot caches.

A subclass holds only what is specific to its dataset: ``dataset_dir`` (folder under
``DATASET.ROOT``), ``split_file`` (e.g. "split_zhou_OxfordPets.json"), ``image_folder`` (relative
to the dataset folder; split paths are relative to it), the paths it needs, and ``build_split``
(how to make the split from the raw files when the split file is absent). Everything else, the
order of which follows upstream CoOp so that the same seed samples the same images, lives here:

1. check the layout and fail with one error listing every missing piece and the DATASETS.md
   section to follow (``DATASETS.md#<registered name in lower case>``, e.g. ``#oxfordpets``);
2. read the split file, or build it and write it so the next run reads it (a build with an
   empty train or test part is refused before anything is written);
3. ``DATASET.NUM_SHOTS >= 1``: sample K per class for train and min(K, 4) for val, cached at
   ``split_fewshot/shot_<K>-seed_<S>.pkl`` (read back through the restricted unpickler, so caches
   written by upstream Dassl load too, and their image paths are re-rooted onto this folder);
4. ``DATASET.SUBSAMPLE_CLASSES`` all/base/new.
"""

import os
import pickle
import random
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from yacs.config import CfgNode

from dassl.data.datasets import DatasetBase, Datum
from dassl.utils import UnsafePickleError, load_pickle, mkdir_if_missing, save_pickle

from .splits import read_split, save_split, subsample_classes

DOCS_FILE = "DATASETS.md"


class DatasetLayoutError(FileNotFoundError):
    """A dataset folder or file is missing; the message names it and the DATASETS.md section."""


class LayoutItem(NamedTuple):
    """A path the dataset needs, with a human description for error messages and the checker."""

    path: str
    what: str


class BenchmarkDataset(DatasetBase):
    """Base of the benchmark datasets; see the module docstring for what it does and in what order.

    ``persist=False`` builds the dataset without writing anything (split file, caches): the layout
    checker uses it to inspect a folder read-only.
    """

    dataset_dir = ""
    split_file = ""  # split_zhou_<Name>.json under the dataset folder; "" when the dataset has none
    image_folder = ""  # relative to the dataset folder; "" means the dataset folder itself
    required_paths: tuple[str, ...] = ()  # always needed, relative to the dataset folder
    raw_files: tuple[str, ...] = ()  # needed only to build the split when the split file is absent
    test_only = False  # evaluation-only sets: no few-shot sampling, no class subsampling
    fewshot_val = True  # sample min(K, 4) val shots (ImageNet keeps its full val, as upstream)

    def __init__(self, cfg: CfgNode, persist: bool = True) -> None:
        self.root = self.resolve_root(cfg.DATASET.ROOT)
        self.persist = persist
        self.dataset_dir = os.path.join(self.root, type(self).dataset_dir)
        self.image_dir = os.path.join(self.dataset_dir, self.image_folder)
        self.split_path = os.path.join(self.dataset_dir, self.split_file)
        self.split_fewshot_dir = os.path.join(self.dataset_dir, "split_fewshot")
        self.check_layout()

        train, val, test = self.load_split()
        if self.test_only:
            self._require_items(test, "test")
            super().__init__(train_x=test, test=test)
            return
        self._require_items(train, "train")
        train, val = self.sample_few_shot(cfg, train, val)
        subsample = cfg.DATASET.get("SUBSAMPLE_CLASSES", "all")
        train, val, test = subsample_classes(train, val, test, subsample=subsample)
        super().__init__(train_x=train, val=val, test=test)

    # ----- layout -------------------------------------------------------------------------------

    @staticmethod
    def resolve_root(root: str) -> str:
        if not root:
            raise DatasetLayoutError(
                "DATASET.ROOT is empty: pass --root DATA (the folder holding the dataset folders, "
                f"see {DOCS_FILE})"
            )
        return os.path.abspath(os.path.expanduser(root))

    @classmethod
    def docs_section(cls) -> str:
        return f"{DOCS_FILE}#{cls.__name__.lower()}"

    @classmethod
    def expected_layout(cls, root: str) -> list[LayoutItem]:
        """Every path this dataset needs under ``root`` as the folder stands now (raw files are
        needed only while the split file is absent). Subclasses extend it."""
        dataset_dir = os.path.join(root, cls.dataset_dir)
        items = [LayoutItem(dataset_dir, "dataset folder")]
        if cls.image_folder:
            items.append(LayoutItem(os.path.join(dataset_dir, cls.image_folder), "image folder"))
        items += [LayoutItem(os.path.join(dataset_dir, p), p) for p in cls.required_paths]
        if cls.split_file and not os.path.isfile(os.path.join(dataset_dir, cls.split_file)):
            if not cls.can_build_split():
                items.append(LayoutItem(os.path.join(dataset_dir, cls.split_file), "split file"))
            items += [
                LayoutItem(
                    os.path.join(dataset_dir, p), f"{p} (to build the absent {cls.split_file})"
                )
                for p in cls.raw_files
            ]
        return items

    @classmethod
    def missing_layout(cls, root: str) -> list[LayoutItem]:
        """The expected paths that do not exist (only the dataset folder when that is absent)."""
        missing = [item for item in cls.expected_layout(root) if not os.path.exists(item.path)]
        dataset_dir = os.path.join(root, cls.dataset_dir)
        return [item for item in missing if item.path == dataset_dir] or missing

    def layout_error(self, missing: Sequence[LayoutItem]) -> DatasetLayoutError:
        name = type(self).__name__
        lines = "\n".join(f"  - {item.what}: {item.path}" for item in missing)
        return DatasetLayoutError(
            f"{name}: the dataset under DATASET.ROOT={self.root} is incomplete; not found:\n"
            f"{lines}\nFollow {self.docs_section()} to set it up, then check it with "
            f"`python -m datasets.check --root {self.root} {name}`."
        )

    def check_layout(self) -> None:
        missing = self.missing_layout(self.root)
        if missing:
            raise self.layout_error(missing)

    def require(self, path: str, what: str) -> str:
        """Return ``path``, or raise the layout error naming it when it does not exist."""
        if not os.path.exists(path):
            raise self.layout_error([LayoutItem(path, what)])
        return path

    def _require_items(self, items: Sequence[Datum] | None, split: str) -> None:
        if items:
            return
        if self.split_file and os.path.isfile(self.split_path):
            raise DatasetLayoutError(
                f'{type(self).__name__}: the split file "{self.split_path}" lists no {split} '
                f"images; {self.split_file_fix()}"
            )
        raise DatasetLayoutError(
            f"{type(self).__name__}: the {split} split is empty (no images found under "
            f"{self.image_dir}). Follow {self.docs_section()} to set up the dataset."
        )

    def require_built(self, **splits: Sequence[Datum]) -> None:
        """Refuse a split built from the raw files with an empty part, before anything is
        written: a saved empty split would be read back by every later run, even once the
        images are there."""
        for split, items in splits.items():
            if not items:
                raise DatasetLayoutError(
                    f"{type(self).__name__}: the {split} split is empty: building it from the "
                    f"files under {self.dataset_dir} found no {split} images (is "
                    f"{self.image_dir} empty?). Nothing was written; add the images as "
                    f"{self.docs_section()} shows, then run again."
                )

    # ----- split --------------------------------------------------------------------------------

    @classmethod
    def can_build_split(cls) -> bool:
        """Whether the split can be built from the raw files when the split file is absent."""
        return cls.build_split is not BenchmarkDataset.build_split

    def split_file_fix(self) -> str:
        """What to do about a bad split file, for the error messages."""
        if self.can_build_split():
            needs = f": {' and '.join(self.raw_files)}" if self.raw_files else ""
            return (
                f"delete it and the next run rebuilds it from the raw files{needs} (a different "
                f"draw from the published file), or re-download the published "
                f"{self.split_file} (see {self.docs_section()})"
            )
        return (
            f"re-download the published {self.split_file} (see {self.docs_section()}); this "
            "dataset cannot rebuild it from raw files"
        )

    def load_split(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        """Read the split file; when it is absent, build the split and write the file."""
        if self.split_file and os.path.isfile(self.split_path):
            return read_split(self.split_path, self.image_dir, fix=self.split_file_fix())
        train, val, test = self.build_split()
        self.require_built(train=train, test=test)
        if self.split_file and self.persist:
            save_split(train, val, test, self.split_path, self.image_dir)
        return train, val, test

    def build_split(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        """Build (train, val, test) from the raw files. Without an override the split file is
        the only source, so its absence is a layout error."""
        raise self.layout_error([LayoutItem(self.split_path, "split file")])

    # ----- caches -------------------------------------------------------------------------------

    def load_cache(self, path: str, keys: Sequence[str]) -> dict[str, list[Datum]]:
        """Load a dict-of-Datum-lists cache (few-shot pickle, ImageNet's preprocessed.pkl)."""
        fix = "delete it and it will be rebuilt"
        try:
            data: Any = load_pickle(path)
        except UnsafePickleError:
            raise
        except (
            pickle.UnpicklingError,
            EOFError,
            ValueError,
            TypeError,
            AttributeError,
            IndexError,
        ) as err:
            raise ValueError(f'Cache file "{path}" is corrupt or truncated ({err}); {fix}') from err
        if not isinstance(data, Mapping) or any(key not in data for key in keys):
            raise ValueError(
                f'Cache file "{path}" must be a dict with the keys {list(keys)}; {fix}'
            )
        for key in keys:
            if not isinstance(data[key], list) or not all(isinstance(d, Datum) for d in data[key]):
                raise ValueError(f'Cache file "{path}": "{key}" is not a list of Datum; {fix}')
        return {key: self.reroot(data[key]) for key in keys}

    def reroot(self, items: list[Datum]) -> list[Datum]:
        """Move cached image paths written under another DATASET.ROOT (another machine, upstream
        caches) onto this dataset folder, by the last ``/<dataset_dir>/`` in each path."""
        here = os.path.join(self.dataset_dir, "")
        marker = f"{os.sep}{type(self).dataset_dir}{os.sep}"
        out, moved = [], 0
        for item in items:
            cut = item.impath.rfind(marker)
            if item.impath.startswith(here) or cut < 0:
                out.append(item)
                continue
            impath = os.path.join(self.dataset_dir, item.impath[cut + len(marker) :])
            out.append(Datum(impath, item.label, item.domain, item.classname))
            moved += 1
        if moved:
            print(f"Re-rooted {moved} cached image paths onto {self.dataset_dir}")
        return out

    def fewshot_cache_path(self, num_shots: int, seed: int) -> str:
        return os.path.join(self.split_fewshot_dir, f"shot_{num_shots}-seed_{seed}.pkl")

    def sample_few_shot(
        self, cfg: CfgNode, train: list[Datum], val: list[Datum]
    ) -> tuple[list[Datum], list[Datum]]:
        """K shots per class for train and min(K, 4) for val, from the cache when it exists."""
        num_shots, seed = cfg.DATASET.NUM_SHOTS, cfg.SEED
        if num_shots < 1:
            return train, val
        keys = ("train", "val") if self.fewshot_val else ("train",)
        path = self.fewshot_cache_path(num_shots, seed)
        if os.path.exists(path):
            print(f"Loading preprocessed few-shot data from {path}")
            data = self.load_cache(path, keys)
            return data["train"], data["val"] if self.fewshot_val else val

        if seed >= 0:
            # The RNG state train.py leaves after seeding, so the same seed samples as upstream.
            random.seed(seed)
        train = self.generate_fewshot_dataset(train, num_shots=num_shots)
        if self.fewshot_val:
            val = self.generate_fewshot_dataset(val, num_shots=min(num_shots, 4))
        if self.persist:
            mkdir_if_missing(self.split_fewshot_dir)
            print(f"Saving preprocessed few-shot data to {path}")
            save_pickle(
                {"train": train, "val": val} if self.fewshot_val else {"train": train}, path
            )
        return train, val
