"""Datum and DatasetBase, with upstream Dassl's attribute names so pickles load on either side.

Few-shot caches written by upstream Dassl store ``Datum`` objects by their module path
(``dassl.data.datasets.base_dataset.Datum``) and instance dict (``_impath``, ``_label``,
``_domain``, ``_classname``); this module keeps both exactly, and ours load in upstream too.
"""

import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from operator import attrgetter

from dassl.utils.tools import ReadOnly


class Datum:
    """One labelled image. Unlike upstream, the file's existence is not checked here: stat-ing
    every ImageNet image at start-up is slow, and ``read_image`` names a missing file anyway."""

    def __init__(self, impath: str = "", label: int = 0, domain: int = 0, classname: str = ""):
        if not isinstance(impath, str):
            raise TypeError(f"Datum.impath must be a str, got {type(impath).__name__}")
        self._impath = impath
        self._label = label
        self._domain = domain
        self._classname = classname

    impath = ReadOnly[str]()
    label = ReadOnly[int]()
    domain = ReadOnly[int]()
    classname = ReadOnly[str]()

    def __repr__(self) -> str:
        return (
            f"Datum(impath={self._impath!r}, label={self._label}, domain={self._domain}, "
            f"classname={self._classname!r})"
        )


class DatasetBase:
    """A dataset as four lists of Datum: labelled train, unlabelled train, val and test."""

    dataset_dir = ""  # folder name under DATASET.ROOT
    domains: list[str] = []  # domain names, for multi-domain datasets

    def __init__(
        self,
        train_x: list[Datum] | None = None,
        train_u: list[Datum] | None = None,
        val: list[Datum] | None = None,
        test: list[Datum] | None = None,
    ) -> None:
        self._train_x = train_x
        self._train_u = train_u
        self._val = val
        self._test = test
        self._num_classes = self.get_num_classes(train_x)
        self._lab2cname, self._classnames = self.get_lab2cname(train_x)

    train_x = ReadOnly[list[Datum] | None]()
    train_u = ReadOnly[list[Datum] | None]()
    val = ReadOnly[list[Datum] | None]()
    test = ReadOnly[list[Datum] | None]()
    lab2cname = ReadOnly[dict[int, str]]()
    classnames = ReadOnly[list[str]]()
    num_classes = ReadOnly[int]()

    def drop_val(self, into_train: bool) -> None:
        """The validation-free protocol: no val split; its images join the training set when
        ``into_train``, else stay unused."""
        if into_train:
            self._train_x = list(self._train_x or []) + list(self._val or [])
        self._val = []

    @staticmethod
    def get_num_classes(data_source: Sequence[Datum] | None) -> int:
        """Largest label + 1, so a subset missing some classes still sizes the classifier right."""
        if not data_source:
            return 0
        return max(item.label for item in data_source) + 1

    @staticmethod
    def get_lab2cname(data_source: Sequence[Datum] | None) -> tuple[dict[int, str], list[str]]:
        """Label -> class name, and class names ordered by label."""
        mapping = {item.label: item.classname for item in data_source or []}
        labels = sorted(mapping)
        return mapping, [mapping[label] for label in labels]

    def check_input_domains(
        self, source_domains: Sequence[str], target_domains: Sequence[str]
    ) -> None:
        for domain in [*source_domains, *target_domains]:
            if domain not in self.domains:
                raise ValueError(
                    f'Input domain "{domain}" is not a domain of {type(self).__name__}; '
                    f"choose from {self.domains}"
                )

    def generate_fewshot_dataset(
        self, *data_sources: list[Datum], num_shots: int = -1, repeat: bool = False
    ) -> list[Datum] | list[list[Datum]]:
        """Sample ``num_shots`` items per class from each source (python's global RNG, seeded by
        ``SEED``, as upstream, so the same seed picks the same images).

        A class with fewer items keeps all of them (or, with ``repeat``, is sampled with
        replacement); either way a warning line names the class.
        """
        if num_shots < 1:
            return data_sources[0] if len(data_sources) == 1 else list(data_sources)

        print(f"Creating a {num_shots}-shot dataset")
        output = []
        for data_source in data_sources:
            sampled: list[Datum] = []
            for label, items in self.split_dataset_by_label(data_source).items():
                if len(items) >= num_shots:
                    sampled.extend(random.sample(items, num_shots))
                    continue
                how = "sampling with replacement" if repeat else "using all of them"
                print(
                    f"Warning: class {label} ({items[0].classname}) has only {len(items)} "
                    f"images, fewer than {num_shots} shots; {how}"
                )
                sampled.extend(random.choices(items, k=num_shots) if repeat else items)
            output.append(sampled)
        return output[0] if len(output) == 1 else output

    @staticmethod
    def split_dataset_by_label(data_source: Sequence[Datum]) -> dict[int, list[Datum]]:
        """Label -> items, in order of first appearance (the order few-shot sampling relies on)."""
        return _group_by(data_source, attrgetter("label"))

    @staticmethod
    def split_dataset_by_domain(data_source: Sequence[Datum]) -> dict[int, list[Datum]]:
        return _group_by(data_source, attrgetter("domain"))


def _group_by(data_source: Sequence[Datum], key: Callable[[Datum], int]) -> dict[int, list[Datum]]:
    output: dict[int, list[Datum]] = defaultdict(list)
    for item in data_source:
        output[key(item)].append(item)
    return output
