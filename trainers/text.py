"""CLIP's text side, written once for every method.

`TextEncoder` runs CLIP's text transformer on prompt *embeddings* (so CoOp can splice learned
context vectors in and backpropagate to them); `encode_class_prompts` computes the fixed text
embeddings the other methods hold in buffers, at build time, in batches and without gradients.
"""

import torch
from torch import nn

from clip import clip
from clip.model import text_length


class TextEncoder(nn.Module):
    """Text transformer of a CLIP model, taking token embeddings instead of token ids.

    `text_projection` may replace CLIP's own (TaskRes's enhanced base); the CLIP modules are shared,
    not copied, so they stay frozen with the rest of CLIP.
    """

    def __init__(self, clip_model: nn.Module, text_projection: torch.Tensor | None = None) -> None:
        super().__init__()
        self.transformer = clip_model.transformer
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.dtype = clip_model.dtype
        if text_projection is None:
            self.text_projection = clip_model.text_projection
        else:
            # On CLIP's device and in its dtype: the enhanced-base file is read onto the CPU.
            own = clip_model.text_projection
            self.register_buffer(
                "text_projection", text_projection.to(own.device, own.dtype), persistent=False
            )

    def forward(self, prompts: torch.Tensor, tokenized_prompts: torch.Tensor) -> torch.Tensor:
        """prompts: [N, L, width] embeddings; tokenized_prompts: [N, L] ids -> [N, embed_dim]."""
        # Drop the padding after the last end token (as CLIP.encode_text): [N, L] -> [N, length].
        length = text_length(tokenized_prompts)
        prompts, tokenized_prompts = prompts[:, :length], tokenized_prompts[:, :length]
        x = prompts.type(self.dtype) + self.positional_embedding[:length].type(self.dtype)
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)  # NLD -> LND -> NLD
        x = self.ln_final(x).type(self.dtype)
        # The end-of-text token has the largest id: its output summarises the prompt.
        eot = x[torch.arange(x.shape[0], device=x.device), tokenized_prompts.argmax(dim=-1)]
        return eot @ self.text_projection


def spaced(classnames: list[str]) -> list[str]:
    """Class names as CoOp, CLIP-Adapter and zero-shot CLIP put them in prompts ("red_panda" ->
    "red panda"). TaskRes's base uses the names as given, as upstream does."""
    return [name.replace("_", " ") for name in classnames]


def tokenize(clip_model: nn.Module, texts: list[str]) -> torch.Tensor:
    """Token ids [N, context_length] for this model's context length."""
    return clip.tokenize(texts, context_length=clip_model.context_length)


@torch.no_grad()
def encode_texts(
    clip_model: nn.Module,
    texts: list[str],
    text_projection: torch.Tensor | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """Embeddings [N, embed_dim] of `texts` (not normalised), in CLIP's dtype, on CLIP's device."""
    encoder = TextEncoder(clip_model, text_projection)
    device = clip_model.token_embedding.weight.device
    chunks = []
    for start in range(0, len(texts), batch_size):
        tokens = tokenize(clip_model, texts[start : start + batch_size]).to(device)
        chunks.append(encoder(clip_model.token_embedding(tokens), tokens))
    return torch.cat(chunks)


def encode_class_prompts(
    clip_model: nn.Module,
    classnames: list[str],
    templates: list[str],
    text_projection: torch.Tensor | None = None,
) -> torch.Tensor:
    """Embeddings [K, T, embed_dim] of every template filled with every class name."""
    texts = [template.format(name) for name in classnames for template in templates]
    features = encode_texts(clip_model, texts, text_projection)
    return features.view(len(classnames), len(templates), -1)  # [K*T, D] -> [K, T, D]


def normalize(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)
