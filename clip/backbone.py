"""One interface to a CLIP backbone, whoever trained it: the seam between the methods and CLIP.

Every method talks to `ClipBackbone` only: the frozen image encoder and its preprocessing, the
tokenizer, the text tower (whole, or from token embeddings for CoOp), the logit scale, fp16 and
the identity of the weights. `OpenAIBackbone` wraps this package's CLIP (OpenAI's weights, or any
checkpoint in their layout); `OpenClipBackbone` wraps an `open_clip` model. `load_backbone` picks
one from MODEL.BACKBONE.NAME, so no method branches on where its CLIP came from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import openclip
from .clip import (
    CLIP_MEAN,
    CLIP_STD,
    _read_checkpoint,
    remembered_sha256,
    resolve_checkpoint,
    tokenize,
)
from .model import CLIP, build_model, convert_weights, text_length


class TextTowerError(RuntimeError):
    """The text tower cannot do what a method asks (e.g. run from token embeddings for CoOp)."""


@dataclass(frozen=True)
class Preprocess:
    """The image preprocessing a backbone was trained with (what INPUT.* should say)."""

    size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str
    resize_mode: str = "shortest"  # shorter side to size, centre crop: Dassl's test transform


class ClipBackbone(nn.Module):
    """A frozen CLIP as every method sees it. Subclasses wrap one model family."""

    def __init__(
        self, model: nn.Module, name: str, weights_file: Path | None, preprocess: Preprocess
    ) -> None:
        super().__init__()
        self.model = model
        self.name = name
        self.weights_file = weights_file
        self.preprocess = preprocess
        # Read in fp32, before any fp16 conversion, so it is the same under every PREC.
        self.logit_scale = model.logit_scale.exp().item()

    # ---- image side ------------------------------------------------------------------------

    @property
    def visual(self) -> nn.Module:
        """The image encoder: images [N, 3, H, W] in `dtype` -> features [N, embed_dim]."""
        return self.model.visual

    @property
    def dtype(self) -> torch.dtype:
        """The dtype images are cast to before the image encoder."""
        raise NotImplementedError

    @property
    def embed_dim(self) -> int:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return self.model.logit_scale.device

    # ---- text side -------------------------------------------------------------------------

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """Token ids [N, context_length] in the layout this text tower was trained with."""
        raise NotImplementedError

    def encode_text(
        self,
        tokens: torch.Tensor,
        text_projection: torch.Tensor | None = None,
        full_context: bool = False,
    ) -> torch.Tensor:
        """Text features [N, embed_dim] (not normalised); `text_projection` [width, embed_dim]
        replaces the tower's projection matrix (TaskRes's enhanced base). `full_context` runs
        the padding after the end tokens too, as OpenAI's original code: the features are the
        same, but in fp16 only that matches its rounding bit for bit (KgCoOp's reference)."""
        raise NotImplementedError

    @property
    def text_projection(self) -> torch.Tensor | None:
        """The text tower's projection as a [width, embed_dim] matrix, None if it has none."""
        raise NotImplementedError

    @property
    def text_projection_bias(self) -> torch.Tensor | None:
        """The bias [embed_dim] added after the projection (OpenCLIP's biased ones), or None."""
        return None

    def encode_text_pooled(self, tokens: torch.Tensor) -> torch.Tensor:
        """The text tower's output before its projection [N, width]: what a tuned projection
        (TextProjectionTuning) maps to text features."""
        raise NotImplementedError

    # What CoOp needs: token embeddings in, text features out.

    @property
    def token_embedding(self) -> nn.Embedding:
        raise NotImplementedError

    @property
    def text_width(self) -> int:
        """The width of the token embeddings (CoOp's context vectors)."""
        return self.token_embedding.weight.shape[1]

    def encode_embeddings(self, prompts: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Text features [N, embed_dim] of token embeddings `prompts` [N, L, width]; `tokens`
        [N, L] are the ids they stand for (they locate the end token and the padding)."""
        raise NotImplementedError

    # ---- precision and identity ------------------------------------------------------------

    def half_(self) -> None:
        """Convert the weights to the family's fp16 layout, in place (PREC fp16)."""
        raise NotImplementedError

    def config(self) -> dict[str, Any] | None:
        """The family's description of the architecture the weights run in; None if unknown."""
        raise NotImplementedError

    def architecture(self) -> dict[str, Any]:
        """What runs the weights, for the feature store's key (weights alone do not say: OpenCLIP's
        ViT-B-32 and ViT-B-32-quickgelu read one file): the class, the family's config and a
        digest of the image tower's module tree (classes, sizes, activations, from its repr)."""
        tree = hashlib.sha256(repr(self.visual).encode()).hexdigest()
        return {"class": type(self).__name__, "config": self.config(), "image_tower": tree}

    def weights_digest(self) -> str:
        """SHA-256 identifying the weights: of the file they were read from, or, for a model
        built in memory, of its state dict (names, dtypes, shapes and bytes)."""
        if self.weights_file is not None:
            return remembered_sha256(self.weights_file)
        digest = hashlib.sha256()
        for key, tensor in sorted(self.model.state_dict().items()):
            flat = tensor.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{key}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
            digest.update(flat.view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()


class OpenAIBackbone(ClipBackbone):
    """This package's CLIP: OpenAI's checkpoints and any state dict in their layout."""

    model: CLIP

    def __init__(self, model: CLIP, name: str = "", weights_file: Path | None = None) -> None:
        preprocess = self.preprocess_for(model.visual.input_resolution)
        super().__init__(model, name, weights_file, preprocess)

    @staticmethod
    def preprocess_for(size: int) -> Preprocess:
        """OpenAI's preprocessing at `size` px: bicubic resize, centre crop, CLIP's mean/std."""
        return Preprocess((size, size), CLIP_MEAN, CLIP_STD, "bicubic")

    @classmethod
    def load(cls, name: str) -> OpenAIBackbone:
        path = resolve_checkpoint(name)
        return cls(build_model(_read_checkpoint(path)), name, path)

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @property
    def embed_dim(self) -> int:
        return self.model.visual.output_dim

    def config(self) -> dict[str, Any]:
        return dict(self.model.architecture)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return tokenize(texts, context_length=self.model.context_length)

    @property
    def text_projection(self) -> torch.Tensor:
        return self.model.text_projection

    @property
    def token_embedding(self) -> nn.Embedding:
        return self.model.token_embedding

    def encode_text(
        self,
        tokens: torch.Tensor,
        text_projection: torch.Tensor | None = None,
        full_context: bool = False,
    ) -> torch.Tensor:
        embeddings = self.token_embedding(tokens)
        return self._encode(embeddings, tokens, text_projection, full_context)

    def encode_embeddings(self, prompts: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self._encode(prompts, tokens, None)

    def encode_text_pooled(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._pool(self.token_embedding(tokens), tokens)

    def _encode(
        self,
        prompts: torch.Tensor,
        tokens: torch.Tensor,
        text_projection: torch.Tensor | None,
        full_context: bool = False,
    ) -> torch.Tensor:
        own = self.model.text_projection
        projection = own if text_projection is None else text_projection.to(own.device, own.dtype)
        return self._pool(prompts, tokens, full_context) @ projection

    def _pool(
        self, prompts: torch.Tensor, tokens: torch.Tensor, full_context: bool = False
    ) -> torch.Tensor:
        """The end token's output [N, width] of prompts [N, L, width]."""
        model = self.model
        # Drop the padding after the last end token (as CLIP.encode_text): [N, L] -> [N, length].
        length = tokens.shape[1] if full_context else text_length(tokens)
        prompts, tokens = prompts[:, :length], tokens[:, :length]
        x = prompts.type(self.dtype) + model.positional_embedding[:length].type(self.dtype)
        x = model.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)  # NLD -> LND -> NLD
        x = model.ln_final(x).type(self.dtype)
        # The end-of-text token has the largest id: its output summarises the prompt.
        return x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]

    def half_(self) -> None:
        convert_weights(self.model)


class OpenClipBackbone(ClipBackbone):
    """An `open_clip` model: built-in towers (CLIP, SigLIP, EVA, CoCa), timm image towers and
    Hugging Face text towers. Its own `encode_text` computes the fixed text features."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        name: str = "",
        weights_file: Path | None = None,
        model_cfg: dict[str, Any] | None = None,
    ) -> None:
        """``model_cfg``: OpenCLIP's model config it was built from (None: built elsewhere)."""
        config = openclip.import_open_clip().get_model_preprocess_cfg(model)
        size = config["size"]
        preprocess = Preprocess(
            size=(size, size) if isinstance(size, int) else tuple(size),
            mean=tuple(config["mean"]),
            std=tuple(config["std"]),
            interpolation=config.get("interpolation", "bicubic"),
            resize_mode=config.get("resize_mode", "shortest"),
        )
        super().__init__(model, name, weights_file, preprocess)
        self.tokenizer = tokenizer
        self.model_cfg = model_cfg
        self._dtype = torch.float32

    @classmethod
    def load(cls, name: str) -> OpenClipBackbone:
        loaded = openclip.load_openclip(name)
        return cls(loaded.model, loaded.tokenizer, name, loaded.weights, loaded.model_cfg)

    def config(self) -> dict[str, Any] | None:
        """OpenCLIP's model config (``quick_gelu`` included), its model class and version."""
        if self.model_cfg is None:
            return None
        open_clip = openclip.import_open_clip()
        return {
            "model_cfg": self.model_cfg,
            "model_class": type(self.model).__name__,
            "open_clip": open_clip.__version__,
        }

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @cached_property
    def embed_dim(self) -> int:
        """Read off one text feature: OpenCLIP's towers keep the width in different places."""
        with torch.no_grad():
            return self.encode_text(self.tokenize([""]).to(self.device)).shape[-1]

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(texts)

    @property
    def tower(self) -> nn.Module:
        return openclip.text_tower(self.model)

    @property
    def _projection_module(self) -> nn.Module | torch.Tensor | None:
        return getattr(self.tower, "text_projection", None)

    @property
    def text_projection(self) -> torch.Tensor | None:
        own = self._projection_module
        if isinstance(own, nn.Linear):
            return own.weight.t()
        return own if isinstance(own, torch.Tensor) else None

    @property
    def text_projection_bias(self) -> torch.Tensor | None:
        return getattr(self._projection_module, "bias", None)

    def encode_text(
        self,
        tokens: torch.Tensor,
        text_projection: torch.Tensor | None = None,
        full_context: bool = False,
    ) -> torch.Tensor:
        # OpenCLIP's text tower always runs the full context: `full_context` changes nothing.
        if text_projection is None:
            return self.model.encode_text(tokens)
        return self._encode(self._checked_tower().token_embedding(tokens), tokens, text_projection)

    def encode_text_pooled(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._pool(self._checked_tower().token_embedding(tokens), tokens)

    def _checked_tower(self) -> nn.Module:
        """The text tower, when it can run from token embeddings in CLIP's token layout."""
        open_clip = openclip.import_open_clip()
        if not openclip.is_builtin_text_tower(self.tower):
            raise TextTowerError(
                f"The text tower of backbone {self.name!r} is a {type(self.tower).__name__} "
                "(a Hugging Face model behind OpenCLIP), which takes token ids only: it exposes "
                "no token embeddings to learn prompt vectors in, nor a way to run from them. "
                "Fix: use a backbone with OpenCLIP's built-in text transformer (e.g. "
                "openclip:ViT-B-16/laion2b_s34b_b88k), or a method that needs only the text "
                "features (TaskRes, CLIP-Adapter, zero-shot, linear probe)."
            )
        if not isinstance(self.tokenizer, open_clip.SimpleTokenizer):
            raise TextTowerError(
                f"Backbone {self.name!r} tokenizes with {type(self.tokenizer).__name__}, not "
                "CLIP's BPE tokenizer, so its prompts lack the [SOS] words [EOS] layout CoOp "
                "splices its context into (SigLIP's SentencePiece tokenizers, for one). Fix: use "
                "a backbone with CLIP's tokenizer, or a method that needs only the text features."
            )
        return self.tower

    @property
    def token_embedding(self) -> nn.Embedding:
        return self._checked_tower().token_embedding

    def encode_embeddings(self, prompts: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self._encode(prompts, tokens, None)

    def _encode(
        self, prompts: torch.Tensor, tokens: torch.Tensor, text_projection: torch.Tensor | None
    ) -> torch.Tensor:
        """OpenCLIP's text forward (`TextTransformer.forward`, `CLIP.encode_text`), starting
        from token embeddings instead of ids."""
        return self._project(self._pool(prompts, tokens), text_projection)

    def _pool(self, prompts: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The pooled output [N, width] of the text tower on token embeddings [N, L, width]."""
        tower = self._checked_tower()
        pool = openclip.import_open_clip().transformer.text_global_pool
        cast = tower.transformer.get_cast_dtype()
        x = prompts.to(cast)
        length = x.shape[1]
        cls_emb = getattr(tower, "cls_emb", None)
        if cls_emb is not None:  # CoCa appends a class token
            x = torch.cat([x, cls_emb.view(1, 1, -1).expand(x.shape[0], -1, -1)], dim=1)
            length += 1
        attn_mask = tower.attn_mask
        if getattr(tower, "use_pad_mask", False) or cls_emb is not None:
            pad_mask = tower._build_additive_mask(tokens, length, x.dtype)
            attn_mask = pad_mask if attn_mask is None else attn_mask[:length, :length] + pad_mask
        x = x + tower.positional_embedding[:length].to(cast)
        x = tower.transformer(x, attn_mask=attn_mask)
        if cls_emb is not None:
            pooled = tower.ln_final(x[:, -1])
        else:
            pool_type = getattr(tower, "pool_type", None) or tower.text_pool_type
            eos_id = getattr(tower, "eos_id", None) or getattr(tower, "text_eos_id", None)
            pooled = pool(tower.ln_final(x), tokens, pool_type, eos_token_id=eos_id)
        return pooled

    def _project(self, pooled: torch.Tensor, text_projection: torch.Tensor | None) -> torch.Tensor:
        own = self._projection_module
        if text_projection is not None:
            matrix = self.text_projection
            projected = pooled @ text_projection.to(matrix.device, matrix.dtype)
            bias = getattr(own, "bias", None)
            return projected if bias is None else projected + bias
        if own is None:
            return pooled
        return own(pooled) if isinstance(own, nn.Linear) else pooled @ own

    def half_(self) -> None:
        openclip.half_(self.model)
        self._dtype = torch.float16


def load_backbone(name: str) -> ClipBackbone:
    """The backbone MODEL.BACKBONE.NAME names: an OpenCLIP name (openclip:, hf-hub:,
    local-dir:) or an OpenAI model name or checkpoint path; fp32, on the CPU, eval mode."""
    if openclip.is_openclip_name(name):
        return OpenClipBackbone.load(name)
    return OpenAIBackbone.load(name)


def find_weights(name: str, download: bool = True) -> Path:
    """The weights file MODEL.BACKBONE.NAME names, found as ``load_backbone`` finds it; with
    ``download=False`` only on this machine (WeightsNotFoundError, or OpenClipMissingError,
    says why not), which a sweep checks before it launches a cell."""
    if openclip.is_openclip_name(name):
        return openclip.locate(name, download=download).weights
    return resolve_checkpoint(name, download=download)
