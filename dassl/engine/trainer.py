"""Upstream Dassl's trainer classes: TrainerBase -> SimpleTrainer -> TrainerX.

A method subclasses ``TrainerX``, overrides ``build_model`` and ``forward_backward`` (and maybe
``parse_batch_*``/``model_inference``/``load_model``) and inherits the loop, checkpoints, resume,
evaluation and logging. Names and semantics follow upstream so its trainers run here unchanged.

Beyond upstream, work is never lost:
- every finished epoch is checkpointed (``model.pth.tar-<epoch>``); upstream's files
  (CHECKPOINT_FREQ multiples, the last epoch, ``model-best.pth.tar``) keep their names and
  meaning, and of the others only the newest is kept;
- checkpoints also hold the RNG states, the best val result and the amp GradScaler state, so a
  run interrupted any way (Ctrl-C, SIGTERM, kill -9) and started again with the same command ends
  with exactly the weights of an uninterrupted one;
- SIGINT/SIGTERM stop training at the next batch boundary with a message saying where a re-run
  resumes from, and exit with 128 + the signal number (a second signal stops at once);
- weights with NaN/inf are never saved; a non-finite loss stops the run naming the last good
  checkpoint and how to resume from it with a lower OPTIM.LR.
"""

import datetime
import os
import shutil
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm
from yacs.config import CfgNode

from dassl.data import DataManager
from dassl.data.data_manager import shots_per_class, val_reads_test
from dassl.evaluation import build_evaluator
from dassl.evaluation.result_record import (
    HYPERPARAMETERS_DERIVED,
    HYPERPARAMETERS_FIXED,
    HYPERPARAMETERS_SEARCHED,
    SELECTED_BEST_VAL,
    SELECTED_FIXED,
    SELECTED_LAST_EPOCH,
    read_result_record,
    write_result_record,
)
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import (
    AverageMeter,
    MetricMeter,
    atomic_write,
    count_num_param,
    load_checkpoint,
    load_pretrained_weights,
    mkdir_if_missing,
    save_checkpoint,
    tolist_if_not,
)
from dassl.utils.tools import remove_stale_temp_files
from dassl.utils.torchtools import (
    BEST_FILE,
    capture_rng_state,
    checkpoint_epoch,
    checkpoint_filename,
    is_finite_state,
    read_checkpoint_pointer,
    restore_from_checkpoint,
    restore_rng_state,
    resume_from_checkpoint,  # noqa: F401  (upstream's module exports it; plugins import it here)
)

from .simple_net import SimpleNet


def __getattr__(name: str) -> Any:
    """``SummaryWriter``, which upstream's module imports at the top (plugins import it from here),
    imported on first use: tensorboard is slow to import and only training writes scalars."""
    if name == "SummaryWriter":
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class TrainingInterrupted(SystemExit):
    """SIGINT/SIGTERM stopped training; exits with status 128 + the signal number (130, 143)."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(128 + signum)
        self.signum = signum
        self.message = message


@dataclass(frozen=True)
class EvaluatedModel:
    """The model a final test evaluates: how it was selected (``result_record.SELECTED_*``), its
    count of finished epochs (None for weights that were never trained) and, for a best-val
    pick, the split it was picked on ("val", or "test" when that selection read test) and its
    size (None when the run that picked it did not record them: an upstream run)."""

    selection: str = SELECTED_FIXED
    epoch: int | None = None
    val_split: str | None = None
    val_size: int | None = None


@dataclass(frozen=True)
class ResumePoint:
    """What a resume restores besides the weights: where training continues, the random state
    to continue it with (applied right before that epoch) and the best val result so far."""

    start_epoch: int = 0
    rng_state: dict[str, Any] | None = None
    best_result: float | None = None


class TrainerBase:
    """Model registry, checkpoint hooks and the generic epoch loop."""

    # When the engine steps the LR schedulers: None never (upstream Dassl: a trainer steps them
    # itself, through update_lr or its scheduler's step), "epoch" after each epoch's last batch,
    # "iteration" after every batch. Only this project's own methods opt in.
    LR_STEP: str | None = None
    # Epochs between the checkpoints a re-run resumes from (the last epoch and those upstream's
    # policy keeps always get one). Methods with hundreds of cheap epochs on cached features
    # raise it, since writing a checkpoint then costs more than the epoch: a resume redoes up
    # to N - 1 epochs, and still ends with the same weights.
    EPOCHS_PER_CHECKPOINT: int = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.LR_STEP not in (None, "epoch", "iteration"):
            raise TypeError(
                f'{cls.__name__}.LR_STEP is {cls.LR_STEP!r}; use None, "epoch" or "iteration"'
            )

    def __init__(self) -> None:
        self._models: OrderedDict[str, nn.Module] = OrderedDict()
        self._optims: OrderedDict[str, Any] = OrderedDict()
        self._scheds: OrderedDict[str, Any] = OrderedDict()
        self._writer = None
        self._stop_signal: int | None = None  # SIGINT/SIGTERM received while training
        self.cfg: CfgNode | None = None
        self.output_dir = ""
        self.start_epoch = self.epoch = self.max_epoch = 0
        self.batch_idx: int | None = None  # set while an epoch runs
        self.num_batches = 0
        self.best_result = -np.inf
        # Set it (e.g. in build_model) to train through an amp loss scaler; it is checkpointed.
        self.scaler: torch.amp.GradScaler | None = None
        # The last resume_model_if_exist's result, until train() applies its RNG state.
        self.resume_point: ResumePoint | None = None
        # What the next final test evaluates, for its result record (set when a model is deployed).
        self.evaluated_model = EvaluatedModel()
        # How the method's hyperparameters were chosen, for the result record: None means fixed,
        # taken from the config (see record_hyperparameter_search).
        self.hyperparameter_search: dict[str, Any] | None = None

    def register_model(
        self,
        name: str = "model",
        model: nn.Module | None = None,
        optim: Any = None,
        sched: Any = None,
    ) -> None:
        """Make ``model`` (with its optimizer/scheduler) part of checkpoints, modes and updates."""
        if self.__dict__.get("_models") is None:
            raise AttributeError("Cannot register a model before super().__init__() is called")
        if name in self._models:
            raise KeyError(f'A model named "{name}" is already registered; use another name')
        self._models[name] = model
        self._optims[name] = optim
        self._scheds[name] = sched

    def get_model(self, name: str) -> nn.Module:
        """The model registered as ``name``."""
        return self._models[self.get_model_names(name)[0]]

    def get_model_names(self, names: str | list[str] | None = None) -> list[str]:
        names_real = list(self._models.keys())
        if names is None:
            return names_real
        names = tolist_if_not(names)
        for name in names:
            if name not in names_real:
                raise KeyError(f'No model named "{name}"; registered models: {names_real}')
        return names

    def save_model(
        self,
        epoch: int,
        directory: str,
        is_best: bool = False,
        val_result: float | None = None,
        model_name: str = "",
    ) -> None:
        """Checkpoint every registered model after 0-based ``epoch`` in ``directory``/<name>."""
        names = self.get_model_names()
        for name in names:
            if not is_finite_state(self._models[name].state_dict()):
                raise FloatingPointError(
                    f'Refusing to save "{name}" after epoch {epoch + 1}: its weights contain NaN '
                    f"or inf. {self._nan_advice()}"
                )
        # Extra keys (ignored by upstream) that make a resumed run identical to an unbroken one.
        extras = {"rng_state": capture_rng_state(), "best_result": float(self.best_result)}
        if self.scaler is not None:
            extras["scaler"] = self.scaler.state_dict()
        for name in names:
            optim, sched = self._optims[name], self._scheds[name]
            save_checkpoint(
                {
                    "state_dict": self._models[name].state_dict(),
                    "epoch": epoch + 1,
                    "optimizer": optim.state_dict() if optim is not None else None,
                    "scheduler": sched.state_dict() if sched is not None else None,
                    "val_result": val_result,
                    **extras,
                },
                os.path.join(directory, name),
                is_best=is_best,
                model_name=model_name,
            )

    def resume_directory(self) -> str:
        """Where running the same command again resumes from: OUTPUT_DIR once it holds this run's
        own checkpoints (so a run started with --resume DIR into a new folder continues from its
        own progress after an interruption), else RESUME (--resume) when given, else OUTPUT_DIR."""
        output_dir = self.output_dir
        names = self.get_model_names()
        if names and all(read_checkpoint_pointer(os.path.join(output_dir, name)) for name in names):
            return output_dir
        return (self.cfg.RESUME if self.cfg is not None else "") or output_dir

    def _last_good_checkpoint(self) -> str | None:
        """The file a resume would load for the first model (None before any epoch finished)."""
        names = self.get_model_names()
        if not names:
            return None
        return read_checkpoint_pointer(os.path.join(self.resume_directory(), names[0]))

    def _resume_hint(self) -> str:
        path = self._last_good_checkpoint()
        if path is None:
            return "No epoch had finished, so running the same command again starts from scratch."
        return f'Finished epochs are saved: run the same command again to resume from "{path}".'

    def _nan_advice(self) -> str:
        """How to continue after a NaN stop. A lower lr is another config, so (as run identity
        requires) it goes into a new folder, resuming from this run's last good checkpoint."""
        lr = f" (now {self.cfg.OPTIM.LR})" if self.cfg is not None else ""
        path = self._last_good_checkpoint()
        if path is None:
            return (
                "No epoch had finished, so nothing was saved. Check the inputs, or rerun with a "
                f"lower OPTIM.LR{lr} and another --output-dir."
            )
        run_dir = os.path.dirname(os.path.dirname(path))
        return (
            f'The last good checkpoint is "{path}". Check the inputs, or continue from it with a '
            f"lower learning rate{lr} in a new folder: rerun the same command with "
            f"`--resume {run_dir} --output-dir <new folder> OPTIM.LR <lower value>` (the new "
            "learning rate applies from the resumed epoch on)."
        )

    def resume_model_if_exist(self, directory: str) -> int:
        """Restore the latest checkpoints in ``directory``; returns the epoch to start from.

        The rest of what they restore is kept in ``resume_point``: ``train`` applies its RNG
        state right before the first epoch it runs."""
        self.resume_point = self.restore_checkpoints(directory)
        if self.resume_point.best_result is not None:
            self.best_result = self.resume_point.best_result
        return self.resume_point.start_epoch

    def restore_checkpoints(self, directory: str) -> ResumePoint:
        """Load the latest checkpoints in ``directory`` into the registered models, optimizers,
        schedulers and ``scaler``; returns what else they hold (a fresh start if none)."""
        names = self.get_model_names()
        paths = {name: read_checkpoint_pointer(os.path.join(directory, name)) for name in names}
        if not names or any(path is None for path in paths.values()):
            print("No checkpoint found, train from scratch")
            return ResumePoint()
        print(f"Found checkpoint at {directory} (will resume training)")

        checkpoints = {name: load_checkpoint(path) for name, path in paths.items()}
        start_epoch = min(ck["epoch"] for ck in checkpoints.values())
        for name, ck in checkpoints.items():
            if ck["epoch"] != start_epoch:
                # Stopped while saving: this model is one checkpoint ahead of the others.
                paths[name] = os.path.join(directory, name, checkpoint_filename(start_epoch))
                if not os.path.isfile(paths[name]):
                    raise RuntimeError(
                        f'Checkpoints in "{directory}" are from different epochs '
                        f"({ {n: c['epoch'] for n, c in checkpoints.items()} }) and "
                        f'"{paths[name]}" is missing. Delete the "checkpoint" files there to '
                        "train from scratch, or resume from a complete copy."
                    )
                checkpoints[name] = load_checkpoint(paths[name])

        for name in names:
            print(f'Loading checkpoint from "{paths[name]}"')
            restore_from_checkpoint(
                checkpoints[name], self._models[name], self._optims[name], self._scheds[name]
            )
        first = checkpoints[names[0]]
        if self.scaler is not None and first.get("scaler"):
            self.scaler.load_state_dict(first["scaler"])
            print("Loaded amp GradScaler state")
        return ResumePoint(start_epoch, first.get("rng_state"), first.get("best_result"))

    def load_model(self, directory: str, epoch: int | None = None) -> None:
        """Load weights from ``model-best.pth.tar`` (epoch None) or ``model.pth.tar-<epoch>``."""
        if not directory:
            print(
                "Note that load_model() is skipped as no pretrained model is given "
                "(ignore this if it's done on purpose)"
            )
            return
        for name in self.get_model_names():
            model_path = model_file_path(directory, name, epoch)
            checkpoint = load_checkpoint(model_path)
            print(self.loading_line(name, model_path, checkpoint))
            state_dict = self.adapt_state_dict(name, dict(checkpoint["state_dict"]))
            try:
                result = self._models[name].load_state_dict(state_dict, strict=False)
            except RuntimeError as err:
                raise RuntimeError(
                    f'"{model_path}" does not fit this run\'s {name}: {err}\nIt was probably '
                    "trained on another dataset (number of classes) or backbone (feature width); "
                    "evaluate it with the dataset and backbone it was trained with."
                ) from err
            self.check_loaded_keys(name, model_path, result.missing_keys, result.unexpected_keys)

    def loading_line(self, name: str, model_path: str, checkpoint: dict[str, Any]) -> str:
        """The log line of loading ``model_path`` into model ``name``: upstream Dassl's."""
        val_result = checkpoint.get("val_result")
        val_text = "None" if val_result is None else f"{val_result:.1f}"
        return f"Load {model_path} to {name} (epoch={checkpoint['epoch']}, val_result={val_text})"

    def adapt_state_dict(self, name: str, state_dict: dict[str, Any]) -> dict[str, Any]:
        """Hook: turn a checkpoint's state dict into what model ``name`` loads (e.g. drop
        buffers the model rebuilds itself, or pick the rows of the classes it has)."""
        return state_dict

    def check_loaded_keys(
        self, name: str, model_path: str, missing: list[str], unexpected: list[str]
    ) -> None:
        """Hook: refuse a checkpoint whose keys differ from model ``name``'s (an override may
        accept keys the model rebuilds itself)."""
        if missing or unexpected:
            raise KeyError(
                f'"{model_path}" is not a {type(self).__name__} checkpoint: missing keys '
                f"{missing}, unexpected keys {unexpected}. Check --trainer and --model-dir."
            )

    def set_model_mode(self, mode: str = "train", names: str | list[str] | None = None) -> None:
        for name in self.get_model_names(names):
            if mode == "train":
                self._models[name].train()
            elif mode in ("test", "eval"):
                self._models[name].eval()
            else:
                raise KeyError(f'Unknown model mode "{mode}"; use "train", "eval" or "test"')

    def update_lr(self, names: str | list[str] | None = None) -> None:
        """Step the schedulers: upstream trainers call it from ``forward_backward``; for trainers
        that declare ``LR_STEP``, ``TrainerX.run_epoch`` calls it."""
        for name in self.get_model_names(names):
            if self._scheds[name] is not None:
                self._scheds[name].step()

    def detect_anomaly(self, loss: torch.Tensor) -> None:
        """Stop on a NaN/inf loss before it reaches the weights (so no bad checkpoint follows)."""
        loss = torch.as_tensor(loss)
        if torch.isfinite(loss).all():
            return
        where = ""
        if self.batch_idx is not None:
            where = (
                f" at epoch {self.epoch + 1}/{self.max_epoch}, batch "
                f"{self.batch_idx + 1}/{self.num_batches}"
            )
        raise FloatingPointError(
            f"Loss is infinite or NaN{where} (loss={loss.detach().cpu().tolist()}). Training "
            f"stopped before this update, so no NaN weights were saved. {self._nan_advice()}"
        )

    def init_writer(self, log_dir: str) -> None:
        if self._writer is None:
            # Imported here: tensorboard is slow to import and only training writes scalars.
            from torch.utils.tensorboard import SummaryWriter

            print(f"Initialize tensorboard (log_dir={log_dir})")
            self._writer = SummaryWriter(log_dir=log_dir)

    def close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def write_scalar(self, tag: str, scalar_value: float, global_step: int | None = None) -> None:
        """No-op until ``init_writer`` (only training runs write TensorBoard scalars)."""
        if self._writer is not None:
            self._writer.add_scalar(tag, scalar_value, global_step)

    def train(self, start_epoch: int, max_epoch: int) -> None:
        """Generic training loop; ``before_train`` may move ``start_epoch`` (resume)."""
        self.start_epoch = start_epoch
        self.max_epoch = max_epoch
        with self._stop_on_signals():
            self.before_train()
            # After whatever before_train did past the resume (e.g. caching features).
            point, self.resume_point = self.resume_point, None
            if point is not None and point.rng_state is not None:
                restore_rng_state(point.rng_state)
            for epoch in range(self.start_epoch, self.max_epoch):
                self.epoch = epoch
                self.stop_if_interrupted(f"the start of epoch {epoch + 1}/{self.max_epoch}")
                self.before_epoch()
                self.run_epoch()
                self.after_epoch()
            self.after_train()

    @contextmanager
    def _stop_on_signals(self) -> Iterator[None]:
        """While training, SIGINT/SIGTERM only set a flag that ``stop_if_interrupted`` acts on at
        the next batch boundary, so no epoch, evaluation or checkpoint is cut in half; a second
        signal stops at once (atomic writes keep the files on disk whole either way)."""
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers can only be set from the main thread
            return
        self._stop_signal = None
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in previous:
            signal.signal(sig, self._on_stop_signal)
        try:
            yield
        except TrainingInterrupted as stop:
            print(stop.message)
            self.close_writer()
            raise
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._stop_signal = None

    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        # Nothing is printed here: a handler may run in the middle of another print.
        if self._stop_signal is not None:
            raise TrainingInterrupted(
                signum,
                f"Second {signal.Signals(signum).name}: stopped at once. {self._resume_hint()}",
            )
        self._stop_signal = signum

    def stop_if_interrupted(self, where: str) -> None:
        """Called at batch boundaries: raise ``TrainingInterrupted`` if SIGINT/SIGTERM arrived.

        ``where`` says what was interrupted (e.g. "epoch 3/10 (after batch 5/20)")."""
        signum = self._stop_signal
        if signum is not None:
            raise TrainingInterrupted(
                signum,
                f"Interrupted by {signal.Signals(signum).name} during {where}. "
                f"{self._resume_hint()}",
            )

    def before_train(self) -> None:
        pass

    def after_train(self) -> None:
        pass

    def before_epoch(self) -> None:
        pass

    def after_epoch(self) -> None:
        pass

    def run_epoch(self) -> None:
        raise NotImplementedError

    def test(self) -> Any:
        raise NotImplementedError

    def parse_batch_train(self, batch: dict[str, Any]) -> Any:
        raise NotImplementedError

    def parse_batch_test(self, batch: dict[str, Any]) -> Any:
        raise NotImplementedError

    def forward_backward(self, batch: dict[str, Any]) -> dict[str, float]:
        raise NotImplementedError

    def model_inference(self, input: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def model_zero_grad(self, names: str | list[str] | None = None) -> None:
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].zero_grad()

    def model_backward(self, loss: torch.Tensor) -> None:
        """Backward; through the scaled loss when a ``scaler`` is set (so that small fp16
        gradients survive)."""
        self.detect_anomaly(loss)
        if self.scaler is None:
            loss.backward()
        else:
            self.scaler.scale(loss).backward()

    def model_update(self, names: str | list[str] | None = None) -> None:
        """Step the optimizers. With a ``scaler`` they step on the unscaled gradients, skipping
        the step when those overflowed, and the scale then adapts (so one call per step)."""
        for name in self.get_model_names(names):
            optim = self._optims[name]
            if optim is None:
                continue
            if self.scaler is None:
                optim.step()
            else:
                self.scaler.step(optim)
        if self.scaler is not None:
            self.scaler.update()

    def model_backward_and_update(
        self, loss: torch.Tensor, names: str | list[str] | None = None
    ) -> None:
        self.model_zero_grad(names)
        self.model_backward(loss)
        self.model_update(names)

    def prograd_backward_and_update(
        self,
        loss_a: torch.Tensor,
        loss_b: torch.Tensor,
        lambda_: float = 1,
        names: str | list[str] | None = None,
    ) -> None:
        """ProGrad's update (the method its plugin calls on ProGrad's Dassl fork): each trainable
        tensor steps along the gradient of ``loss_a`` (the task loss), minus ``lambda_`` times its
        component along the gradient of ``loss_b`` (the KL to zero-shot CLIP) where the two point
        apart, so that the step does not increase ``loss_b`` (``lambda_`` 1).

        Tensors that ``loss_b`` does not reach keep their ``loss_a`` gradient. Under an amp
        ``scaler`` both gradients carry the same scale, which the projection preserves.
        """
        names = self.get_model_names(names)
        params = [p for n in names for p in self._models[n].parameters() if p.requires_grad]
        scale = (lambda loss: loss) if self.scaler is None else self.scaler.scale
        self.model_zero_grad(names)
        self.detect_anomaly(loss_b)
        scale(loss_b).backward(retain_graph=True)
        b_grads = [None if p.grad is None else p.grad.clone() for p in params]
        self.model_zero_grad(names)
        self.detect_anomaly(loss_a)
        scale(loss_a).backward()
        for param, b_grad in zip(params, b_grads):
            if param.grad is not None and b_grad is not None:
                param.grad = project_out_conflict(param.grad, b_grad, lambda_)
        self.model_update(names)


def project_out_conflict(
    grad: torch.Tensor, reference: torch.Tensor, lambda_: float
) -> torch.Tensor:
    """``grad`` minus ``lambda_`` times its component along ``reference`` when their angle is
    obtuse (ProGrad, per tensor); otherwise ``grad`` itself. A zero ``reference`` or ``grad``
    leaves ``grad`` unchanged."""
    unit = reference / torch.linalg.norm(reference)
    along = torch.dot(grad.flatten(), unit.flatten())
    if along < 0:
        return grad - lambda_ * along * unit
    return grad


def model_file_path(directory: str, name: str, epoch: int | None = None) -> str:
    """Path of model ``name``'s ``model-best.pth.tar`` (epoch None) or ``model.pth.tar-<epoch>``.

    Every ``load_model`` resolves its files here, so a missing one always fails the same way:
    naming the file, what the folder holds, and the fix.
    """
    model_file = BEST_FILE if epoch is None else checkpoint_filename(epoch)
    model_path = os.path.join(directory, name, model_file)
    if not os.path.exists(model_path):
        raise FileNotFoundError(_missing_model_message(model_path, epoch))
    return model_path


def _missing_model_message(model_path: str, epoch: int | None) -> str:
    folder = os.path.dirname(model_path)
    if os.path.isdir(folder):
        found = sorted(f for f in os.listdir(folder) if f.startswith("model"))
        listing = f"that folder holds {found or 'no model files'}"
    else:
        listing = f'the folder "{folder}" does not exist'
    which = "the best-val model" if epoch is None else f"the epoch-{epoch} checkpoint"
    return (
        f'No model at "{model_path}" ({which}; {listing}). Pass --model-dir the OUTPUT_DIR of a '
        "training run, and --load-epoch N for model.pth.tar-N (without it model-best.pth.tar "
        'is loaded, which exists only for runs with TEST.FINAL_MODEL "best_val").'
    )


def shots_record(cfg: CfgNode, train_x: list) -> dict[str, Any]:
    """The shots a run asked for and those it trained on: per class, the fewest and the most
    train items (fewer than DATASET.NUM_SHOTS where a class has fewer images)."""
    low, high = shots_per_class(train_x)
    return {"requested": int(cfg.DATASET.NUM_SHOTS), "per_class_min": low, "per_class_max": high}


class SimpleTrainer(TrainerBase):
    """Data, model, evaluator and the epoch hooks every supervised trainer shares."""

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__()
        self.check_cfg(cfg)
        if torch.cuda.is_available() and cfg.USE_CUDA:
            self.device = torch.device("cuda")
        else:
            self.device = torch.device("cpu")

        self.max_epoch = cfg.OPTIM.MAX_EPOCH
        self.output_dir = cfg.OUTPUT_DIR

        self.cfg = cfg
        self.build_data_loader()
        if cfg.TEST.FINAL_MODEL == "best_val" and not cfg.TEST.NO_TEST and not self.eval_only:
            if self.selection_split()[0] == "test":
                self.allow_selection_on_test("TEST.FINAL_MODEL best_val picks the epoch")
        self.build_model()
        self.evaluator = build_evaluator(cfg, lab2cname=self.lab2cname)

    def check_cfg(self, cfg: CfgNode) -> None:
        """Hook: raise here if the trainer needs particular settings (e.g. a sampler)."""

    @property
    def eval_only(self) -> bool:
        return bool(self.cfg.get("RUN", {}).get("EVAL_ONLY", False))

    def selection_split(self) -> tuple[str, Any]:
        """The split a selection on val really reads, and its image loader: ("val", val loader),
        or "test" when ``val_reads_test`` (no val split: the test loader; ImageNet: its val
        loader, whose images are the test images)."""
        dm = getattr(self, "dm", None)  # a plugin's own build_data_loader may set no DataManager
        reads_test = self.val_loader is None if dm is None else val_reads_test(dm.dataset)
        if not reads_test:
            return "val", self.val_loader
        return "test", self.val_loader if self.val_loader is not None else self.test_loader

    def allow_selection_on_test(self, what: str) -> None:
        """Refuse a selection that would read the test split (``what`` says which), unless
        TEST.SELECT_ON_TEST allows it; then warn, and the result record says so."""
        name = self.cfg.DATASET.NAME
        problem = f"{what} on the val split, but {name}'s val split is its test split here"
        if not self.cfg.TEST.get("SELECT_ON_TEST", False):
            raise ValueError(
                f"{problem}, so the reported test accuracy would be selected on the data it is "
                "scored on. Fix: use a dataset split with val images that are not test images, "
                "or fix the choice (TEST.FINAL_MODEL last_step; the hyperparameters in the "
                "config); to reproduce a protocol that selects on test, set "
                "TEST.SELECT_ON_TEST True (the result record then says so)."
            )
        print(
            f"Warning: {problem}; TEST.SELECT_ON_TEST allows it, and the result record says "
            "that the selection read the test split."
        )

    def build_data_loader(self) -> None:
        """Create the loaders and dataset facts; an override must set the same attributes."""
        dm = DataManager(self.cfg)
        self.train_loader_x = dm.train_loader_x
        self.train_loader_u = dm.train_loader_u  # optional, can be None
        self.val_loader = dm.val_loader  # optional, can be None
        self.test_loader = dm.test_loader
        self.num_classes = dm.num_classes
        self.num_source_domains = dm.num_source_domains
        self.lab2cname = dm.lab2cname  # dict {label: classname}
        self.dm = dm

    def build_model(self) -> None:
        """Build and register the default classifier; methods override this."""
        cfg = self.cfg
        print("Building model")
        self.model = SimpleNet(cfg, cfg.MODEL, self.num_classes)
        if cfg.MODEL.INIT_WEIGHTS:
            load_pretrained_weights(self.model, cfg.MODEL.INIT_WEIGHTS)
        self.model.to(self.device)
        print(f"# params: {count_num_param(self.model):,}")
        self.optim = build_optimizer(self.model, cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        self.register_model("model", self.model, self.optim, self.sched)

    def train(self) -> None:  # type: ignore[override]
        super().train(self.start_epoch, self.max_epoch)

    def before_train(self) -> None:
        self._remove_stale_temp_files()
        directory = self.resume_directory()
        self.start_epoch = self.resume_model_if_exist(directory)
        if self.start_epoch > 0 and directory != self.output_dir:
            self._carry_over_best_models(directory)

        writer_dir = os.path.join(self.output_dir, "tensorboard")
        mkdir_if_missing(writer_dir)
        self.init_writer(writer_dir)
        self.time_start = time.time()

    def _remove_stale_temp_files(self) -> None:
        """Temp files of writes a kill -9 cut short, in the folders this run alone writes."""
        folders = [self.output_dir]
        folders += [os.path.join(self.output_dir, name) for name in self.get_model_names()]
        for folder in folders:
            for name in remove_stale_temp_files(folder):
                print(f'Removed "{os.path.join(folder, name)}", left by an interrupted write')

    def _carry_over_best_models(self, directory: str) -> None:
        """Copy the resumed run's best-val models, so OUTPUT_DIR alone can deploy the best one."""
        for name in self.get_model_names():
            src = os.path.join(directory, name, BEST_FILE)
            dst = os.path.join(self.output_dir, name, BEST_FILE)
            if os.path.isfile(src) and not os.path.exists(dst):
                with open(src, "rb") as f_src, atomic_write(dst, "wb") as f_dst:
                    shutil.copyfileobj(f_src, f_dst)
                print(f'Copied "{src}" to "{dst}"')

    def after_train(self) -> None:
        print("Finish training")
        if not self.cfg.TEST.NO_TEST:
            if self.cfg.TEST.FINAL_MODEL == "best_val":
                print("Deploy the model with the best val performance")
                self.load_model(self.output_dir)
                val_split, val_loader = self.selection_split()
                self.evaluated_model = EvaluatedModel(
                    SELECTED_BEST_VAL,
                    self.saved_model(self.output_dir, None).epoch,
                    val_split,
                    len(val_loader.dataset),
                )
            else:
                print("Deploy the last-epoch model")
                self.evaluated_model = EvaluatedModel(SELECTED_LAST_EPOCH, self.max_epoch)
            self.test()

        elapsed = round(time.time() - self.time_start)
        print(f"Elapsed: {datetime.timedelta(seconds=elapsed)}")
        self.close_writer()

    def after_epoch(self) -> None:
        """Val-pick the best model, then checkpoint this epoch (every EPOCHS_PER_CHECKPOINT-th
        one, so a re-run resumes from the last saved). The best file is written first: a kill
        between the two leaves the pointer on the previous checkpoint, and the re-run redoes
        the epochs since then whole."""
        do_test = not self.cfg.TEST.NO_TEST
        if do_test and self.cfg.TEST.FINAL_MODEL == "best_val":
            curr_result = self.test(split="val")
            if self.is_new_best(curr_result):
                self.best_result = curr_result
                self.save_model(
                    self.epoch, self.output_dir, val_result=curr_result, model_name=BEST_FILE
                )

        if self.checkpoints_after(self.epoch + 1):
            self.save_model(self.epoch, self.output_dir)
            self.remove_superseded_checkpoints(self.epoch + 1)

    def checkpoints_after(self, finished: int) -> bool:
        """Whether the epoch that brings the count of finished epochs to ``finished`` is
        checkpointed: every EPOCHS_PER_CHECKPOINT-th, and each one upstream's policy keeps."""
        return finished % self.EPOCHS_PER_CHECKPOINT == 0 or self.keeps_checkpoint(finished)

    def is_new_best(self, val_result: float) -> bool:
        """Whether this epoch's val result replaces the best model so far: only a better one
        (Dassl's rule, so the first of equally good epochs is kept)."""
        return val_result > self.best_result

    def keeps_checkpoint(self, epoch: int) -> bool:
        """Upstream's policy: ``model.pth.tar-<epoch>`` stays for multiples of
        TRAIN.CHECKPOINT_FREQ and for the last epoch."""
        freq = self.cfg.TRAIN.CHECKPOINT_FREQ
        return epoch == self.max_epoch or (freq > 0 and epoch % freq == 0)

    def remove_superseded_checkpoints(self, latest: int) -> None:
        """Delete epoch files older than ``latest`` that upstream's policy would not have kept.

        Runs after every model's ``latest`` file and pointer are on disk, so no pointer ever
        names a deleted file, and a kill mid-way leaves only files the next call removes.
        """
        for name in self.get_model_names():
            folder = os.path.join(self.output_dir, name)
            for filename in os.listdir(folder):
                epoch = checkpoint_epoch(filename)
                if epoch is not None and epoch < latest and not self.keeps_checkpoint(epoch):
                    os.remove(os.path.join(folder, filename))

    def saved_model(self, directory: str, epoch: int | None) -> EvaluatedModel:
        """What ``load_model(directory, epoch)`` deploys: the best-val file (epoch None) or the
        given epoch's file, with the epoch count the first model's file holds. The model the run
        in ``directory`` tested itself keeps that run's selection (its result record: a best-val
        pick's split, or the last epoch); another epoch is a given one."""
        names = self.get_model_names()
        if not names:
            return EvaluatedModel()
        tested = read_result_record(directory) or {}
        picked = tested.get("selection") or {}
        if epoch is not None:
            last = picked.get("rule") == SELECTED_LAST_EPOCH
            if last and (tested.get("model") or {}).get("epoch") == epoch:
                return EvaluatedModel(SELECTED_LAST_EPOCH, epoch)
            return EvaluatedModel(SELECTED_FIXED, epoch)
        checkpoint = load_checkpoint(model_file_path(directory, names[0], None))
        return EvaluatedModel(
            SELECTED_BEST_VAL,
            int(checkpoint["epoch"]),
            picked.get("val_split"),
            picked.get("val_size"),
        )

    @torch.no_grad()
    def test(self, split: str | None = None) -> float:
        """Evaluate on ``split`` (default ``TEST.SPLIT``; val falls back to test if absent).

        The final evaluation (no ``split`` given) also writes the run's result record."""
        final = split is None
        self.set_model_mode("eval")
        self.evaluator.reset()

        split, data_loader = self.eval_loader(split)
        print(f"Evaluate on the *{split}* set")

        where = f"the evaluation on the {split} set"
        for batch in tqdm(data_loader):
            self.stop_if_interrupted(where)
            input, label = self.parse_batch_test(batch)
            output = self.model_inference(input)
            self.evaluator.process(output, label)

        results = self.evaluator.evaluate()
        for k, v in results.items():
            self.write_scalar(f"{split}/{k}", v, self.epoch)
        if final:
            # val images that are test images (ImageNet's) are recorded as the test split
            recorded = self.selection_split()[0] if split == "val" else split
            write_result_record(self.output_dir, self.result_record(recorded, results))
        return list(results.values())[0]

    def result_record(self, split: str, results: dict[str, float]) -> dict[str, Any]:
        """The result record of a final evaluation on ``split`` (see result_record.py)."""
        accuracy = float(results.get("accuracy", list(results.values())[0]))
        record: dict[str, Any] = {
            "split": split,
            "accuracy": accuracy,
            "error": float(results.get("error_rate", 100.0 - accuracy)),
            "macro_f1": float(results.get("macro_f1", float("nan"))),
        }
        counts = getattr(self.evaluator, "counts", None)
        if counts is not None:
            record["total"], record["correct"] = counts()
        model = self.evaluated_model
        selection: dict[str, Any] = {"rule": model.selection}
        if model.selection == SELECTED_BEST_VAL:
            selection.update(val_split=model.val_split, val_size=model.val_size)
        record["model"] = {"epoch": model.epoch}
        record["selection"] = selection
        record["hyperparameters"] = self.hyperparameter_search or {
            "rule": HYPERPARAMETERS_FIXED,
            "source": self.cfg.get("RUN", {}).get("HYPERPARAMETERS_FROM", "config"),
        }
        if not self.eval_only:
            record["shots"] = shots_record(self.cfg, self.dm.dataset.train_x)
        val_use = self.cfg.DATASET.get("VAL_USE", "select")
        if val_use != "select":  # validation-free: the val images were unused or trained on
            record["validation_free"] = {"val_images": "unused" if val_use == "none" else "trained"}
        return record

    def record_derived_hyperparameters(
        self, values: dict[str, Any], formula: str, split: str, size: int
    ) -> None:
        """Say, for the result record, that hyperparameters were computed from the data, not
        searched: their ``values``, by ``formula`` (a short description), from ``split`` of
        ``size`` items."""
        self.hyperparameter_search = {
            "rule": HYPERPARAMETERS_DERIVED,
            "values": values,
            "formula": formula,
            "split": split,
            "size": size,
        }

    def record_hyperparameter_search(
        self,
        space: dict[str, list[Any]],
        winner: dict[str, Any],
        split: str,
        size: int,
    ) -> None:
        """Say, for the result record, that hyperparameters were searched: over ``space``
        (name -> candidates), on ``split`` of ``size`` images, and which values won. A search on
        a val split whose images are test images is recorded as one on test."""
        if split == "val":
            split = self.selection_split()[0]
        self.hyperparameter_search = {
            "rule": HYPERPARAMETERS_SEARCHED,
            "space": space,
            "winner": winner,
            "split": split,
            "size": size,
        }

    def eval_loader(self, split: str | None = None) -> tuple[str, Any]:
        """The split ``test`` evaluates and the loader it reads; a method may serve other
        batches (cached features) for the same split."""
        return self.split_loader(split)

    def split_loader(self, split: str | None = None) -> tuple[str, Any]:
        """A split and its image loader: ``split`` (default ``TEST.SPLIT``), with val falling
        back to test when the dataset has no val split. Builds nothing, so reading a split's
        size never encodes it."""
        if split is None:
            split = self.cfg.TEST.SPLIT
        if split == "val" and self.val_loader is not None:
            return "val", self.val_loader
        return "test", self.test_loader

    def model_inference(self, input: torch.Tensor) -> torch.Tensor:
        return self.model(input)

    def parse_batch_test(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def get_current_lr(self, names: str | list[str] | None = None) -> float:
        name = self.get_model_names(names)[0]
        return self._optims[name].param_groups[0]["lr"]


class TrainerX(SimpleTrainer):
    """A trainer using labelled data only (``train_loader_x``)."""

    def run_epoch(self) -> None:
        self.set_model_mode("train")
        losses = MetricMeter()
        batch_time = AverageMeter()
        data_time = AverageMeter()
        self.num_batches = self.batches_this_epoch()
        print_freq = self.cfg.TRAIN.PRINT_FREQ

        end = time.time()
        batches = self.train_loader_x
        if self.num_batches < len(batches):
            batches = islice(batches, self.num_batches)
        for batch_idx, batch in enumerate(batches):
            self.batch_idx = batch_idx
            data_time.update(time.time() - end)
            loss_summary = self.forward_backward(batch)
            if self.engine_steps_lr_now():
                self.update_lr()
            batch_time.update(time.time() - end)
            losses.update(loss_summary)

            meet_freq = (self.batch_idx + 1) % print_freq == 0
            only_few_batches = self.num_batches < print_freq
            if meet_freq or only_few_batches:
                nb_remain = self.num_batches - self.batch_idx - 1
                nb_remain += (self.max_epoch - self.epoch - 1) * self.num_batches
                eta = datetime.timedelta(seconds=int(batch_time.avg * nb_remain))
                info = [
                    f"epoch [{self.epoch + 1}/{self.max_epoch}]",
                    f"batch [{self.batch_idx + 1}/{self.num_batches}]",
                    f"time {batch_time.val:.3f} ({batch_time.avg:.3f})",
                    f"data {data_time.val:.3f} ({data_time.avg:.3f})",
                    f"{losses}",
                    f"lr {self.get_current_lr():.4e}",
                    f"eta {eta}",
                ]
                print(" ".join(info))

            n_iter = self.epoch * self.num_batches + self.batch_idx
            for name, meter in losses.meters.items():
                self.write_scalar("train/" + name, meter.avg, n_iter)
            self.write_scalar("train/lr", self.get_current_lr(), n_iter)
            self.stop_if_interrupted(
                f"epoch {self.epoch + 1}/{self.max_epoch} "
                f"(after batch {self.batch_idx + 1}/{self.num_batches})"
            )
            end = time.time()

    def batches_this_epoch(self) -> int:
        """How many batches of the train loader this epoch runs: all of them, unless a trainer
        with a budget of iterations stops its last epoch part-way (as upstream loops that
        count iterations, not epochs, do)."""
        return len(self.train_loader_x)

    def engine_steps_lr_now(self) -> bool:
        """Whether the batch that just ran ends an LR step that the trainer declared (LR_STEP)."""
        if self.LR_STEP == "iteration":
            return True
        return self.LR_STEP == "epoch" and self.batch_idx + 1 == self.num_batches

    def parse_batch_train(
        self, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (
            batch["img"].to(self.device),
            batch["label"].to(self.device),
            batch["domain"].to(self.device),
        )
