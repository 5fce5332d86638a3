"""Runs one toy method (tests/trainers/*_method.py) through train.py in a process of its own, so
that its trainer and config keys are registered there only, and writes what the tests check as
JSON: ``python -m tests.trainers.kinds_runner METHOD DATA_ROOT BACKBONE WORK_DIR OUT_JSON``.

The runs, on the feature store $TASKRES_FEATURE_STORE: zero-shot CLIP first (so the store holds
base CLIP's features, which a poisoning write or a stale read would touch), then the method
trained in one go; the same command killed after its first epoch and run again (a resume); an
eval-only run of the first; for the image-tower methods, a run with a protocol that encodes
train images once. Every
evaluation's features are compared with the features the image tower gives at that moment.
"""

import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

import torch

import tests.trainers.cache_method  # noqa: F401  (registers the toy methods)
import tests.trainers.prompt_method  # noqa: F401
from dassl.data.data_manager import DatasetWrapper
from dassl.engine import TRAINER_REGISTRY
from tests.support.tiny_run import run_train_in_process, tiny_run_argv
from tests.trainers.lora_method import ToyLoRA
from trainers.feature_store import store_root

RUN = {
    "DATASET.NUM_SHOTS": 2,
    "INPUT.TRANSFORMS": ["random_flip", "normalize"],
    "DATALOADER.TRAIN_X.BATCH_SIZE": 4,
    "OPTIM.NAME": "adam",
    "OPTIM.LR": 0.05,
    "OPTIM.MAX_EPOCH": 3,
    "OPTIM.LR_SCHEDULER": "cosine",
    "TEST.FINAL_MODEL": "best_val",
}


class Interrupted(Exception):
    """Raised after the first epoch's checkpoints, as a kill there would stop the run."""


def store_files(root: Path) -> dict[str, str]:
    """Every file under the store: relative path -> SHA-256 of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def final_accuracy(log: str) -> float:
    return float(re.findall(r"\* accuracy: ([\d.]+)%", log)[-1])


def state(run: Path, model_name: str, filename: str) -> dict[str, torch.Tensor]:
    return torch.load(run / model_name / filename, weights_only=True)["state_dict"]


def same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def record_evaluations(cls: type, records: list[dict[str, Any]]) -> None:
    """Wrap ``cls.eval_loader``: note, per evaluation, whether the features it serves are those
    the image tower gives now, and a digest of them."""
    serve = cls.eval_loader

    def eval_loader(self, split=None):
        split, loader = serve(self, split)
        data = self.dm.dataset.val if split == "val" else self.dm.dataset.test
        images = DatasetWrapper(self.cfg, data, transform=self.dm.test_loader.dataset.transform)
        with torch.no_grad():
            live = self.model.encode_each(torch.stack([item["img"] for item in images]))
        served = loader.dataset.features[0]
        records.append(
            {
                "split": split,
                "epoch": self.epoch,
                "live": bool(torch.equal(served, live)),
                "digest": hashlib.sha256(served.numpy().tobytes()).hexdigest(),
            }
        )
        return split, loader

    cls.eval_loader = eval_loader


def main(method: str, root: str, backbone: str, work: Path) -> dict[str, Any]:
    cls = TRAINER_REGISTRY.get(method)
    keys = {**RUN, "MODEL.BACKBONE.NAME": backbone}
    store = store_root()
    run_train_in_process(tiny_run_argv("ZeroshotCLIP", root, work / "zero_shot", keys))
    before = store_files(store)
    facts: dict[str, Any] = {"store_files_before": len(before)}

    evaluations: list[dict[str, Any]] = []
    record_evaluations(cls, evaluations)
    full = work / "full"
    full_log = run_train_in_process(tiny_run_argv(method, root, full, keys))
    facts["full_accuracy"] = final_accuracy(full_log)
    facts["evaluations"] = list(evaluations)  # those of the full run
    facts["fits"] = [full_log.count("Fitting the")]

    killed = work / "killed"
    after_epoch = cls.after_epoch

    def stop_after_first(self) -> None:
        after_epoch(self)
        if self.epoch == 0:
            raise Interrupted

    cls.after_epoch = stop_after_first
    try:
        run_train_in_process(tiny_run_argv(method, root, killed, keys))
    except Interrupted:
        pass
    cls.after_epoch = after_epoch
    resumed_log = run_train_in_process(tiny_run_argv(method, root, killed, keys))
    facts["resumed_from_epoch_1"] = "Previous epoch: 1" in resumed_log
    facts["fits"].append(resumed_log.count("Fitting the"))
    facts["resumed_accuracy"] = final_accuracy(resumed_log)
    facts["resume_exact"] = all(
        same_state(state(full, cls.MODEL_NAME, f), state(killed, cls.MODEL_NAME, f))
        for f in ("model.pth.tar-3", "model-best.pth.tar")
    )

    # Eval-only names neither the shot count nor the seed: what it needs comes from the run.
    eval_keys = {k: v for k, v in keys.items() if k != "DATASET.NUM_SHOTS"}
    flags = ["--eval-only", "--model-dir", str(full)]
    eval_log = run_train_in_process(
        tiny_run_argv(method, root, work / "eval", eval_keys, flags=flags)
    )
    facts["eval_accuracy"] = final_accuracy(eval_log)
    if cls.EVAL_INHERITS:
        wrong = {**eval_keys, "DATASET.NUM_SHOTS": 1}
        try:
            run_train_in_process(tiny_run_argv(method, root, work / "wrong", wrong, flags=flags))
        except RuntimeError as err:
            facts["mismatch_error"] = str(err)

    facts["store_unchanged"] = store_files(store) == before
    if issubclass(cls, ToyLoRA):
        views = {**keys, "TRAINER.PROTOCOL": "views:2"}
        try:
            run_train_in_process(tiny_run_argv(method, root, work / "views", views))
        except ValueError as err:
            facts["views_error"] = str(err)
    return facts


if __name__ == "__main__":
    method, root, backbone, work, out = sys.argv[1:]
    Path(out).write_text(json.dumps(main(method, root, backbone, Path(work))))
