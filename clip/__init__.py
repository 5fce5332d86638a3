"""OpenAI-compatible CLIP: model, BPE tokenizer and offline-first weight loading.

Both upstream import styles work: `import clip; clip.load("ViT-B/16")` and
`from clip import clip; clip.tokenize(...)`. The methods reach CLIP through
`clip.backbone.load_backbone`, which also serves OpenCLIP models (`clip.openclip`).

Where weights are looked for, in order (names from `clip.available_models()`):
  1. the argument itself, when it is a path to an existing checkpoint file;
  2. `$CLIP_WEIGHTS_DIR/<file>`, where <file> is the last part of the download URL
     (RN50.pt, RN101.pt, RN50x4.pt, RN50x16.pt, RN50x64.pt, ViT-B-32.pt, ViT-B-16.pt,
     ViT-L-14.pt, ViT-L-14-336px.pt): put OpenAI's files there on machines without network;
  3. `download_root` (default `~/.cache/clip`), where downloads are cached;
  4. a download from OpenAI into that folder, verified against the SHA256 in the URL.
Files found by name are checked against that SHA256 too. Without network and without the file,
loading fails with an error naming the file, these folders and the URL.

Checkpoints are read as data: no code stored in a file runs while it loads (TorchScript archives
are unpickled by `clip.archive`; only `load(..., jit=True)` runs an archive, and only one of
OpenAI's published files), and `build_model` checks every shape before it allocates.
"""

# The public names are those of `clip.clip` (its __all__), so the list lives in one place.
from .clip import *  # noqa: F403
from .clip import __all__
