"""The TaskRes residual analysis: does a dataset that is harder to transfer CLIP to learn a larger
residual? (TaskRes, Yu et al., CVPR 2023, Sec. 5.5 and Fig. 4, which found that it does.)

Per dataset, the magnitude of the learned residual ``x`` (state-dict key
``text_feature_residuals``, [K, D]) is its mean absolute value, averaged over seeds. The paper's
relative transfer difficulty is the precision of a random guess over the zero-shot precision of
the pre-trained model: ``(1 / K) / zero-shot accuracy``. Zero-shot accuracy comes from the
zero-shot runs in the same tree with the same backbone; a dataset without one is reported as
missing and left out, never estimated. The paper itself calls this measure heuristic, so both the
Pearson and the (rank-based) Spearman correlation are reported.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

from tabulate import tabulate

from dassl.engine.trainer import model_file_path
from dassl.utils import load_checkpoint
from dassl.utils.torchtools import BEST_FILE, read_checkpoint_pointer

from .runs import ZERO_SHOT_TRAINERS, Record, backbone_title, dataset_order, dataset_title
from .tables import CellKey, Results, in_domain, shots_phrase

RESIDUAL_KEY = "text_feature_residuals"
MODEL_NAME = "prompt_learner"
# TaskRes's base classifier is a prompt ensemble, as is ZeroshotCLIP2's: the classifier whose
# zero-shot accuracy the residual starts from. ZeroshotCLIP (one template) is used when only it ran.
ZERO_SHOT_PREFERENCE = ("ZeroshotCLIP2", "ZeroshotCLIP")


def relative_transfer_difficulty(zero_shot_accuracy: float, num_classes: int) -> float:
    """(1 / K) / zero-shot accuracy (given in %): 1 when CLIP does no better than chance, small
    when CLIP already transfers well; undefined (ValueError) at 0% zero-shot accuracy."""
    if zero_shot_accuracy <= 0:
        raise ValueError(
            f"zero-shot accuracy is {zero_shot_accuracy}%, so the difficulty is unbounded"
        )
    return (1.0 / num_classes) / (zero_shot_accuracy / 100.0)


def residual_checkpoint(run_dir: Path, config: dict | None) -> Path:
    """The checkpoint holding the residual the run tested: model-best under TEST.FINAL_MODEL
    best_val, the last epoch's file under last_step; an upstream run (no config) its best file,
    else the latest one its ``checkpoint`` pointer names."""
    if config is not None:
        best = config.get("TEST.FINAL_MODEL") == "best_val"
        epoch = None if best else int(config["OPTIM.MAX_EPOCH"])
        return Path(model_file_path(str(run_dir), MODEL_NAME, epoch))
    folder = run_dir / MODEL_NAME
    if (folder / BEST_FILE).is_file():
        return folder / BEST_FILE
    latest = read_checkpoint_pointer(str(folder))
    if latest and Path(latest).is_file():
        return Path(latest)
    raise FileNotFoundError(f"no {BEST_FILE} and no checkpoint pointer file in {folder}")


def residual_magnitude(checkpoint: Path) -> tuple[float, int]:
    """Mean absolute value of the learned residual and its number of rows (classes)."""
    state = load_checkpoint(str(checkpoint))["state_dict"]
    if RESIDUAL_KEY not in state:
        raise KeyError(f"{checkpoint} has no {RESIDUAL_KEY!r} (keys: {sorted(state)})")
    residual = state[RESIDUAL_KEY].float()
    return residual.abs().mean().item(), residual.shape[0]


@dataclass(frozen=True)
class Correlation:
    pearson: float
    pearson_p: float
    spearman: float
    points: int


def correlation(xs: list[float], ys: list[float]) -> Correlation | None:
    """Pearson and Spearman correlation; None below two points or without variation."""
    from scipy import stats

    if len(xs) < 2 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    pearson = stats.pearsonr(xs, ys)
    spearman = stats.spearmanr(xs, ys)
    return Correlation(
        float(pearson.statistic), float(pearson.pvalue), float(spearman.statistic), len(xs)
    )


@dataclass(frozen=True)
class Point:
    dataset: str
    classes: int
    zero_shot: float  # accuracy, %
    difficulty: float
    magnitude: float  # mean over seeds of the mean |x|
    seeds: int


@dataclass
class Analysis:
    """The analysis of one TaskRes row (a backbone, protocol and variant) at one shot count."""

    label: str
    backbone: str | None
    shots: int
    zero_shot_trainer: str | None
    points: list[Point] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # datasets without a zero-shot run
    left_out: list[str] = field(default_factory=list)  # why other runs or datasets are not shown

    @property
    def correlation(self) -> Correlation | None:
        return correlation([p.difficulty for p in self.points], [p.magnitude for p in self.points])

    @property
    def title(self) -> str:
        return f"{self.label}, {shots_phrase(self.shots)}, backbone {backbone_title(self.backbone)}"


def _trained_taskres(record: Record) -> bool:
    facts = record.facts
    evaluation = bool(record.config and record.config.get("RUN.EVAL_ONLY"))
    return facts.method == "TaskRes" and "image side" not in facts.variant and not evaluation


def analyse(
    results: Results, shots: int | None = None, zero_shot_trainer: str | None = None
) -> list[Analysis]:
    """One analysis per TaskRes row (text-side residual, trained in the tree) at ``shots``
    (default: the largest shot count TaskRes ran)."""

    def taskres(key: CellKey) -> bool:
        return in_domain(key) and any(_trained_taskres(r) for r in results.records[key])

    keys = results.keys(taskres)
    if shots is None:
        shots = max((k.shots for k in keys), default=None)
    keys = [k for k in keys if k.shots == shots]
    analyses = []
    for row in sorted({k.row for k in keys}, key=lambda r: r.order):
        row_keys = sorted((k for k in keys if k.row == row), key=lambda k: dataset_order(k.dataset))
        backbone = results.records[row_keys[0]][0].facts.backbone
        trainer, accuracies = _zero_shot_accuracies(results, backbone, zero_shot_trainer)
        analysis = Analysis(row.label, backbone, shots, trainer)
        for key in row_keys:
            magnitudes, classes = [], set()
            for record in (r for r in results.records[key] if _trained_taskres(r)):
                try:
                    checkpoint = residual_checkpoint(record.path, record.config)
                    magnitude, k = residual_magnitude(checkpoint)
                except (OSError, KeyError, RuntimeError, pickle.UnpicklingError) as err:
                    analysis.left_out.append(f"{record.path}: residual unreadable ({err})")
                    continue
                magnitudes.append(magnitude)
                classes.add(k)
            name = dataset_title(key.dataset)
            if not magnitudes:
                continue
            if len(classes) > 1:
                analysis.left_out.append(f"{name}: its runs disagree on K ({sorted(classes)})")
                continue
            if key.dataset not in accuracies:
                analysis.missing.append(key.dataset)
                continue
            k = classes.pop()
            accuracy = accuracies[key.dataset]
            try:
                difficulty = relative_transfer_difficulty(accuracy, k)
            except ValueError as err:
                analysis.left_out.append(f"{name}: {err}")
                continue
            magnitude = sum(magnitudes) / len(magnitudes)
            analysis.points.append(
                Point(key.dataset, k, accuracy, difficulty, magnitude, len(magnitudes))
            )
        analyses.append(analysis)
    return analyses


def _zero_shot_accuracies(
    results: Results, backbone: str | None, trainer: str | None
) -> tuple[str | None, dict[str, float]]:
    """Test accuracy per dataset of the zero-shot runs with ``backbone`` (all classes), from
    ``trainer`` or the preferred zero-shot trainer that ran; mean over repeated runs."""
    found: dict[str, dict[str, list[float]]] = {}
    for key, records in results.records.items():
        if not key.row.zero_shot or key.subsample != "all":
            continue
        for record in records:
            accuracy = record.value("accuracy")
            if record.facts.backbone == backbone and accuracy is not None:
                found.setdefault(record.facts.method, {}).setdefault(key.dataset, []).append(
                    accuracy
                )
    if trainer is None:
        trainer = next((t for t in ZERO_SHOT_PREFERENCE if t in found), None)
    by_dataset = found.get(trainer, {})
    return trainer, {d: sum(v) / len(v) for d, v in by_dataset.items()}


def report(analysis: Analysis, root: Path) -> str:
    """The analysis as text: one line per dataset, the correlation, and what is missing."""
    source = analysis.zero_shot_trainer or " or ".join(ZERO_SHOT_TRAINERS)
    lines = [
        f"Residual analysis: {analysis.title} (zero-shot accuracy from {source} runs)",
    ]
    if analysis.points:
        rows = [
            [
                dataset_title(p.dataset),
                p.classes,
                f"{p.zero_shot:.2f}",
                f"{p.difficulty:.4f}",
                f"{p.magnitude:.6f}",
                p.seeds,
            ]
            for p in analysis.points
        ]
        headers = ["dataset", "classes K", "zero-shot acc (%)", "(1/K) / zero-shot acc",
                   "mean |residual|", "seeds"]  # fmt: skip
        lines.append(tabulate(rows, headers=headers, disable_numparse=True))
    result = analysis.correlation
    if result is not None:
        lines.append(
            f"Correlation of mean |residual| with relative transfer difficulty over "
            f"{result.points} datasets: Pearson r = {result.pearson:.3f} "
            f"(p = {result.pearson_p:.3g}), Spearman rho = {result.spearman:.3f}"
        )
    else:
        available = len(analysis.points)
        lines.append(
            f"No correlation: it needs at least two datasets with different difficulties and "
            f"residuals, and {available} {'is' if available == 1 else 'are'} available; "
            "run TaskRes (and zero-shot CLIP) on more datasets to get one."
        )
    if analysis.missing:
        names = ", ".join(dataset_title(d) for d in analysis.missing)
        lines.append(
            f"MISSING zero-shot runs ({source}, backbone {backbone_title(analysis.backbone)}) "
            f"under {root} for: {names}. Their transfer difficulty is unknown, so they are left "
            "out (zero-shot accuracy is never guessed). Run them with: bash "
            "scripts/taskres/zeroshot.sh DATASET CONFIG [TRAINER] (CONFIG picks the backbone)."
        )
    lines += [f"Left out: {reason}" for reason in analysis.left_out]
    return "\n".join(lines)
