"""Throughput of our CLIP against OpenAI's reference implementation (encode_image, encode_text).

Both models get the same random OpenAI-layout weights. On CPU they run in fp32; with
`--device cuda` both run in upstream's fp16 layout (`convert_weights`). Ours and the reference
alternate batch by batch, and each figure uses the fastest batch, so load from other processes
on a shared machine skews both sides alike.

    python benchmarks/clip_speed.py --threads 2 --batches 3
    python benchmarks/clip_speed.py --long-texts --models small-vit vit-b16
    python benchmarks/clip_speed.py --device cuda --models rn50 vit-b16 --batch-size 64
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tabulate import tabulate

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from clip import clip  # noqa: E402
from clip.model import convert_weights, text_length  # noqa: E402
from clip.synthetic import RN50_DIMS, VIT_B16_DIMS, build_synthetic_model  # noqa: E402
from tools.openai_clip import INSTALL_HINT, ORACLE_DIR, load_openai_clip  # noqa: E402

MODELS: dict[str, tuple[str, dict]] = {
    "small-vit": (
        "ViT",
        {
            "image_resolution": 224,
            "vision_patch_size": 32,
            "vision_width": 256,
            "vision_layers": 4,
            "embed_dim": 256,
            "transformer_width": 256,
            "transformer_layers": 4,
        },
    ),
    "small-rn": (
        "RN",
        {
            "image_resolution": 224,
            "vision_width": 32,
            "vision_layers": (1, 1, 1, 1),
            "embed_dim": 256,
            "transformer_width": 256,
            "transformer_layers": 4,
        },
    ),
    "rn50": ("RN", RN50_DIMS),
    "vit-b16": ("ViT", VIT_B16_DIMS),
}
PROMPTS = [f"a photo of a {name}, a type of pet." for name in ("cat", "dog", "hamster", "parrot")]


def best_rate(
    fns: list[Callable[[], object]], items: int, batches: int, sync: Callable, clock: Callable
) -> list:
    """Items/s of each function from its fastest batch; the functions take turns each batch."""
    best = [float("inf")] * len(fns)
    for _ in range(batches + 1):  # the first round warms up caches and kernels
        for i, fn in enumerate(fns):
            sync()
            start = clock()
            fn()
            sync()
            best[i] = min(best[i], clock() - start)
    return [items / t for t in best]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (CPU)")
    parser.add_argument("--batches", type=int, default=3, help="timed batches per model")
    parser.add_argument("--batch-size", type=int, default=8, help="images per batch")
    parser.add_argument("--text-batch-size", type=int, default=32, help="texts per batch")
    parser.add_argument(
        "--long-texts",
        action="store_true",
        help="texts that fill the whole 77-token context (no padding for encode_text to skip)",
    )
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu: process CPU time, steadier than wall time on a busy machine with --threads 1",
    )
    parser.add_argument("--oracle-dir", type=Path, default=ORACLE_DIR)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    reference_clip = load_openai_clip(args.oracle_dir)
    if reference_clip is None:
        sys.exit(
            f"reference openai-clip not found at {args.oracle_dir}: {INSTALL_HINT}, "
            "or pass --oracle-dir"
        )
    device = torch.device(args.device)
    fp16 = device.type == "cuda"
    sync = torch.cuda.synchronize if fp16 else (lambda: None)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    prompts = [p * 20 for p in PROMPTS] if args.long_texts else PROMPTS
    tokens = clip.tokenize(prompts * (args.text_batch_size // len(prompts) + 1), truncate=True)
    tokens = tokens[: args.text_batch_size].to(device)

    rows = []
    for name in args.models:
        arch, dims = MODELS[name]
        state_dict = build_synthetic_model(arch, **dims).state_dict()
        ours = clip.build_model(state_dict).to(device)
        reference = reference_clip.model.build_model(dict(state_dict)).to(device).eval()
        if fp16:
            convert_weights(ours)
        else:
            reference.float()
        size = ours.visual.input_resolution
        images = torch.randn(args.batch_size, 3, size, size, device=device)
        with torch.inference_mode():
            image_rates = best_rate(
                [lambda m=m, x=images: m.encode_image(x) for m in (ours, reference)],
                args.batch_size,
                args.batches,
                sync,
                clock,
            )
            text_rates = best_rate(
                [lambda m=m: m.encode_text(tokens) for m in (ours, reference)],
                len(tokens),
                args.batches,
                sync,
                clock,
            )
        rows.append(
            [
                name,
                f"{image_rates[0]:.1f}",
                f"{image_rates[1]:.1f}",
                f"{image_rates[0] / image_rates[1]:.2f}",
                f"{text_rates[0]:.1f}",
                f"{text_rates[1]:.1f}",
                f"{text_rates[0] / text_rates[1]:.2f}",
            ]
        )
        del ours, reference

    precision = "fp16" if fp16 else "fp32"
    threads = f", {args.threads} threads" if device.type == "cpu" else ""
    length = "77 (full context)" if args.long_texts else str(text_length(tokens))
    print(
        f"device {device} ({precision}{threads}); image batch {args.batch_size}, "
        f"text batch {len(tokens)} of {length} tokens; best of {args.batches} batches "
        f"({args.clock} clock)"
    )
    headers = ["model", "img/s ours", "img/s ref", "ratio", "txt/s ours", "txt/s ref", "ratio"]
    print(tabulate(rows, headers=headers, tablefmt="github"))


if __name__ == "__main__":
    main()
