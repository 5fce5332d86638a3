"""What each run is: its facts (method, backbone, protocol, dataset, shots, seed, alpha) from its
``config.yaml``, or, for upstream runs that have none, from upstream's folder conventions.

Tables group runs by these facts, never by folder names, so methods, backbones and protocols can
share one output tree. An evaluation (``--eval-only --model-dir D``) is described by the run that
trained its model: shots, seed, protocol and source dataset come from ``D/config.yaml`` while it
exists.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..dataset_configs import dataset_table
from .logs import Run, read_run
from .selection import UNRECORDED, selection_of

REPO = Path(__file__).resolve().parents[2]
TRAINER_CONFIGS = REPO / "configs" / "trainers"

SEED_DIR = re.compile(r"seed(\d+)")
SHOTS_PART = re.compile(r"(?:^|_)(\d+)shots?(?:_|$)")
SHOTS_SUFFIX = re.compile(r"_\d+shots?$")

# The names the papers print, in the order the papers list the datasets.
DATASET_TITLES = {
    "imagenet": "ImageNet",
    "caltech101": "Caltech101",
    "oxford_pets": "OxfordPets",
    "stanford_cars": "StanfordCars",
    "oxford_flowers": "Flowers102",
    "food101": "Food101",
    "fgvc_aircraft": "FGVCAircraft",
    "sun397": "SUN397",
    "dtd": "DTD",
    "eurosat": "EuroSAT",
    "ucf101": "UCF101",
    "imagenetv2": "ImageNet-V2",
    "imagenet_sketch": "ImageNet-Sketch",
    "imagenet_a": "ImageNet-A",
    "imagenet_r": "ImageNet-R",
}


def dataset_order(key: str) -> tuple[int, str]:
    """Known datasets in the papers' order, then the others alphabetically."""
    known = list(DATASET_TITLES)
    return (known.index(key) if key in known else len(known), key)


# Config name (configs/datasets/*.yaml) -> its registered DATASET.NAME, in the papers' order
# (others after, alphabetically), so folders and configs naming either are recognised.
DATASETS = dict(sorted(dataset_table().items(), key=lambda item: dataset_order(item[0])))
_DATASET_ALIASES = {k: k for k in DATASETS} | {v.lower(): k for k, v in DATASETS.items()}

# Domain generalisation: models trained on ImageNet, tested on its four shifted test sets (which
# have no train split, so a run on them always evaluates an ImageNet model).
DG_SOURCE = "imagenet"
DG_TARGETS = ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")

ZERO_SHOT_TRAINERS = ("ZeroshotCLIP", "ZeroshotCLIP2")
# Trainer -> the name tables print, in the order rows are listed.
METHOD_TITLES = {
    "ZeroshotCLIP": "Zero-shot CLIP",
    "ZeroshotCLIP2": "Zero-shot CLIP (ensemble)",
    "LinearProbeCLIP": "Linear probe",
    "CoOp": "CoOp",
    "CoCoOp": "CoCoOp",
    "CLIP_Adapter": "CLIP-Adapter",
    "TipAdapter": "Tip-Adapter",
    "TipAdapterF": "Tip-Adapter-F",
    "GDA": "GDA",
    "LPPlusPlus": "LP++",
    "CLAP": "CLAP",
    "KgCoOp": "KgCoOp",
    "ProGrad": "ProGrad",
    "CLIP_LoRA": "CLIP-LoRA",
    "TaskRes": "TaskRes",
    "TextProjectionTuning": "Text projection tuning (TaskRes's enhanced base)",
}
# The configs/trainers/ folder holding each trainer's configs (the scripts' convention).
CONFIG_FOLDERS = {
    "ZeroshotCLIP": "CoOp",
    "ZeroshotCLIP2": "CoOp",
    "LinearProbeCLIP": "CoOp",
    "CoOp": "CoOp",
    "CoCoOp": "CoCoOp",
    "CLIP_Adapter": "CLIP_Adapter",
    "TipAdapter": "TipAdapter",
    "TipAdapterF": "TipAdapterF",
    "GDA": "GDA",
    "LPPlusPlus": "LPPlusPlus",
    "CLAP": "CLAP",
    "KgCoOp": "KgCoOp",
    "ProGrad": "ProGrad",
    "CLIP_LoRA": "CLIP_LoRA",
    "TaskRes": "TaskRes",
    "TextProjectionTuning": "TextProjectionTuning",
}
FULL_DATA = -1  # shots of a run trained on the whole train split (DATASET.NUM_SHOTS < 1)


class ResultsError(Exception):
    """Raised when the folders given cannot be summarised (the message says why and what to do)."""


@dataclass(frozen=True)
class RunFacts:
    """What a run measured. ``shots`` is 0 for zero-shot methods; ``source`` is the dataset the
    model was trained on (None for zero-shot methods, which train on nothing)."""

    method: str | None
    dataset: str | None
    shots: int | None
    seed: int | None
    backbone: str | None = None
    protocol: str | None = None  # None for methods that do not train
    source: str | None = None
    alpha: float | None = None
    # "enhanced base: <which>" (enhanced_base_variant), "image side", or "" for the method as
    # published
    variant: str = ""
    subsample: str = "all"  # DATASET.SUBSAMPLE_CLASSES: all, base or new
    extra: tuple[tuple[str, str], ...] = ()  # (key, value) of each --split-by key
    # How the epoch and the hyperparameters were chosen (selection.Selection.parts); () for
    # zero-shot methods, which select nothing.
    selection: tuple[str, ...] = ()

    @property
    def zero_shot(self) -> bool:
        return self.method in ZERO_SHOT_TRAINERS


@dataclass
class Record:
    """A finished run with its facts and (ours only) its flattened config.yaml; an evaluation
    also holds the config of the run that trained its model (``trained``, when readable)."""

    run: Run
    facts: RunFacts
    config: dict[str, Any] | None
    trained: dict[str, Any] | None = None

    @property
    def path(self) -> Path:
        return self.run.path

    def value(self, metric: str) -> float | None:
        return (self.run.metrics or {}).get(metric)


@dataclass
class Setting:
    """Runs in one folder that differ only by seed (``seed<N>`` subfolders)."""

    path: Path
    runs: list[Run] = field(default_factory=list)

    def values(self, metric: str) -> list[float]:
        return [
            r.test_metrics[metric] for r in self.runs if r.test_metrics and metric in r.test_metrics
        ]


def collect_settings(root: Path) -> list[Setting]:
    """Every run below root (root included), grouped by setting, in path order. Folders behind
    symlinks are followed; a folder reached twice (two links, or a link loop) is read once."""
    if not root.is_dir():
        raise ResultsError(f"{root} is not a folder; give the output folder of a run or above it.")
    settings: dict[Path, Setting] = {}
    seen: set[str] = set()  # real paths of the folders walked
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames.clear()
            continue
        seen.add(real)
        dirnames.sort()
        if not any(name.startswith("log.txt") for name in filenames):
            continue
        run_dir = Path(dirpath)
        is_seed = SEED_DIR.fullmatch(run_dir.name) and run_dir != root
        key = run_dir.parent if is_seed else run_dir
        settings.setdefault(key, Setting(key)).runs.append(read_run(run_dir))
    if not settings:
        raise ResultsError(
            f"no log.txt found under {root}; point this tool at the output folder of your runs "
            "(e.g. output/FINAL/debug)."
        )
    return sorted(settings.values(), key=lambda s: s.path)


def dataset_key(name: str | None) -> str | None:
    """The config name of a dataset given its config or registered name (others kept as given)."""
    if not name:
        return None
    return _DATASET_ALIASES.get(str(name).lower(), str(name))


def dataset_title(key: str) -> str:
    return DATASET_TITLES.get(key, key)


def dataset_of(parts: tuple[str, ...]) -> str | None:
    """The dataset a folder belongs to: the deepest path part naming one (config or class name)."""
    for part in reversed(parts):
        if part.lower() in _DATASET_ALIASES:
            return _DATASET_ALIASES[part.lower()]
    return None


def shots_of(parts: tuple[str, ...]) -> int | None:
    """Shots named by the deepest ``..._<N>shots`` path part."""
    for part in reversed(parts):
        match = SHOTS_PART.search(part)
        if match:
            return int(match.group(1))
    return None


def backbone_title(name: str | None) -> str:
    """A backbone as tables print it: OpenAI names as they are, checkpoint files by file name."""
    if not name:
        return "unknown backbone"
    from clip.clip import available_models  # torch, loaded already once configs were read

    return name if name in available_models() else os.path.basename(name)


def protocol_of(config: dict[str, Any]) -> str:
    """The run's training protocol, resolved as the trainers resolve it (TRAINER.PROTOCOL, with
    TRAINER.FEATURE_CACHE.TRAIN as the older spelling of plain)."""
    from trainers.protocol import protocol_of as resolve  # torch, loaded once configs were read

    return str(resolve(config))


def _read_config(run_dir: Path) -> dict[str, Any] | None:
    # The config tree (dassl.config) is loaded only when configs are read, not for --finished.
    from dassl.config.run_identity import RunConflictError, read_recorded_config

    try:
        return read_recorded_config(str(run_dir))
    except RunConflictError as err:
        raise ResultsError(
            f"cannot read the facts of the run in {run_dir}: {err} (or move that folder out of "
            "the tree being summarised)"
        ) from err


def _shots(value: Any) -> int:
    shots = int(value)
    return shots if shots >= 1 else FULL_DATA


def actual_shots(requested: int, record: dict[str, Any] | None) -> int:
    """The shots a run is filed under: those asked for, or, when every class had fewer train
    images (its result record says so), the most any class trained on."""
    shots = (record or {}).get("shots")
    if requested < 1 or not isinstance(shots, dict):
        return requested
    most = shots.get("per_class_max")
    return most if isinstance(most, int) and 0 < most < requested else requested


def facts_from_config(
    config: dict[str, Any],
    trained: dict[str, Any] | None,
    split_by: tuple[str, ...] = (),
    record: dict[str, Any] | None = None,
) -> RunFacts:
    """Facts of one of our runs; ``trained`` is the config of the run whose model an evaluation
    loaded (None for training runs, or when that run's folder is gone); ``record`` is the run's
    result record (a training run is filed under the shots it actually trained on; it says how
    the result was selected)."""
    method = config.get("TRAINER.NAME") or None
    dataset = dataset_key(config.get("DATASET.NAME"))
    extra = tuple((key, str(config.get(key, "-"))) for key in split_by)
    common = {
        "backbone": config.get("MODEL.BACKBONE.NAME"),
        "subsample": str(config.get("DATASET.SUBSAMPLE_CLASSES", "all")),
        "extra": extra,
    }
    if method in ZERO_SHOT_TRAINERS:
        return RunFacts(method, dataset, shots=0, seed=None, **common)
    origin = trained if trained is not None else config
    if trained is not None:
        source = dataset_key(trained.get("DATASET.NAME"))
    elif config.get("RUN.EVAL_ONLY") and dataset in DG_TARGETS:
        source = DG_SOURCE
    else:
        source = dataset
    seed = int(origin.get("SEED", -1))
    alpha = variant = None
    if method == "TaskRes":
        alpha = float(config.get("TRAINER.TaskRes.RESIDUAL_SCALE", 1.0))
        base = str(config.get("TRAINER.TaskRes.ENHANCED_BASE", "none"))
        enhanced = enhanced_base_variant(base, origin) if base.lower() != "none" else ""
        image_side = config.get("TRAINER.TaskRes.RESIDUAL_SIDE", "text") == "image"
        variant = ", ".join(name for name in (enhanced, image_side and "image side") if name)
    return RunFacts(
        method,
        dataset,
        shots=actual_shots(
            _shots(origin.get("DATASET.NUM_SHOTS", -1)), record if trained is None else None
        ),
        seed=seed if seed >= 0 else None,
        protocol=protocol_of(origin),
        source=source,
        alpha=alpha,
        variant=variant or "",
        selection=selection_of(record).parts,
        **common,
    )


def enhanced_base_variant(path: str, trained: dict[str, Any]) -> str:
    """Which enhanced base a TaskRes run used, in words that stay the same across the datasets,
    shot counts and seeds of one row: built here for each run's own few-shot subset, built with
    another seed (or data), or a file (upstream's released ones), named by its path with the
    dataset and shot count as placeholders."""
    from trainers.enhanced_base import read_enhanced_base  # torch: only when configs are read

    dataset, shots = str(trained.get("DATASET.NAME")), str(trained.get("DATASET.NUM_SHOTS"))
    try:
        _, provenance = read_enhanced_base(path)
    except (OSError, KeyError, RuntimeError, ValueError):
        provenance = None  # gone or unreadable now: named by its path
    if provenance is None:
        generic = path.replace(f"/{dataset}/", "/<dataset>/").replace(f"_{shots}shots", "_<K>shots")
        return f"enhanced base: file {generic}"
    own = (dataset, int(shots), int(trained.get("SEED", -1)))
    if (provenance["dataset"], provenance["shots"], provenance["seed"]) == own:
        return "enhanced base: built here, own seed"
    if (provenance["dataset"], provenance["shots"]) == own[:2]:
        return f"enhanced base: built here with seed {provenance['seed']}"
    return (
        f"enhanced base: built here on {provenance['dataset']}, {provenance['shots']} shots, "
        f"seed {provenance['seed']}"
    )


def _match_trainer(part: str) -> str | None:
    for trainer in METHOD_TITLES:
        if part.lower() == trainer.lower():
            return trainer
    return None


def _shipped_config(method: str | None, parts: tuple[str, ...]) -> tuple[str | None, Path | None]:
    """The trainer folder and file of the shipped config a folder is named after (upstream's
    scripts name folders ``<config>`` or ``<config>_<N>shots``): the deepest part naming one.
    A name found in several trainer folders names no trainer."""
    folders = (
        [CONFIG_FOLDERS[method]]
        if method in CONFIG_FOLDERS
        else sorted(p.name for p in TRAINER_CONFIGS.iterdir() if p.is_dir())
    )
    for part in reversed(parts):
        name = SHOTS_SUFFIX.sub("", part)
        found = [(f, TRAINER_CONFIGS / f / f"{name}.yaml") for f in folders]
        found = [(f, path) for f, path in found if path.is_file()]
        if found:
            return (found[0][0] if len(found) == 1 else None), found[0][1]
    return None, None


def facts_from_path(run_dir: Path, split_by: tuple[str, ...] = ()) -> RunFacts:
    """Facts of an upstream run (no config.yaml) from upstream's folder layout: the trainer named
    by a folder (or ``FINAL/debug`` / ``FINAL/enhanced`` for TaskRes), the dataset and
    ``<N>shots`` folders, ``seed<N>``, and the backbone of the shipped config named by a folder."""
    parts = run_dir.resolve().parts
    method = next((m for m in map(_match_trainer, reversed(parts)) if m), None)
    variant = ""
    if method is None and "FINAL" in parts:
        method = "TaskRes"
        variant = "enhanced base" if "enhanced" in parts else ""
    folder, config_file = _shipped_config(method, parts)
    if method is None and folder is not None:
        method = folder
    backbone = None
    if config_file is not None:
        shipped = yaml.safe_load(config_file.read_text()) or {}
        backbone = shipped.get("MODEL", {}).get("BACKBONE", {}).get("NAME")
    dataset = dataset_of(parts)
    seed_match = SEED_DIR.fullmatch(run_dir.name)
    zero_shot = method in ZERO_SHOT_TRAINERS
    return RunFacts(
        method,
        dataset,
        shots=0 if zero_shot else shots_of(parts),
        seed=None if zero_shot or not seed_match else int(seed_match.group(1)),
        backbone=backbone,
        protocol=None if zero_shot else "exact",  # upstream trains only the published way
        source=None if zero_shot else (DG_SOURCE if dataset in DG_TARGETS else dataset),
        variant=variant,
        extra=tuple((key, "-") for key in split_by),
        selection=() if zero_shot else UNRECORDED,
    )


def collect_records(settings: list[Setting], split_by: tuple[str, ...] = ()) -> list[Record]:
    """The finished runs of ``settings`` with their facts."""
    trained_configs: dict[str, dict[str, Any] | None] = {}
    records = []
    for setting in settings:
        for run in setting.runs:
            if not run.test_metrics:
                continue
            config = _read_config(run.path)
            if config is None:
                records.append(Record(run, facts_from_path(run.path, split_by), None))
                continue
            trained = None
            model_dir = config.get("RUN.MODEL_DIR") or ""
            if config.get("RUN.EVAL_ONLY") and model_dir:
                if model_dir not in trained_configs:
                    trained_configs[model_dir] = _read_config(Path(model_dir))
                trained = trained_configs[model_dir]
            facts = facts_from_config(config, trained, split_by, run.record)
            records.append(Record(run, facts, config, trained))
    unknown = [k for k in split_by if not any(r.config and k in r.config for r in records)]
    if unknown:
        raise ResultsError(
            f"no run's config.yaml holds {', '.join(unknown)} (given to --split-by); "
            "check the spelling against a config.yaml of the tree, e.g. OPTIM.LR."
        )
    return records
