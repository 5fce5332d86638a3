"""The shared base of the 15 benchmark datasets: layout checks, split files, few-shot caches.

A subclass holds only what is specific to its dataset: ``dataset_dir`` (folder under
``DATASET.ROOT``), ``split_file`` (e.g. "split_zhou_OxfordPets.json"), ``image_folder`` (relative
to the dataset folder; split paths are relative to it), the paths it needs, and ``build_split``
(how to make the split from the raw files when the split file is absent). Everything else, the
order of which follows upstream CoOp so that the same seed samples the same images, lives here:

1. check the layout and fail with one error listing every missing piece and the DATASETS.md
   section to follow (``DATASETS.md#<registered name in lower case>``, e.g. ``#oxfordpets``);
2. read the split file, or build it from the raw files; either way require the folders the split
   lists images in (and only those);
3. check the split's labels, class names and rows (``splits.check_split``): every dataset's items
   pass here, split file or not, so a bad label stops the run before anything trains; a split
   built from the raw files is written only once it passed;
4. ``DATASET.NUM_SHOTS >= 1``: sample K per class for train and min(K, 4) for val, cached at
   ``split_fewshot/shot_<K>-seed_<S>.pkl`` (read back through the restricted unpickler, so caches
   written by upstream Dassl load too, and their image paths are re-rooted onto this folder). A
   cache that no longer matches the split is drawn again; an unseeded run (SEED < 0) draws afresh
   and touches no cache;
5. ``DATASET.SUBSAMPLE_CLASSES`` all/base/new.
"""

import hashlib
import json
import os
import pickle
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from operator import attrgetter
from typing import Any, NamedTuple

from yacs.config import CfgNode

from dassl.data.datasets import DatasetBase, Datum
from dassl.utils import UnsafePickleError, load_pickle, save_pickle
from dassl.utils.tools import file_sha256
from dassl.utils.user_error import UserError

from .splits import (
    check_split,
    read_and_split_data,
    read_split,
    save_split,
    subsample_classes,
)

DOCS_FILE = "DATASETS.md"


VAL_SHOTS = ("min4", "shots")  # DATASET.VAL_SHOTS: min(K, 4) val images per class, or K


def fewshot_cache_name(num_shots: int, seed: int, val_shots: str = "min4") -> str:
    """The few-shot cache of (K, seed): upstream's name for CoOp's min(K, 4) val shots; a K-shot
    val is another draw, so another file."""
    suffix = "" if val_shots == "min4" else f"-val_{num_shots}"
    return f"shot_{num_shots}-seed_{seed}{suffix}.pkl"


class DatasetLayoutError(UserError, FileNotFoundError):
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
    unique_classnames = True  # one class name, one label (CLIP's ImageNet names repeat some)

    def __init__(self, cfg: CfgNode, persist: bool = True) -> None:
        self.root = self.resolve_root(cfg.DATASET.ROOT)
        self.persist = persist
        self.dataset_dir = os.path.join(self.root, type(self).dataset_dir)
        self.image_dir = os.path.join(self.dataset_dir, self.image_folder)
        self.split_path = os.path.join(self.dataset_dir, self.split_file)
        self.split_fewshot_dir = os.path.join(self.dataset_dir, "split_fewshot")
        self.check_layout(self.root)

        built = bool(self.split_file) and not os.path.isfile(self.split_path)
        train, val, test = self.load_split()
        self._require_items(test if self.test_only else train, self.label_part)
        self.split_warnings = self.check_split(train, val, test)
        if built and self.persist:
            save_split(train, val, test, self.split_path, self.image_dir)
        if self.test_only:
            super().__init__(train_x=test, test=test)
            return
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

    @classmethod
    def layout_error(cls, root: str, missing: Sequence[LayoutItem]) -> DatasetLayoutError:
        name = cls.__name__
        lines = "\n".join(f"  - {item.what}: {item.path}" for item in missing)
        return DatasetLayoutError(
            f"{name}: the dataset under DATASET.ROOT={root} is incomplete; not found:\n"
            f"{lines}\nFollow {cls.docs_section()} to set it up, then check it with "
            f"`python -m datasets.check --root {root} {name}`."
        )

    @classmethod
    def check_inputs(cls, cfg: CfgNode) -> None:
        """What a run checks of the dataset before it writes anything or loads CLIP
        (``dassl.config.run_config.check_run_inputs``): its layout."""
        cls.check_layout(cfg.DATASET.ROOT)

    @classmethod
    def check_layout(cls, root: str) -> None:
        """The first check a run makes (``root``: DATASET.ROOT), before any file is read; a
        sweep's preflight makes it too, so a cell that would fail here is never launched."""
        root = cls.resolve_root(root)
        missing = cls.missing_layout(root)
        if missing:
            raise cls.layout_error(root, missing)

    def require(self, path: str, what: str) -> str:
        """Return ``path``, or raise the layout error naming it when it does not exist."""
        if not os.path.exists(path):
            raise self.layout_error(self.root, [LayoutItem(path, what)])
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
        """Read the split file, or build the split when it is absent (``__init__`` writes it once
        it passed the checks); either way require the folders it lists images in."""
        if self.split_file and os.path.isfile(self.split_path):
            split = read_split(self.split_path, self.image_dir, self.split_file_fix(), check=False)
        else:
            split = self.build_split()
            self.require_built(train=split[0], test=split[2])
        self.require_split_folders(*split)
        return split

    def require_split_folders(self, *parts: Sequence[Datum]) -> None:
        """A layout error naming each missing folder that the split lists images in (the topmost
        missing one under the dataset folder), so a reader needs exactly the folders its split
        uses: StanfordCars with every path under cars_train/ does not need cars_test/."""
        root = os.path.join(self.dataset_dir, "")
        missing = set()
        for folder in {os.path.dirname(item.impath) for items in parts for item in items}:
            if os.path.isdir(folder):
                continue
            while os.path.dirname(folder).startswith(root) and not os.path.isdir(
                os.path.dirname(folder)
            ):
                folder = os.path.dirname(folder)
            missing.add(folder)
        if missing:
            what = f"folder of images listed by {self.split_file or 'the split'}"
            raise self.layout_error(
                self.root, [LayoutItem(folder, what) for folder in sorted(missing)]
            )

    @property
    def label_part(self) -> str:
        """The part whose labels define the classes: train, or test for test-only sets."""
        return "test" if self.test_only else "train"

    def check_split(self, train: list[Datum], val: list[Datum], test: list[Datum]) -> list[str]:
        """``splits.check_split`` on the items of any dataset (the one place they all pass);
        prints and returns the warnings, which the layout checker shows too."""
        name = type(self).__name__
        if self.split_file and os.path.isfile(self.split_path):
            source = f'{name}: split file "{self.split_path}"'
            fix = f"correct the rows named above, or {self.split_file_fix()}"
        else:
            source = f"{name}: the split read from the files under {self.dataset_dir}"
            fix = f"correct those files as {self.docs_section()} describes"
        parts = {"test": test} if self.test_only else {"train": train, "val": val, "test": test}
        warnings = check_split(
            parts, source, fix, self.image_dir, self.label_part, self.unique_classnames
        )
        for warning in warnings:
            print(f"Warning: {warning}")
        return warnings

    def build_split(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        """Build (train, val, test) from the raw files. Without an override the split file is
        the only source, so its absence is a layout error."""
        raise self.layout_error(self.root, [LayoutItem(self.split_path, "split file")])

    # ----- run identity -------------------------------------------------------------------------

    @classmethod
    def content_digests(cls, cfg: CfgNode) -> dict[str, dict[str, str]]:
        """What DATASET.ROOT holds for a run, by content (``dassl.config.run_identity``): the split
        file's SHA-256 and, once drawn, the few-shot subset's (its items' paths under the dataset
        folder, labels and class names), so the same data at another root is the same run. A
        dataset without a split file (ImageNet, its variants) gives none: its root is compared."""
        if not cfg.DATASET.ROOT or not cls.split_file:
            return {}
        dataset_dir = os.path.join(cls.resolve_root(cfg.DATASET.ROOT), cls.dataset_dir)
        split_path = os.path.join(dataset_dir, cls.split_file)
        if not os.path.isfile(split_path):
            return {}
        parts = {"split": file_sha256(split_path)}
        num_shots, seed = cfg.DATASET.NUM_SHOTS, cfg.SEED
        name = fewshot_cache_name(num_shots, seed, cfg.DATASET.get("VAL_SHOTS", "min4"))
        fewshot = os.path.join(dataset_dir, "split_fewshot", name)
        if num_shots >= 1 and seed >= 0 and not cls.test_only and os.path.isfile(fewshot):
            digest = cls.subset_digest(fewshot)
            if digest is not None:
                parts["fewshot"] = digest
        return {"DATASET.ROOT": parts}

    @classmethod
    def subset_digest(cls, path: str) -> str | None:
        """SHA-256 of a few-shot cache's items wherever its dataset folder lives (None when it
        does not load: the run then draws it again)."""
        try:
            data = load_pickle(path)
        except (UnsafePickleError, pickle.UnpicklingError, EOFError, ValueError, TypeError,
                AttributeError, IndexError):  # fmt: skip
            return None
        if not isinstance(data, Mapping):
            return None
        marker = f"{os.sep}{cls.dataset_dir}{os.sep}"
        rows = {
            part: [
                [d.impath[d.impath.rfind(marker) + len(marker) :], d.label, d.classname]
                for d in items
                if isinstance(d, Datum)
            ]
            for part, items in sorted(data.items())
            if isinstance(items, list)
        }
        return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()

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

    def fewshot_cache_path(self, num_shots: int, seed: int, val_shots: str = "min4") -> str:
        return os.path.join(self.split_fewshot_dir, fewshot_cache_name(num_shots, seed, val_shots))

    def sample_few_shot(
        self, cfg: CfgNode, train: list[Datum], val: list[Datum]
    ) -> tuple[list[Datum], list[Datum]]:
        """K shots per class for train and min(K, 4) for val (K with DATASET.VAL_SHOTS shots),
        from the cache when it still matches the split; an unseeded run (SEED < 0) draws afresh
        and neither reads nor writes a cache, since a shared shot_K-seed_-1.pkl would make every
        unseeded run train on one draw."""
        num_shots, seed = cfg.DATASET.NUM_SHOTS, cfg.SEED
        if num_shots < 1:
            return train, val
        split = {"train": train, "val": val} if self.fewshot_val else {"train": train}
        val_shots = cfg.DATASET.get("VAL_SHOTS", "min4")
        if val_shots not in VAL_SHOTS:
            raise ValueError(
                f"DATASET.VAL_SHOTS is {val_shots!r}; use one of {VAL_SHOTS} (min(K, 4) val "
                "images per class, as CoOp, or K, as LP++)."
            )
        val_count = num_shots if val_shots == "shots" else min(num_shots, 4)
        shots = {"train": num_shots, "val": val_count}
        if seed < 0:
            print(
                f"SEED is {seed} (unseeded run): drawing a fresh {num_shots}-shot subset, not read "
                f"from or written to {self.split_fewshot_dir}; set --seed to reuse a cached draw"
            )
            drawn = self.draw_few_shot(split, shots)
            return drawn["train"], drawn.get("val", val)

        path = self.fewshot_cache_path(num_shots, seed, val_shots)
        if os.path.exists(path):
            print(f"Loading preprocessed few-shot data from {path}")
            cached = self.load_cache(path, tuple(split))
            stale = self.stale_cache_reason(cached, split, shots)
            if stale is None:
                return cached["train"], cached.get("val", val)
            print(
                f'Warning: the few-shot cache "{path}" does not match the current split: {stale}. '
                f"Sampling again with SEED {seed} and replacing the cache."
            )
        # The RNG state train.py leaves after seeding, so the same seed samples as upstream.
        random.seed(seed)
        drawn = self.draw_few_shot(split, shots)
        if self.persist:
            print(f"Saving preprocessed few-shot data to {path}")
            save_pickle(drawn, path)
        return drawn["train"], drawn.get("val", val)

    def draw_few_shot(
        self, split: Mapping[str, list[Datum]], shots: Mapping[str, int]
    ) -> dict[str, list[Datum]]:
        """Sample each part (train first, then val: the order upstream draws in)."""
        return {
            part: self.generate_fewshot_dataset(items, num_shots=shots[part])
            for part, items in split.items()
        }

    def stale_cache_reason(
        self,
        cached: Mapping[str, list[Datum]],
        split: Mapping[str, list[Datum]],
        shots: Mapping[str, int],
    ) -> str | None:
        """Why a few-shot cache cannot be a draw from ``split``, or None when it can.

        Each cached item must be in the same part of the split with the same label and class
        name; paths compare as strings under this image folder (``load_cache`` re-rooted them),
        i.e. by the path relative to it. Each class must hold min(K, its images) distinct items,
        as a draw would, which also catches classes added to or grown in the split. One set and
        one Counter per part: about a second for ImageNet's 1.3M training images.
        """
        prefix = os.path.join(self.image_dir, "")
        row = attrgetter("impath", "label", "classname")
        for part, items in split.items():
            in_split = set(map(row, items))
            wrong = [d for d in cached[part] if row(d) not in in_split]
            if wrong:
                d = wrong[0]
                return (
                    f"{len(wrong)} of its {len(cached[part])} {part} items are not in the split's "
                    f'{part} part with the same label and class name, e.g. ["'
                    f'{d.impath.removeprefix(prefix)}", {d.label}, "{d.classname}"]'
                )
            if len({d.impath for d in cached[part]}) != len(cached[part]):
                return f"its {part} items repeat an image, which a draw never does"
            have = Counter(d.label for d in cached[part])
            for label, count in Counter(map(attrgetter("label"), items)).items():
                want = min(shots[part], count)
                if have[label] != want:
                    return (
                        f"class {label} has {have[label]} cached {part} items, but a "
                        f"{shots[part]}-shot draw from its {count} {part} images takes {want}"
                    )
        return None


class ClassFolderDataset(BenchmarkDataset):
    """A dataset whose image folder holds one folder per class; without the split file, each
    class is split 50/20/30 (``splits.read_and_split_data``, as CoOp)."""

    ignored_folders: tuple[str, ...] = ()  # folders in the image folder that are not classes
    new_cnames: Mapping[str, str] = {}  # folder name -> class name, where they differ

    def build_split(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        return read_and_split_data(
            self.image_dir, ignored=self.ignored_folders, new_cnames=self.new_cnames
        )
