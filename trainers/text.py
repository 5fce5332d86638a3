"""CLIP's text side, written once for every method, on any backbone (`clip.backbone`).

`TextEncoder` runs the text tower on prompt *embeddings* (so CoOp can splice learned context
vectors in and backpropagate to them); `encode_class_prompts` computes the fixed text embeddings
the other methods hold in buffers, at build time, in batches and without gradients.
"""

import torch
from torch import nn

from clip.backbone import ClipBackbone


class TextEncoder(nn.Module):
    """The backbone's text tower, taking token embeddings instead of token ids.

    The backbone is shared, not copied, so it stays frozen with the rest of CLIP.
    """

    def __init__(self, backbone: ClipBackbone) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, prompts: torch.Tensor, tokenized_prompts: torch.Tensor) -> torch.Tensor:
        """prompts: [N, L, width] embeddings; tokenized_prompts: [N, L] ids -> [N, embed_dim]."""
        return self.backbone.encode_embeddings(prompts, tokenized_prompts)


def spaced(classnames: list[str]) -> list[str]:
    """Class names as CoOp, CLIP-Adapter and zero-shot CLIP put them in prompts ("red_panda" ->
    "red panda"). TaskRes's base uses the names as given, as upstream does."""
    return [name.replace("_", " ") for name in classnames]


@torch.no_grad()
def encode_texts(
    backbone: ClipBackbone,
    texts: list[str],
    text_projection: torch.Tensor | None = None,
    batch_size: int = 256,
    full_context: bool = False,
) -> torch.Tensor:
    """Embeddings [N, embed_dim] of `texts` (not normalised), in CLIP's dtype, on CLIP's device;
    `text_projection` replaces the tower's projection matrix (TaskRes's enhanced base);
    `full_context` as `ClipBackbone.encode_text`."""
    chunks = []
    for start in range(0, len(texts), batch_size):
        tokens = backbone.tokenize(texts[start : start + batch_size]).to(backbone.device)
        chunks.append(backbone.encode_text(tokens, text_projection, full_context))
    return torch.cat(chunks)


def encode_class_prompts(
    backbone: ClipBackbone,
    classnames: list[str],
    templates: list[str],
    text_projection: torch.Tensor | None = None,
    full_context: bool = False,
) -> torch.Tensor:
    """Embeddings [K, T, embed_dim] of every template filled with every class name."""
    texts = [template.format(name) for name in classnames for template in templates]
    features = encode_texts(backbone, texts, text_projection, full_context=full_context)
    return features.view(len(classnames), len(templates), -1)  # [K*T, D] -> [K, T, D]


def normalize(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)
