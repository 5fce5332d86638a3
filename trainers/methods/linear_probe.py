"""Linear probe on frozen CLIP features, following CoOp's `lpclip` protocol.

Features are CLIP's raw image embeddings of un-augmented images (the published protocol, so
TRAINER.PROTOCOL exact means plain here; views:V fits on all V views of each image). An
L2-regularised logistic regression (lbfgs, 1000 iterations) is fitted on the few-shot train split;
its strength C is first picked from a log grid by val accuracy, then refined by a bisection in
log10(C) for a fixed number of steps, exactly as lpclip's `linear_probe.py` does. The fitted
classifier becomes a `nn.Linear` head, checkpointed under `linear_probe` and tested like every
other trainer.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from yacs.config import CfgNode as CN

from clip.backbone import ClipBackbone

if TYPE_CHECKING:  # scikit-learn is imported when fitting: it takes seconds to import
    from sklearn.linear_model import LogisticRegression
from dassl.config import register_cfg_extension
from dassl.engine import TRAINER_REGISTRY
from dassl.utils.tools import import_keeping_rng
from trainers.clip_base import ClipTrainer
from trainers.method_kind import MethodKind
from trainers.protocol import EXACT, PLAIN, Protocol, protocol_of


@register_cfg_extension
def _linear_probe_keys(cfg: CN) -> None:
    cfg.TRAINER.LINEAR_PROBE = CN()
    cfg.TRAINER.LINEAR_PROBE.PREC = "fp16"  # lpclip extracts features with CLIP in fp16
    cfg.TRAINER.LINEAR_PROBE.C_GRID = [1e6, 1e4, 1e2, 1.0, 1e-2, 1e-4, 1e-6]
    cfg.TRAINER.LINEAR_PROBE.SEARCH_STEPS = 8
    cfg.TRAINER.LINEAR_PROBE.MAX_ITER = 1000


Split = tuple[np.ndarray, np.ndarray]  # features [N, D] (float32), labels [N]


def fit_logistic(
    features: np.ndarray, labels: np.ndarray, c: float, max_iter: int
) -> LogisticRegression:
    logistic = import_keeping_rng("sklearn.linear_model").LogisticRegression
    return logistic(solver="lbfgs", max_iter=max_iter, C=c).fit(features, labels)


def accuracy(clf: LogisticRegression, split: Split) -> float:
    """Fraction of `split` that `clf` classifies correctly."""
    return float(np.mean(clf.predict(split[0]) == split[1]))


def search_c(
    train: Split,
    val: Split,
    grid: list[float],
    steps: int,
    max_iter: int,
) -> tuple[float, LogisticRegression]:
    """lpclip's search: best grid point, then `steps` bisections in log10 space.

    Each step fits C at both ends of the interval, keeps the better end (the left one on ties) as
    the current choice, and halves the interval towards it. Returns the last choice.
    """
    grid_accs = [accuracy(fit_logistic(*train, c, max_iter), val) for c in grid]
    print(f"Val accuracy over C grid {list(grid)}: {[round(a, 4) for a in grid_accs]}")
    peak = math.log10(grid[int(np.argmax(grid_accs))])
    left, right = peak - 1, peak + 1
    best_c, best = None, None
    for step in range(steps):
        clf_left = fit_logistic(*train, 10**left, max_iter)
        clf_right = fit_logistic(*train, 10**right, max_iter)
        acc_left, acc_right = accuracy(clf_left, val), accuracy(clf_right, val)
        print(
            f"Search step {step + 1}/{steps}: val acc {acc_left:.4f} at C={10**left:.4g}, "
            f"{acc_right:.4f} at C={10**right:.4g}"
        )
        mid = (left + right) / 2
        if acc_left < acc_right:
            best_c, best = 10**right, clf_right
            left = mid
        else:
            best_c, best = 10**left, clf_left
            right = mid
    if best is None:  # no refinement steps: keep the grid's best
        best_c = 10**peak
        best = fit_logistic(*train, best_c, max_iter)
    return best_c, best


def linear_from_logistic(clf: LogisticRegression, num_classes: int) -> tuple[torch.Tensor, ...]:
    """Weight [K, D] and bias [K] whose argmax equals `clf.predict`.

    Classes absent from the training features get a very negative (finite, so saveable) bias.
    """
    coef = torch.as_tensor(clf.coef_, dtype=torch.float32)
    intercept = torch.as_tensor(clf.intercept_, dtype=torch.float32)
    if len(clf.classes_) == 2:
        # sklearn keeps one row for two classes: logit(class 1) = w.x + b. Split it symmetrically
        # so the softmax equals the logistic probability.
        coef = torch.cat([-coef, coef]) / 2
        intercept = torch.cat([-intercept, intercept]) / 2
    weight = torch.zeros(num_classes, coef.shape[1])
    bias = torch.full((num_classes,), -1e9)
    rows = torch.as_tensor(clf.classes_, dtype=torch.long)
    weight[rows] = coef
    bias[rows] = intercept
    return weight, bias


@TRAINER_REGISTRY.register()
class LinearProbeCLIP(ClipTrainer):
    """Logistic-regression probe on frozen CLIP features (CoOp's lpclip protocol)."""

    TRAINS = MethodKind.HEAD
    CFG_NODE = "LINEAR_PROBE"
    MODEL_NAME = "linear_probe"
    PER_CLASS_KEYS = {"weight": 0, "bias": 0}

    def build_head(self, backbone: ClipBackbone, classnames: list[str]) -> nn.Module:
        # logits = W f + b on raw (unnormalised) features; keys `weight`, `bias`.
        head = nn.Linear(backbone.embed_dim, len(classnames))
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        return head

    @classmethod
    def train_protocol(cls, cfg: CN) -> Protocol:
        """lpclip, the published protocol, fits on un-augmented features: exact trains plain."""
        protocol = protocol_of(cfg)
        return Protocol(PLAIN) if protocol.kind == EXACT else protocol

    def train(self) -> None:
        """Fit in closed form instead of epochs, save it as epoch 1 and the best model, test.

        The fit sees every train feature the protocol made: one per image (plain, and exact) or
        all V views of each image (views:V).
        """
        self.before_train()
        dataset = self.dm.dataset
        lp = self.cfg.TRAINER.LINEAR_PROBE
        views = self.train_set.features  # [V, N, D]
        train = (
            views.reshape(-1, views.shape[-1]).float().numpy(),
            self.train_set.labels.repeat(views.shape[0]).numpy(),
        )
        val_features, val_labels = self.val_features()
        val = (val_features.cpu().numpy(), val_labels.cpu().numpy())
        c, clf = search_c(train, val, list(lp.C_GRID), lp.SEARCH_STEPS, lp.MAX_ITER)
        val_acc = accuracy(clf, val)
        print(f"Chosen C = {c:.6g} (val accuracy {100 * val_acc:.2f}%)")
        space = {"C": list(lp.C_GRID), "SEARCH_STEPS": [lp.SEARCH_STEPS]}
        winner = {"C": c, "SEARCH_STEPS": lp.SEARCH_STEPS}
        self.record_hyperparameter_search(space, winner, split="val", size=len(val[1]))

        weight, bias = linear_from_logistic(clf, dataset.num_classes)
        with torch.no_grad():
            self.head.weight.copy_(weight)
            self.head.bias.copy_(bias)
        self.save_model(0, self.output_dir, val_result=val_acc)
        self.save_model(0, self.output_dir, val_result=val_acc, model_name="model-best.pth.tar")
        self.after_train()
