"""Evaluations (``--eval-only --model-dir D``, what ``eval.sh`` and ``test_dg.sh`` write) beside
the runs that trained their models, as a researcher means them.

- **A transfer**: the trained model on another dataset (ImageNet -> V2, Sketch, A, R) or on other
  classes (base -> new). Its facts already say so (its dataset or classes differ from the trained
  run's), so the tables list it under that transfer.
- **A re-evaluation**: the same dataset and classes. When it loads the checkpoint the training run
  tested itself, with nothing that changes a test result overridden, it measures the training
  run's own result again: it is counted once, never twice. The training run counts when it is in
  the tree (a re-evaluation that disagrees with it is reported: the data or the code changed);
  otherwise one re-evaluation stands in for it.
- **Another selection**: another checkpoint (``--load-epoch``) or overridden keys (say, alpha at
  test time), on the same data or in a transfer. That is another result, so it gets a row of its
  own whose label names the checkpoint or the keys (runs selected differently never share a cell).

Evaluations of one model on the same data with the same selection (a copied folder) count once.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from dassl.config.run_identity import BEST_EPOCH, IGNORED_KEYS

from .runs import Record

# Keys of an evaluation's config that can change its test result when they differ from the
# trained run's (the rest describe training, bookkeeping, or where things live).
RESULT_PREFIXES = ("MODEL.", "INPUT.", "TEST.", "TRAINER.", "DATASET.")
NOT_RESULT_KEYS = frozenset(
    {
        "TRAINER.NAME",
        "TRAINER.PROTOCOL",
        "TRAINER.FEATURE_CACHE.TRAIN",
        "TEST.FINAL_MODEL",
        # what the trained run tested itself (a search candidate: val); tables report test only
        "TEST.SPLIT",
        "DATASET.NUM_SHOTS",
        "DATASET.ROOT",
        "DATASET.NAME",
        "DATASET.SUBSAMPLE_CLASSES",
    }
)
CHECKPOINT = "checkpoint"  # the label qualifier of an evaluation of another checkpoint


@dataclasses.dataclass
class Separated:
    """The records the tables count, and the re-evaluations they leave out."""

    counted: list[Record]
    repeats: list[tuple[Record, Record]]  # (re-evaluation left out, the record counted instead)

    def notes(self, metric: str) -> list[str]:
        """One line per re-evaluation left out; a value that disagrees is said so."""
        lines = []
        for repeat, kept in self.repeats:
            mine, theirs = repeat.value(metric), kept.value(metric)
            line = f"{repeat.path} repeats {kept.path} (same model, data and checkpoint)"
            if mine is not None and theirs is not None and mine != theirs:
                line += (
                    f" but gives {metric} {mine:.2f}% against {theirs:.2f}%: the data, the "
                    "weights or the code changed since; the table keeps the latter"
                )
            lines.append(line)
        return lines


def tested_epoch(trained: dict[str, Any]) -> int:
    """The checkpoint a training run tested itself, as RUN.LOAD_EPOCH spells it."""
    if trained.get("TEST.FINAL_MODEL") == "best_val":
        return BEST_EPOCH
    return int(trained.get("OPTIM.MAX_EPOCH", 0))


def _checkpoint_name(epoch: int) -> str:
    return "best val" if epoch == BEST_EPOCH else f"epoch {epoch}"


def same_data(config: dict[str, Any], trained: dict[str, Any]) -> bool:
    """Whether an evaluation tests its trained run's dataset and classes (not a transfer)."""
    return all(
        str(config.get(key, "all")) == str(trained.get(key, "all"))
        for key in ("DATASET.NAME", "DATASET.SUBSAMPLE_CLASSES")
    )


def selection_of(record: Record) -> tuple[tuple[str, str], ...] | None:
    """For an evaluation: what it changed against the trained run's own test (another
    checkpoint, overridden keys), as (key, value) label qualifiers, () for nothing. None for
    training runs and for evaluations whose trained run has no config.yaml."""
    config, trained = record.config, record.trained
    if not config or not config.get("RUN.EVAL_ONLY") or trained is None:
        return None
    changed = []
    epoch = int(config.get("RUN.LOAD_EPOCH", tested_epoch(trained)))
    if epoch >= BEST_EPOCH and epoch != tested_epoch(trained):
        changed.append((CHECKPOINT, _checkpoint_name(epoch)))
    for key in sorted(set(config) & set(trained)):
        if key.startswith(RESULT_PREFIXES) and key not in NOT_RESULT_KEYS | IGNORED_KEYS:
            if config[key] != trained[key]:
                changed.append((key, str(config[key])))
    return tuple(changed)


def separate(records: list[Record]) -> Separated:
    """Count each measurement once: a re-evaluation of a training run in the tree is left out,
    and of several evaluations measuring the same thing (same model, data and selection) the
    first counts. Other selections get their own rows (their qualifiers join the facts'
    ``extra``, which the row label shows)."""
    training = {r.path.resolve(): r for r in records if not (r.config or {}).get("RUN.EVAL_ONLY")}
    counted: list[Record] = []
    repeats: list[tuple[Record, Record]] = []
    first: dict[tuple, Record] = {}  # (model, data, selection) -> the evaluation counted
    for record in records:
        selection = selection_of(record)
        if selection is None:
            counted.append(record)
            continue
        if selection:
            facts = dataclasses.replace(record.facts, extra=record.facts.extra + selection)
            record = dataclasses.replace(record, facts=facts)
        config = record.config
        origin = Path(config["RUN.MODEL_DIR"]).resolve()
        data = (config.get("DATASET.NAME"), str(config.get("DATASET.SUBSAMPLE_CLASSES", "all")))
        kept = first.get((origin, data, selection))
        if kept is None and not selection and same_data(config, record.trained):
            kept = training.get(origin)
        if kept is None:
            first[(origin, data, selection)] = record
            counted.append(record)
        else:
            repeats.append((record, kept))
    return Separated(counted, repeats)
