"""The Classification evaluator: accuracy, error and macro-F1, printed as upstream Dassl does.

The ``=> result`` lines are a contract: results tools parse ``* accuracy: X%`` from run logs.
"""

import os.path as osp
from collections import OrderedDict

import numpy as np
import torch
from yacs.config import CfgNode

from dassl.utils.tools import atomic_write, import_keeping_rng

from .build import EVALUATOR_REGISTRY


class EvaluatorBase:
    """Accumulates batches with ``process`` and reports with ``evaluate``."""

    def __init__(self, cfg: CfgNode) -> None:
        self.cfg = cfg

    def reset(self) -> None:
        raise NotImplementedError

    def process(self, mo: torch.Tensor, gt: torch.Tensor) -> None:
        raise NotImplementedError

    def evaluate(self) -> OrderedDict:
        raise NotImplementedError


@EVALUATOR_REGISTRY.register()
class Classification(EvaluatorBase):
    """Single-label classification: compares ``argmax(mo)`` with ``gt``."""

    def __init__(
        self, cfg: CfgNode, lab2cname: dict[int, str] | None = None, **kwargs: object
    ) -> None:
        super().__init__(cfg)
        if cfg.TEST.PER_CLASS_RESULT and lab2cname is None:
            raise ValueError(
                "TEST.PER_CLASS_RESULT needs class names: build the evaluator with "
                "build_evaluator(cfg, lab2cname=dm.lab2cname)"
            )
        self._lab2cname = lab2cname
        self._per_class = bool(cfg.TEST.PER_CLASS_RESULT)
        self.reset()

    def reset(self) -> None:
        # Counts and per-class results are derived from these two in evaluate().
        self._y_true: list[int] = []
        self._y_pred: list[int] = []

    def process(self, mo: torch.Tensor, gt: torch.Tensor) -> None:
        """``mo``: (batch, num_classes) model output; ``gt``: (batch,) integer labels."""
        if mo.dim() != 2 or gt.dim() != 1 or mo.size(0) != gt.size(0):
            raise ValueError(
                "Classification.process expects logits of shape (batch, num_classes) and "
                f"labels of shape (batch,), got {tuple(mo.shape)} and {tuple(gt.shape)}"
            )
        self._y_true.extend(gt.cpu().tolist())
        self._y_pred.extend(mo.argmax(dim=1).cpu().tolist())

    def counts(self) -> tuple[int, int]:
        """(total, correct) of the predictions processed since the last ``reset``."""
        matches = np.asarray(self._y_true) == np.asarray(self._y_pred)
        return len(matches), int(matches.sum())

    def evaluate(self) -> OrderedDict:
        """Print the ``=> result`` block (and per-class lines, confusion matrix when asked)
        and return upstream's keys ``accuracy``, ``error_rate``, ``macro_f1`` in percent.

        The first value is the accuracy, which ``trainer.test()`` returns.
        """
        if not self._y_true:
            raise RuntimeError(
                "Classification.evaluate() found no predictions: call process() on at least "
                "one batch (is the evaluated split empty?)"
            )
        y_true, y_pred = np.asarray(self._y_true), np.asarray(self._y_pred)
        matches = y_true == y_pred
        total, correct = self.counts()
        acc = 100.0 * correct / total
        err = 100.0 - acc
        # Macro-F1 over the classes present in the ground truth, as upstream.
        metrics = import_keeping_rng("sklearn.metrics")
        macro_f1 = 100.0 * float(
            metrics.f1_score(y_true, y_pred, average="macro", labels=np.unique(y_true))
        )
        results = OrderedDict([("accuracy", acc), ("error_rate", err), ("macro_f1", macro_f1)])
        print(
            "=> result\n"
            f"* total: {total:,}\n"
            f"* correct: {correct:,}\n"
            f"* accuracy: {acc:.1f}%\n"
            f"* error: {err:.1f}%\n"
            f"* macro_f1: {macro_f1:.1f}%"
        )

        if self._per_class:
            print("=> per-class result")
            accs = []
            for label in np.unique(y_true).tolist():
                class_matches = matches[y_true == label]
                class_correct, class_total = int(class_matches.sum()), len(class_matches)
                class_acc = 100.0 * class_correct / class_total
                accs.append(class_acc)
                print(
                    f"* class: {label} ({self._lab2cname[label]})\t"
                    f"total: {class_total:,}\t"
                    f"correct: {class_correct:,}\t"
                    f"acc: {class_acc:.1f}%"
                )
            mean_acc = float(np.mean(accs))
            print(f"* average: {mean_acc:.1f}%")
            results["perclass_accuracy"] = mean_acc

        if self.cfg.TEST.COMPUTE_CMAT:
            # Rows: true class, normalised to sum to 1. Saved as a tensor (upstream saves a
            # numpy array) so it loads with torch.load(..., weights_only=True).
            metrics = import_keeping_rng("sklearn.metrics")
            cmat = metrics.confusion_matrix(y_true, y_pred, normalize="true")
            save_path = osp.join(self.cfg.OUTPUT_DIR, "cmat.pt")
            with atomic_write(save_path) as f:
                torch.save(torch.from_numpy(cmat), f)
            print(f"Confusion matrix is saved to {save_path}")

        return results
