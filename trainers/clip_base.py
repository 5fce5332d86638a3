"""The shared base of every CLIP method: what DESIGN.md's "contract for CLIP methods" asks once.

A method subclasses `ClipTrainer` and writes only its head: an `nn.Module` mapping image features
[N, D] (plus its own text side) to logits [N, K]. The base loads CLIP as a `ClipBackbone` (OpenAI's
or OpenCLIP's, the same interface for every method; INPUT.* follow its preprocessing unless the
config chose otherwise, see `follow_backbone_input`), applies the precision,
freezes CLIP, encodes images without gradients, builds the optimizer over the learnable part only,
does the amp step, registers the model under its upstream name, loads checkpoints (best or given
epoch; fixed buffers dropped; ImageNet rows picked for ImageNet-A/R) and caches image features.

Precision (PREC): fp16 converts CLIP to upstream's fp16 layout (`convert_weights`), so the frozen
encoders run in fp16; amp keeps CLIP in fp32 and runs each training step under fp16 autocast with
a GradScaler (evaluation stays fp32). Heads, their optimizer state and their checkpoints are fp32
under every PREC: a head casts the features it receives to fp32. Upstream CoOp's fp16 runs save
fp16 `ctx`/token tensors instead; `load_state_dict` casts either way, so checkpoints load across
precisions.
"""

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from yacs.config import CfgNode as CN

from clip.backbone import ClipBackbone, OpenAIBackbone, Preprocess, load_backbone
from dassl.config import get_cfg_default, register_cfg_extension
from dassl.data.data_manager import build_data_loader
from dassl.data.transforms import build_transform
from dassl.engine import TrainerX
from dassl.engine.trainer import model_file_path
from dassl.metrics import compute_accuracy
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import load_checkpoint, load_pretrained_weights
from dassl.utils.torchtools import rng_untouched

from .class_subsets import NUM_IMAGENET_CLASSES, imagenet_rows
from .features import encode_loader, feature_loader, is_feature_loader

PRECISIONS = ("fp16", "fp32", "amp")


@register_cfg_extension
def _feature_cache_keys(cfg: CN) -> None:
    cfg.TRAINER.FEATURE_CACHE = CN()
    # Encode val/test images once per run and reuse the features (results are unchanged).
    cfg.TRAINER.FEATURE_CACHE.EVAL = True
    # Train on features of *un-augmented* train images, encoded once. This changes the protocol
    # (no random crops/flips), so it is off by default to match the published numbers.
    cfg.TRAINER.FEATURE_CACHE.TRAIN = False


def _input_values(preprocess: Preprocess) -> dict[str, Any]:
    return {
        "SIZE": tuple(preprocess.size),
        "INTERPOLATION": preprocess.interpolation,
        "PIXEL_MEAN": list(preprocess.mean),
        "PIXEL_STD": list(preprocess.std),
    }


# yacs cannot tell a value the config set from a default, so these count as "not chosen": Dassl's
# defaults, and OpenAI CLIP's preprocessing (224 px, bicubic, CLIP's mean/std), which every
# shipped trainer config writes because upstream's were written for OpenAI's CLIP.
UNCHOSEN_INPUTS = (
    {
        key: get_cfg_default().INPUT[key]
        for key in ("SIZE", "INTERPOLATION", "PIXEL_MEAN", "PIXEL_STD")
    },
    _input_values(OpenAIBackbone.preprocess_for(224)),
)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    a, b = tuple(a), tuple(b)
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=1e-6) for x, y in zip(a, b))


def _shown(key: str, value: Any) -> str:
    return f"({value[0]}, {value[1]})" if key == "SIZE" else str(value)


def follow_backbone_input(cfg: CN, backbone: ClipBackbone) -> CN:
    """`cfg` with INPUT.SIZE/INTERPOLATION/PIXEL_MEAN/PIXEL_STD set to the backbone's where the
    config left them unchosen (see UNCHOSEN_INPUTS); a value it chose that differs is an error,
    raised before any data is read (CLIP's positional embeddings fix the size, and other
    statistics silently cost accuracy)."""
    changes = {}
    for key, wanted in _input_values(backbone.preprocess).items():
        current = cfg.INPUT[key]
        if _same(current, wanted):
            continue
        if not any(_same(current, unchosen[key]) for unchosen in UNCHOSEN_INPUTS):
            what = (
                f"takes {wanted[0]}x{wanted[1]} images"
                if key == "SIZE"
                else f"was trained with INPUT.{key} {_shown(key, wanted)}"
            )
            raise ValueError(
                f"INPUT.{key} is {_shown(key, current)} but the CLIP backbone "
                f"{cfg.MODEL.BACKBONE.NAME!r} {what}. Fix: set INPUT.{key} to "
                f'{_shown(key, wanted)} (e.g. append `INPUT.{key} "{_shown(key, wanted)}"` to '
                "the train.py command or edit the config file), drop it from the config to "
                f"follow the backbone, or choose a backbone made for {_shown(key, current)}."
            )
        changes[key] = wanted
    if backbone.preprocess.resize_mode != "shortest":
        print(
            f"Note: backbone {cfg.MODEL.BACKBONE.NAME!r} was trained resizing images with "
            f"OpenCLIP's {backbone.preprocess.resize_mode!r} mode; the test transform here "
            "resizes the shorter side and centre-crops, as for every backbone"
        )
    if not changes:
        return cfg
    frozen = cfg.is_frozen()
    cfg = cfg.clone()
    cfg.defrost()
    for key, wanted in changes.items():
        print(
            f"INPUT.{key} follows the backbone: {_shown(key, wanted)} (the config's "
            f"{_shown(key, cfg.INPUT[key])} is a default, not a choice)"
        )
        cfg.INPUT[key] = wanted
    if frozen:
        cfg.freeze()
    return cfg


def resolve_precision(requested: str, device: torch.device) -> str:
    """fp16 and amp need CUDA; elsewhere run fp32 (and say so) instead of failing or crawling.

    `requested` is one of PRECISIONS (`ClipTrainer.check_cfg` refuses others). This is the only
    CUDA-specific step of the fp16/amp paths; the CPU tests bypass it to run them.
    """
    if requested != "fp32" and device.type != "cuda":
        print(f"Warning: PREC={requested} needs a CUDA device; running in fp32 on {device.type}")
        return "fp32"
    return requested


class FeatureClassifier(nn.Module):
    """Frozen image encoder + method head. Accepts images [N, 3, H, W] or features [N, D]."""

    def __init__(self, image_encoder: nn.Module, head: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.head = head
        self.dtype = dtype

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(images.type(self.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = x if x.dim() == 2 else self.encode_images(x)
        return self.head(features)


class ClipTrainer(TrainerX):
    """Base trainer of CLIP methods. Subclasses set the class attributes and `build_head`."""

    CFG_NODE = ""  # the method's config node under TRAINER, holding at least PREC
    # Keys of that node with a fixed set of values, checked before any data or model is built.
    CFG_CHOICES: dict[str, tuple[str, ...]] = {"PREC": PRECISIONS}
    MODEL_NAME: str | None = None  # register_model name; None for methods with nothing to learn
    PER_CLASS_KEYS: tuple[str, ...] = ()  # checkpoint tensors with one row per class
    FIXED_KEYS: tuple[str, ...] = ()  # checkpoint buffers rebuilt from class names, not loaded

    def method_cfg(self, cfg: CN | None = None) -> CN:
        return (self.cfg if cfg is None else cfg).TRAINER[self.CFG_NODE]

    def check_cfg(self, cfg: CN) -> None:
        node = self.method_cfg(cfg)
        for key, choices in self.CFG_CHOICES.items():
            if node[key] not in choices:
                raise ValueError(
                    f"TRAINER.{self.CFG_NODE}.{key} is {node[key]!r}; choose one of "
                    f"{', '.join(choices)}"
                )

    def build_head(self, backbone: ClipBackbone, classnames: list[str]) -> nn.Module:
        """The method: features [N, D] -> logits [N, K]. CLIP is on self.device, frozen."""
        raise NotImplementedError

    @classmethod
    def learns_per_class(cls, cfg: CN) -> bool:
        """Whether the learned weights hold one row per class, so that they only make sense on
        the classes they were trained on (train.py refuses evaluating them on other classes)."""
        return bool(cls.PER_CLASS_KEYS)

    def learnable(self) -> nn.Module | None:
        """The part of the head that is optimised, registered and checkpointed."""
        return None if self.MODEL_NAME is None else self.head

    def build_data_loader(self) -> None:
        """Load CLIP before the data: the transforms follow the backbone's preprocessing."""
        print(f"Loading CLIP (backbone: {self.cfg.MODEL.BACKBONE.NAME})")
        self.backbone = load_backbone(self.cfg.MODEL.BACKBONE.NAME)
        self.cfg = follow_backbone_input(self.cfg, self.backbone)
        super().build_data_loader()

    def build_model(self) -> None:
        cfg = self.cfg
        backbone = self.backbone
        self.precision = resolve_precision(self.method_cfg().PREC, self.device)
        if self.precision == "fp16":
            backbone.half_()
        print("Turning off gradients in both the image and the text encoder")
        backbone.requires_grad_(False)
        backbone.eval().to(self.device)
        self.clip_model = backbone.model
        self.logit_scale = backbone.logit_scale

        print(f"Building {type(self).__name__} head")
        self.head = self.build_head(backbone, self.dm.dataset.classnames).to(self.device)
        self.model = FeatureClassifier(backbone.visual, self.head, backbone.dtype)

        learner = self.learnable()
        if learner is not None:
            if cfg.MODEL.INIT_WEIGHTS:
                load_pretrained_weights(learner, cfg.MODEL.INIT_WEIGHTS)
            # Only the method's own parameters reach the optimizer.
            self.optim = build_optimizer(learner, cfg.OPTIM)
            self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
            self.register_model(self.MODEL_NAME, learner, self.optim, self.sched)
        # On the run's device: a "cuda" scaler on CPU disables itself and would step unscaled.
        self.scaler = torch.amp.GradScaler(self.device.type) if self.precision == "amp" else None

    # ---- image -> features (cached where the transform is deterministic) -------------------

    def encode_data_source(self, data_source: list) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and labels of `data_source` under the test transform (no augmentation)."""
        cfg = self.cfg
        loader = build_data_loader(
            cfg,
            sampler_type="SequentialSampler",
            data_source=data_source,
            batch_size=cfg.DATALOADER.TEST.BATCH_SIZE,
            tfm=build_transform(cfg, is_train=False),
            is_train=False,
        )
        return self._encode_for_cache(loader)

    def _encode_for_cache(self, loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode every image of `loader` without drawing from the global RNGs (iterating a
        DataLoader draws one seed). Caches are built on first use, e.g. at the first val
        evaluation after a resume, so such draws would put a resumed run's random stream off an
        uninterrupted one's; this way the val path draws as upstream's does, once per evaluation."""
        with rng_untouched():
            return encode_loader(loader, self._encode_to_device)

    def _encode_to_device(self, images: torch.Tensor) -> torch.Tensor:
        # Encoding a large split takes minutes: a Ctrl-C or SIGTERM must not wait for its end.
        self.stop_if_interrupted("the encoding of images for the feature cache")
        return self.model.encode_images(images.to(self.device))

    def eval_loader(self, split: str | None = None) -> tuple[str, DataLoader]:
        """The engine's choice of split, served from cached features (TRAINER.FEATURE_CACHE.EVAL):
        the loader attribute is replaced by a feature loader on first use."""
        split, loader = super().eval_loader(split)
        if self.cfg.TRAINER.FEATURE_CACHE.EVAL and not is_feature_loader(loader):
            print(f"Encoding the *{split}* images once; later evaluations reuse the features")
            features, labels = self._encode_for_cache(loader)
            loader = feature_loader(features, labels, loader.batch_size, shuffle=False)
            setattr(self, f"{split}_loader", loader)
        return split, loader

    def before_train(self) -> None:
        super().before_train()
        if self.cfg.TRAINER.FEATURE_CACHE.TRAIN and not is_feature_loader(self.train_loader_x):
            print("Encoding un-augmented train images once (TRAINER.FEATURE_CACHE.TRAIN=True)")
            features, labels = self.encode_data_source(self.dm.dataset.train_x)
            # Same batching as the image loader it replaces, so epochs have the same steps.
            image_loader = self.train_loader_x
            self.train_loader_x = feature_loader(
                features,
                labels,
                image_loader.batch_size,
                shuffle=True,
                drop_last=image_loader.drop_last,
            )

    # ---- features -> logits, the training step -------------------------------------------

    def parse_batch_train(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def model_inference(self, input: torch.Tensor) -> torch.Tensor:
        return self.model(input)

    def forward_backward(self, batch: dict) -> dict[str, float]:
        image, label = self.parse_batch_train(batch)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.scaler is not None):
            output = self.model(image)
            loss = F.cross_entropy(output, label)
        self.model_backward_and_update(loss)

        summary = {"loss": loss.item(), "acc": compute_accuracy(output, label)[0].item()}
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return summary

    def model_backward_and_update(
        self, loss: torch.Tensor, names: str | list[str] | None = None
    ) -> None:
        """Under amp, the GradScaler step: backward through the scaled loss (so small fp16
        gradients survive), then every registered optimizer steps on the unscaled gradients,
        skipping the step when they overflowed, and the scale adapts."""
        if self.scaler is None:
            super().model_backward_and_update(loss, names)
            return
        self.model_zero_grad(names)
        self.detect_anomaly(loss)
        self.scaler.scale(loss).backward()
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self.scaler.step(self._optims[name])
        self.scaler.update()

    # ---- checkpoints ---------------------------------------------------------------------

    def load_model(self, directory: str, epoch: int | None = None) -> None:
        """Upstream CoOp's loading: fixed buffers and ImageNet-A/R rows adapted, keys checked."""
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given")
            return
        for name in self.get_model_names():
            model_path = model_file_path(directory, name, epoch)
            checkpoint = load_checkpoint(model_path)
            state_dict = self.adapt_state_dict(dict(checkpoint["state_dict"]))
            print(f'Loading weights to {name} from "{model_path}" (epoch = {checkpoint["epoch"]})')
            self._load_state_dict(name, state_dict, model_path)

    def adapt_state_dict(self, state_dict: dict) -> dict:
        """Drop buffers rebuilt from class names; keep ImageNet-A/R's rows of ImageNet ones."""
        for key in self.FIXED_KEYS:
            state_dict.pop(key, None)
        rows = imagenet_rows(self.cfg.DATASET.NAME)
        if rows is not None:
            for key in self.PER_CLASS_KEYS:
                tensor = state_dict.get(key)
                if tensor is not None and tensor.shape[0] == NUM_IMAGENET_CLASSES:
                    state_dict[key] = tensor[rows]
        return state_dict

    def _load_state_dict(self, name: str, state_dict: dict, model_path: str) -> None:
        try:
            result = self._models[name].load_state_dict(state_dict, strict=False)
        except RuntimeError as err:
            raise RuntimeError(
                f'"{model_path}" does not fit this run\'s {name}: {err}\nIt was probably trained '
                "on another dataset (number of classes) or backbone (feature width); evaluate it "
                "with the dataset and backbone it was trained with."
            ) from err
        missing = [k for k in result.missing_keys if k not in self.FIXED_KEYS]
        if missing or result.unexpected_keys:
            raise KeyError(
                f'"{model_path}" is not a {type(self).__name__} checkpoint: missing keys '
                f"{missing}, unexpected keys {result.unexpected_keys}. Check --trainer and "
                "--model-dir."
            )
