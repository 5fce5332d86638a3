"""The shared base of every CLIP method (docs/architecture.md describes the design).

A method subclasses `ClipTrainer`, declares what it trains (``TRAINS``, a `MethodKind`) and writes
its head: an `nn.Module` mapping image features [N, D] (plus its own text side) to logits [N, K].
The base loads CLIP as a `ClipBackbone` (OpenAI's or OpenCLIP's, the same interface for every
method; INPUT.* follow its preprocessing unless the config chose otherwise, see
`follow_backbone_input`), applies the precision, freezes all of CLIP but the method's learnable
part, encodes images (with gradients only when the image tower learns), builds the optimizer over
the learnable part only, gives the engine its amp loss scaler, registers the model under its
upstream name, and adapts the checkpoints the engine loads (fixed buffers dropped; ImageNet rows
picked for ImageNet-A/R along each key's class axis).

From ``TRAINS`` it derives whether image features may come from the feature store and whether
eval features are kept across epochs (both only while the image tower is frozen), and which
protocols make sense. The store's guarantee does not rest on the declaration: the feature
pipeline uses the store only while the image tower is the one loaded (trainers/encoder_seal.py),
and a method whose image tower changes without declaring it is treated as an image-tower method.

Images reach a head only as features, along one path. The train loader serves what
TRAINER.PROTOCOL asks for (trainers/protocol.py): image batches (exact) or feature batches (views,
plain); evaluation always serves feature batches. `batch_features` turns either kind into
features, told apart by the batch's key. Features encoded once come from the feature store
(trainers/features.py, trainers/feature_store.py), shared by every run.

Precision (PREC): fp16 converts CLIP to upstream's fp16 layout (`convert_weights`), so the frozen
encoders run in fp16; amp keeps CLIP in fp32 and runs each training step under fp16 autocast with
a GradScaler (evaluation stays fp32). Heads, their optimizer state and their checkpoints are fp32
under every PREC: `FeatureClassifier` hands each head its features in fp32. Upstream CoOp's fp16
runs save fp16 `ctx`/token tensors instead; `load_state_dict` casts either way, so checkpoints load
across precisions.
"""

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from yacs.config import CfgNode as CN

from clip.backbone import ClipBackbone, OpenAIBackbone, Preprocess, find_weights, load_backbone
from clip.clip import weights_digest
from dassl.config import get_cfg_default, register_cfg_extension
from dassl.data.data_manager import (
    DatasetWrapper,
    build_data_loader,
    effective_num_workers,
    val_reads_test,
)
from dassl.data.datasets import Datum
from dassl.data.transforms import eval_view_identity
from dassl.engine import TrainerX
from dassl.evaluation.result_record import (
    HYPERPARAMETERS_INHERITED,
    HYPERPARAMETERS_SEARCHED,
    read_result_record,
)
from dassl.metrics import compute_accuracy
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import load_pretrained_weights

from .class_subsets import NUM_IMAGENET_CLASSES, imagenet_rows
from .decoded import MB, DecodeOnceWrapper
from .encoder_seal import EncoderSeal
from .feature_store import FeatureStore, Namespace, store_root
from .features import (
    FEATURES,
    FeatureDataset,
    ImageFeatures,
    batching,
    encode_each,
    feature_loader,
    labels_of,
)
from .method_kind import MethodKind
from .protocol import EXACT, PLAIN, VIEWS, Protocol, protocol_of
from .views import SEEDING, AugmentedView

PRECISIONS = ("fp16", "fp32", "amp")


@register_cfg_extension
def _image_feature_keys(cfg: CN) -> None:
    # What train images look like to the method: exact (augmented anew every epoch, the published
    # protocol), views:V (V augmented views per image encoded once) or plain (un-augmented, encoded
    # once). See trainers/protocol.py.
    cfg.TRAINER.PROTOCOL = "exact"
    cfg.TRAINER.FEATURE_CACHE = CN()
    # Encode val/test images once per run and reuse the features (results are unchanged).
    cfg.TRAINER.FEATURE_CACHE.EVAL = True
    # The older spelling of TRAINER.PROTOCOL plain.
    cfg.TRAINER.FEATURE_CACHE.TRAIN = False
    # The feature store shared by every run (trainers/feature_store.py); results are unchanged.
    cfg.TRAINER.FEATURE_STORE = CN()
    cfg.TRAINER.FEATURE_STORE.ENABLED = True
    cfg.TRAINER.FEATURE_STORE.DIR = ""  # "": $TASKRES_FEATURE_STORE, else ~/.cache/taskres/features
    # exact protocol: memory (MB) for train images decoded once per run (trainers/decoded.py).
    cfg.TRAINER.DECODE_ONCE_MB = 2048


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


def report_features(split: str, encoded: int, stored: int) -> None:
    """The line every run logs per split it uses."""
    print(f"Image features ({split}): {encoded} encoded, {stored} from the feature store")


class FeatureClassifier(nn.Module):
    """Image encoder + method head. ``forward`` maps features [N, D] to logits [N, K]; images
    become features only through the two explicit ``encode_*`` methods."""

    def __init__(
        self,
        image_encoder: nn.Module,
        head: nn.Module,
        dtype: torch.dtype,
        encodes_with_grad: bool = False,
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.head = head
        self.dtype = dtype
        self.encodes_with_grad = encodes_with_grad  # the image tower learns (MethodKind)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """A train batch in one forward pass, as upstream encodes it (the exact protocol); with
        gradients when the image tower learns (and gradients are on), without otherwise."""
        with torch.set_grad_enabled(self.encodes_with_grad and torch.is_grad_enabled()):
            return self.image_encoder(images.type(self.dtype))

    @torch.no_grad()
    def encode_each(self, images: torch.Tensor) -> torch.Tensor:
        """Features that do not depend on the batch (``features.encode_each``): for the store."""
        return encode_each(self.encode_images, images)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # Heads compute in fp32 under every PREC (fp16 features included): cast once, here.
        return self.head(features.float())


class ClipTrainer(TrainerX):
    """Base trainer of CLIP methods. Subclasses set the class attributes and `build_head`."""

    LR_STEP = "epoch"  # the engine steps the schedule after each epoch's last batch (as CoOp)
    # What the method trains (trainers/method_kind.py); every method declares it.
    TRAINS: MethodKind
    CFG_NODE = ""  # the method's config node under TRAINER, holding at least PREC
    # Keys of that node with a fixed set of values, checked before any data or model is built.
    CFG_CHOICES: dict[str, tuple[str, ...]] = {"PREC": PRECISIONS}
    MODEL_NAME: str | None = None  # register_model name; None for methods with nothing to learn
    # Checkpoint tensors indexed by class: key -> the class axis (0 for [K, D], 1 for [N, K]).
    PER_CLASS_KEYS: dict[str, int] = {}
    FIXED_KEYS: tuple[str, ...] = ()  # checkpoint buffers rebuilt from class names, not loaded
    # Config keys an eval-only run takes from the trained run's config.yaml, beside the
    # backbone, INPUT and the method's node: those the learned state's shape or meaning depends
    # on (e.g. DATASET.NUM_SHOTS for a cache holding every train feature).
    EVAL_INHERITS: tuple[str, ...] = ()
    # Whether `fit` fills the head from the train features before the first epoch.
    FITS_ON_TRAIN_FEATURES = False
    # train.py flags of the method: "--flag": (KEY of that node it sets, help). A flag sets the
    # key's value (a string) after the config files, before the trailing KEY VALUE overrides.
    CLI_FLAGS: dict[str, tuple[str, str]] = {}

    def method_cfg(self, cfg: CN | None = None) -> CN:
        return (self.cfg if cfg is None else cfg).TRAINER[self.CFG_NODE]

    def check_cfg(self, cfg: CN) -> None:
        if not isinstance(getattr(self, "TRAINS", None), MethodKind):
            raise TypeError(
                f"{type(self).__name__} does not declare what it trains. Fix: set the class "
                "attribute TRAINS to one of "
                + ", ".join(f"MethodKind.{kind.name} ({kind.value})" for kind in MethodKind)
            )
        node = self.method_cfg(cfg)
        for key, choices in self.CFG_CHOICES.items():
            if node[key] not in choices:
                raise ValueError(
                    f"TRAINER.{self.CFG_NODE}.{key} is {node[key]!r}; choose one of "
                    f"{', '.join(choices)}"
                )
        protocol = self.train_protocol(cfg)  # refuses unknown protocols before any work
        if protocol.trains_on_features and self.TRAINS.image_tower_learns:
            raise ValueError(self._protocol_refusal(protocol))

    def _protocol_refusal(self, protocol: Protocol) -> str:
        return (
            f"TRAINER.PROTOCOL is {protocol}, which encodes the train images once, but "
            f"{type(self).__name__} trains the image tower, so its image features change every "
            "step. Fix: set TRAINER.PROTOCOL exact."
        )

    def check_backbone(self, backbone: ClipBackbone) -> None:
        """Refuse a backbone the method cannot run on, before any data is read (raise with the
        reason and the fix). Every backbone passes by default."""

    def build_head(self, backbone: ClipBackbone, classnames: list[str]) -> nn.Module:
        """The method: features [N, D] -> logits [N, K]. CLIP is on self.device, frozen; a
        tower method adds its parameters to the towers here (``learnable`` returns them)."""
        raise NotImplementedError

    def fit(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Fill the head from the train features [M, D] (fp32) and labels [M]: every view of
        every train image (M = V * N under views:V, else N un-augmented ones). Called before the
        first epoch of a fresh start when FITS_ON_TRAIN_FEATURES is set, never after a resume:
        the checkpoint holds the trained state."""

    def before_final_evaluation(self) -> None:
        """Runs right before the final test, in training runs (after the model to deploy is
        loaded) and in eval-only runs (after the checkpoint is loaded): e.g. a hyperparameter
        search on val."""

    def make_optimizer(self, learner: nn.Module) -> torch.optim.Optimizer:
        """The optimizer over the learnable part: OPTIM's. A method whose upstream uses other
        details (AdamW's eps, say) builds its own here."""
        return build_optimizer(learner, self.cfg.OPTIM)

    def make_lr_scheduler(self, optim: torch.optim.Optimizer) -> Any:
        """The schedule, stepped once per epoch, or once per batch with LR_STEP "iteration"
        (then a schedule that counts iterations: see ``iterations``)."""
        return build_lr_scheduler(optim, self.cfg.OPTIM)

    @property
    def iterations(self) -> int:
        """Optimizer steps of the whole run (batches per epoch x OPTIM.MAX_EPOCH)."""
        return len(self.train_loader_x) * self.cfg.OPTIM.MAX_EPOCH

    @classmethod
    def cli_flags(cls) -> dict[str, tuple[str, str]]:
        """The method's train.py flags: flag -> (full config key, help)."""
        return {
            flag: (f"TRAINER.{cls.CFG_NODE}.{key}", help)
            for flag, (key, help) in cls.CLI_FLAGS.items()
        }

    @classmethod
    def check_inputs(cls, cfg: CN) -> None:
        """The backbone's weights are on this machine (or are downloaded now, as loading would):
        a run checks it before it writes anything or loads CLIP."""
        find_weights(cfg.MODEL.BACKBONE.NAME)

    @classmethod
    def content_digests(cls, cfg: CN) -> dict[str, dict[str, str]]:
        """The backbone by its weights (``dassl.config.run_identity``): the same weights under
        another path are the same run, other weights under the same path are not."""
        digest = weights_digest(cfg.MODEL.BACKBONE.NAME)
        return {"MODEL.BACKBONE.NAME": {"weights": digest}} if digest else {}

    @classmethod
    def learns_per_class(cls, cfg: CN) -> bool:
        """Whether the learned weights hold one row per class, so that they only make sense on
        the classes they were trained on (train.py refuses evaluating them on other classes)."""
        return bool(cls.PER_CLASS_KEYS)

    @classmethod
    def train_protocol(cls, cfg: CN) -> Protocol:
        """What the train loader serves: the configured protocol (a method whose published
        protocol differs says how it reads "exact")."""
        return protocol_of(cfg)

    def learnable(self) -> nn.Module | None:
        """The part of the head that is optimised, registered and checkpointed."""
        return None if self.MODEL_NAME is None else self.head

    # ---- data: the protocol decides what the train loader serves ---------------------------

    def build_data_loader(self) -> None:
        """The engine's loaders, with the train loader the protocol asks for: images decoded
        once (exact) or features of the train images, filled in by ``before_train``. CLIP is
        loaded first: the transforms follow the backbone's preprocessing."""
        print(f"Loading CLIP (backbone: {self.cfg.MODEL.BACKBONE.NAME})")
        self.backbone = load_backbone(self.cfg.MODEL.BACKBONE.NAME)
        self.check_backbone(self.backbone)
        self.cfg = follow_backbone_input(self.cfg, self.backbone)
        super().build_data_loader()
        cfg = self.cfg
        self.protocol: Protocol = self.train_protocol(cfg)
        print(f"Training protocol: {self.protocol}")
        self._eval_loaders: dict[str, DataLoader] = {}
        self._train_images_encoded = 0
        image_loader = self.dm.train_loader_x
        train_x = self.dm.dataset.train_x
        if self.protocol.trains_on_features:
            self.train_set = FeatureDataset(labels_of(train_x))
            self.train_loader_x = feature_loader(
                self.train_set,
                image_loader.batch_size,
                cfg.DATALOADER.TRAIN_X.SAMPLER,
                drop_last=image_loader.drop_last,
            )
        elif cfg.TRAINER.DECODE_ONCE_MB > 0:
            self.train_loader_x = build_data_loader(
                cfg,
                sampler_type=cfg.DATALOADER.TRAIN_X.SAMPLER,
                data_source=train_x,
                batch_size=cfg.DATALOADER.TRAIN_X.BATCH_SIZE,
                n_domain=cfg.DATALOADER.TRAIN_X.N_DOMAIN,
                n_ins=cfg.DATALOADER.TRAIN_X.N_INS,
                tfm=image_loader.dataset.transform,
                is_train=True,
                dataset_wrapper=DecodeOnceWrapper,
            )

    def build_model(self) -> None:
        cfg = self.cfg
        backbone = self.backbone
        self.precision = resolve_precision(self.method_cfg().PREC, self.device)
        if self.precision == "fp16":
            backbone.half_()
        print("Turning off gradients in both the image and the text encoder")
        backbone.requires_grad_(False)
        backbone.eval().to(self.device)
        self.image_tower_seal = EncoderSeal(backbone.visual)
        self.clip_model = backbone.model
        self.logit_scale = backbone.logit_scale

        print(f"Building {type(self).__name__} head ({self.TRAINS.value})")
        self.head = self.build_head(backbone, self.dm.dataset.classnames).to(self.device)
        learner = self.learnable()
        if learner is not None:
            learner.requires_grad_(True)  # what the method learns, tower parameters included
        self.kind = self._effective_kind()
        self.model = FeatureClassifier(
            backbone.visual, self.head, backbone.dtype, self.kind.image_tower_learns
        )
        self.image_features = self._build_image_features()

        if learner is not None:
            if cfg.MODEL.INIT_WEIGHTS:
                load_pretrained_weights(learner, cfg.MODEL.INIT_WEIGHTS)
            # Only the method's own parameters reach the optimizer.
            self.optim = self.make_optimizer(learner)
            self.sched = self.make_lr_scheduler(self.optim)
            self.register_model(self.MODEL_NAME, learner, self.optim, self.sched)
        if self.precision == "amp":
            # On the run's device: a "cuda" scaler on CPU disables itself and steps unscaled.
            self.scaler = torch.amp.GradScaler(self.device.type)

    def _effective_kind(self) -> MethodKind:
        """``TRAINS``, or an image-tower kind when the built method changed the image tower
        without declaring it (its features are then treated as changing, and said so)."""
        declared = self.TRAINS
        changed = self.image_tower_seal.broken()
        if changed is None or declared.image_tower_learns:
            return declared
        kind = declared.with_image_tower_learning()
        print(
            f"Warning: {type(self).__name__} declares TRAINS = MethodKind.{declared.name}, but its "
            f"image tower is not the loaded one ({changed}). Its image features are computed "
            "live for every evaluation and never read from or written to the feature store. "
            f"Fix: declare TRAINS = MethodKind.{kind.name}."
        )
        if self.protocol.trains_on_features:
            raise ValueError(self._protocol_refusal(self.protocol))
        return kind

    # ---- image -> features, through the feature store --------------------------------------

    def _build_image_features(self) -> ImageFeatures:
        cfg = self.cfg
        namespace = None
        if cfg.TRAINER.FEATURE_STORE.ENABLED and self.kind.image_features_fixed:
            store = FeatureStore(store_root(cfg.TRAINER.FEATURE_STORE.DIR))
            print(f"Feature store: {store.root}")
            namespace = self._namespaces(store)
        return ImageFeatures(
            encode=self._encode_to_device,
            dataset_root=cfg.DATASET.ROOT,
            group=cfg.DATASET.NAME,
            batch_size=cfg.DATALOADER.TEST.BATCH_SIZE,
            num_workers=effective_num_workers(cfg.DATALOADER.NUM_WORKERS),
            namespace=namespace,
            about={"dataset": cfg.DATASET.NAME, "backbone": cfg.MODEL.BACKBONE.NAME},
            seal=self.image_tower_seal,
        )

    def _namespaces(self, store: FeatureStore) -> Callable[[dict[str, Any]], Namespace]:
        """View identity -> the store namespace of what computes the features: this backbone's
        weights (by checksum) and architecture, the precision and the device. The checksum is
        computed (once per weights file) on first use."""
        checksum: list[str] = []

        def namespace(view: dict[str, Any]) -> Namespace:
            if not checksum:
                weights = self.backbone.weights_file
                checksum.append(
                    store.backbone_checksum(weights)
                    if weights is not None
                    else self.backbone.weights_digest()
                )
            identity = {
                "backbone_sha256": checksum[0],
                "architecture": self.backbone.architecture(),
                "precision": str(self.backbone.dtype).replace("torch.", ""),
                "device": self.device.type,
                "batching": batching(self.device),
                "view": view,
            }
            return store.namespace(identity)

        return namespace

    def _encode_to_device(self, images: torch.Tensor) -> torch.Tensor:
        # Encoding a large split takes minutes: a Ctrl-C or SIGTERM must not wait for its end.
        self.stop_if_interrupted("the encoding of images for the feature cache")
        return self.model.encode_each(images.to(self.device))

    def eval_view(self) -> dict[str, Any]:
        return {"kind": "test", **eval_view_identity(self.cfg)}

    def augmented_view(self, index: int) -> dict[str, Any]:
        """A train view's identity: every INPUT setting, the view index and the seeding rule."""
        return {
            "kind": "augmented",
            "input": dict(self.cfg.INPUT),
            "index": index,
            "seeding": SEEDING,
        }

    def encode_data_source(
        self, data_source: list[Datum], split: str | None = None, use_store: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and labels of `data_source` under the test transform (no augmentation);
        `split` names it in the log (default: the dataset split it is, else "images")."""
        if split is None:
            dataset = self.dm.dataset
            splits = {"train": dataset.train_x, "val": dataset.val, "test": dataset.test}
            split = next((k for k, v in splits.items() if v is data_source), "images")
        transform = self.dm.test_loader.dataset.transform
        images = DatasetWrapper(self.cfg, data_source, transform=transform)
        features, encoded, stored = self.image_features(
            images, data_source, self.eval_view(), split, use_store
        )
        report_features(split, encoded, stored)
        return features, labels_of(data_source)

    def trained_winner(self) -> dict[str, Any] | None:
        """In an evaluation (``--eval-only --model-dir D``) of a dataset without a val split of
        its own (ImageNet-V2/Sketch/A/R; ImageNet, whose val is its test set), the
        hyperparameters the trained run in D searched, recorded as inherited: searching again
        would read the test split. None otherwise: the method searches on val."""
        if not self.eval_only or not val_reads_test(self.dm.dataset):
            return None
        model_dir = self.cfg.RUN.MODEL_DIR
        searched = (read_result_record(model_dir) or {}).get("hyperparameters") or {}
        if searched.get("rule") not in (HYPERPARAMETERS_SEARCHED, HYPERPARAMETERS_INHERITED):
            return None
        self.hyperparameter_search = {**searched, "rule": HYPERPARAMETERS_INHERITED}
        self.hyperparameter_search.setdefault("from", model_dir)
        print(f"Hyperparameters of the trained run in {model_dir}: {searched['winner']}")
        return dict(searched["winner"])

    def val_features(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Features [N, D] (fp32, on the device) and labels [N] of the val split, for a search
        of hyperparameters. Never the test split: a dataset without val, or whose val images
        are test images, is refused, since a search there would select on the data the result
        is then scored on; TEST.SELECT_ON_TEST allows it (the test split stands in for a
        missing val split) and the result record says so."""
        if self.cfg.DATASET.VAL_USE != "select":
            raise ValueError(
                f"{type(self).__name__} searches its hyperparameters on the val split, but "
                f"DATASET.VAL_USE {self.cfg.DATASET.VAL_USE} is the validation-free protocol "
                "(no val split). Fix: give the hyperparameters in the config, or DATASET.VAL_USE "
                "select."
            )
        if self.selection_split()[0] == "test":
            self.allow_selection_on_test(f"{type(self).__name__} searches its hyperparameters")
        dataset = self.dm.dataset
        split, source = ("val", dataset.val) if dataset.val else ("test", dataset.test)
        features, labels = self.encode_data_source(source, split)
        return features.float().to(self.device), labels.to(self.device)

    def train_view_features(self, protocol: Protocol) -> torch.Tensor:
        """Features [V, N, D] of the train images under ``protocol`` (views or plain)."""
        train_x = self.dm.dataset.train_x
        if protocol.kind == PLAIN:
            return self.encode_data_source(train_x, "train")[0][None]
        transform = self.dm.train_loader_x.dataset.transform
        views, encoded, stored = [], 0, 0
        for index in range(protocol.views):
            images = AugmentedView(train_x, transform, self.cfg.DATASET.ROOT, index)
            features, n, m = self.image_features(
                images, train_x, self.augmented_view(index), "train"
            )
            views.append(features)
            encoded, stored = encoded + n, stored + m
        report_features("train", encoded, stored)
        return torch.stack(views)

    def eval_features_fixed(self) -> bool:
        """Whether eval features may be kept across epochs: the image tower does not learn and
        is still the loaded one."""
        return self.kind.image_features_fixed and self.image_tower_seal.broken() is None

    def eval_loader(self, split: str | None = None) -> tuple[str, DataLoader]:
        """The engine's choice of split, as a loader of its features. With
        TRAINER.FEATURE_CACHE.EVAL they are kept for the run (and the store serves them) while
        the image tower is fixed; otherwise every evaluation encodes its images again, with the
        tower as it is then. Either way the loader takes one draw of torch's global generator
        per evaluation, as upstream's image loader does."""
        split, image_loader = super().eval_loader(split)
        keep = self.cfg.TRAINER.FEATURE_CACHE.EVAL and self.eval_features_fixed()
        if not keep:
            self._eval_loaders.clear()
        loader = self._eval_loaders.get(split)
        if loader is None:
            data_source = image_loader.dataset.data_source
            features, labels = self.encode_data_source(data_source, split, use_store=keep)
            loader = feature_loader(
                FeatureDataset(labels, features),
                image_loader.batch_size,
                self.cfg.DATALOADER.TEST.SAMPLER,
            )
            if keep:
                self._eval_loaders[split] = loader
        return split, loader

    def before_train(self) -> None:
        super().before_train()
        if self.protocol.trains_on_features:
            self.train_set.set_features(self.train_view_features(self.protocol))
        else:
            images = self.train_loader_x.dataset
            if isinstance(images, DecodeOnceWrapper):
                held = images.decode()
                print(
                    f"Decoded {len(images.decoded)} of {len(images)} train images once "
                    f"({held / MB:.1f} MB; TRAINER.DECODE_ONCE_MB "
                    f"{self.cfg.TRAINER.DECODE_ONCE_MB})"
                )
        if self.FITS_ON_TRAIN_FEATURES and self.start_epoch == 0:
            print(f"Fitting the {type(self).__name__} head on the train features (fresh start)")
            self.fit(*self.fit_features())

    def fit_features(self) -> tuple[torch.Tensor, torch.Tensor]:
        """What ``fit`` receives: features [M, D] (fp32, on the device) and labels [M] of every
        train view the protocol made (the un-augmented images under exact)."""
        if self.protocol.trains_on_features:
            views = self.train_set.features  # [V, N, D]
            features = views.reshape(-1, views.shape[-1])  # [V * N, D], view-major
            labels = self.train_set.labels.repeat(views.shape[0])
        else:
            features, labels = self.encode_data_source(self.dm.dataset.train_x, "train")
        return features.float().to(self.device), labels.to(self.device)

    def test(self, split: str | None = None) -> float:
        """The engine's test; without a split it is the run's final evaluation (after
        training, and in eval-only runs), preceded by ``before_final_evaluation``."""
        if split is None:
            self.before_final_evaluation()
        return super().test(split)

    def before_epoch(self) -> None:
        super().before_epoch()
        if self.protocol.kind == VIEWS:
            # One view per image for this epoch, from the run's own generator (trainers/views.py).
            self.train_set.choose_views(torch.randint(self.protocol.views, (len(self.train_set),)))

    def after_train(self) -> None:
        if self.protocol.kind == EXACT:
            report_features("train", self._train_images_encoded, 0)
        super().after_train()

    # ---- features -> logits, the training step -------------------------------------------

    def batch_features(self, batch: dict, train: bool) -> torch.Tensor:
        """A batch's features: a feature batch's own, or its images encoded (in one forward for a
        train batch, as upstream; batch-independent otherwise)."""
        if FEATURES in batch:
            return batch[FEATURES].to(self.device)
        images = batch["img"].to(self.device)
        if not train:
            return self.model.encode_each(images)
        self._train_images_encoded += len(images)
        return self.model.encode_images(images)

    def parse_batch_train(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return self.batch_features(batch, train=True), batch["label"].to(self.device)

    def parse_batch_test(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return self.batch_features(batch, train=False), batch["label"].to(self.device)

    def model_inference(self, input: torch.Tensor) -> torch.Tensor:
        return self.model(input)

    def training_autocast(self) -> torch.autocast:
        """fp16 autocast of a train step under PREC amp (a no-op otherwise)."""
        return torch.autocast(
            self.device.type, dtype=torch.float16, enabled=self.scaler is not None
        )

    def training_loss(
        self, features: torch.Tensor, label: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss of a train batch (features [N, D], labels [N]) and the logits [N, K] its
        accuracy is read from: cross-entropy of the head's logits. A method with another
        objective (a regulariser beside it) overrides this."""
        output = self.model(features)
        return F.cross_entropy(output, label), output

    def forward_backward(self, batch: dict) -> dict[str, float]:
        with self.training_autocast():
            # Under amp the images of a train batch are encoded under autocast too, as upstream.
            features, label = self.parse_batch_train(batch)
            loss, output = self.training_loss(features, label)
        self.model_backward_and_update(loss)
        return {"loss": loss.item(), "acc": compute_accuracy(output, label)[0].item()}

    # ---- checkpoints: the engine's load_model, adapted to CLIP heads -----------------------

    def loading_line(self, name: str, model_path: str, checkpoint: dict[str, Any]) -> str:
        """Upstream CoOp's line, as its method repositories log it."""
        return f'Loading weights to {name} from "{model_path}" (epoch = {checkpoint["epoch"]})'

    def adapt_state_dict(self, name: str, state_dict: dict[str, Any]) -> dict[str, Any]:
        """Drop buffers rebuilt from class names; keep ImageNet-A/R's classes of ImageNet ones
        (along each key's class axis); refuse tensors of another shape, naming the cause."""
        for key in self.FIXED_KEYS:
            state_dict.pop(key, None)
        state_dict = self.select_imagenet_classes(state_dict)
        own = self.get_model(name).state_dict()
        for key, tensor in state_dict.items():
            if key in own and tuple(tensor.shape) != tuple(own[key].shape):
                raise RuntimeError(self._shape_mismatch(key, tensor.shape, own[key].shape))
        return state_dict

    def select_imagenet_classes(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        """On ImageNet-A/R, the dataset's 200 classes of each ImageNet (1000-class) tensor,
        along the class axis PER_CLASS_KEYS declares for its key; elsewhere unchanged."""
        rows = imagenet_rows(self.cfg.DATASET.NAME)
        if rows is None:
            return state_dict
        for key, axis in self.PER_CLASS_KEYS.items():
            tensor = state_dict.get(key)
            if tensor is not None and tensor.shape[axis] == NUM_IMAGENET_CLASSES:
                state_dict[key] = tensor.index_select(axis, torch.tensor(rows))
        return state_dict

    def _shape_mismatch(self, key: str, saved: torch.Size, wanted: torch.Size) -> str:
        """Why a checkpoint tensor has another shape than this run's, as far as it can tell."""
        head = f"The checkpoint's {key} has shape {tuple(saved)}; this run's has {tuple(wanted)}. "
        axis = self.PER_CLASS_KEYS.get(key)
        if axis is not None and saved[axis] != wanted[axis]:
            return head + (
                f"It was trained on another dataset or class subset: it holds {saved[axis]} "
                f"classes and DATASET.NAME {self.cfg.DATASET.NAME} (with "
                f"DATASET.SUBSAMPLE_CLASSES {self.cfg.DATASET.SUBSAMPLE_CLASSES}) has "
                f"{wanted[axis]}. Fix: evaluate on the classes it was trained on."
            )
        if self.EVAL_INHERITS:
            values = ", ".join(f"{k} {self._cfg_value(k)}" for k in self.EVAL_INHERITS)
            return head + (
                f"Its shape follows the trained run's {', '.join(self.EVAL_INHERITS)} (here: "
                f"{values}). Fix: pass --model-dir with the trained run's folder, so eval-only "
                "takes them from its config.yaml, and do not override them."
            )
        return head + (
            "It was trained with another backbone (feature width) or method settings. Fix: "
            "evaluate it with the backbone and TRAINER keys it was trained with."
        )

    def _cfg_value(self, key: str) -> Any:
        node = self.cfg
        for part in key.split("."):
            node = node[part]
        return node

    def check_loaded_keys(
        self, name: str, model_path: str, missing: list[str], unexpected: list[str]
    ) -> None:
        """The fixed buffers are rebuilt from class names, so a checkpoint need not hold them."""
        missing = [k for k in missing if k not in self.FIXED_KEYS]
        super().check_loaded_keys(name, model_path, missing, unexpected)
