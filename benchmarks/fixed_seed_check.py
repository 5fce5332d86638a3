"""The bit-identity check of the default ``exact`` protocol: a fixed-seed TaskRes and CoOp run.

Trains TaskRes and CoOp on the tiny random-weight CLIP and the synthetic ``TinyImages`` data
(CPU, fp32, 3 epochs, seed 1) through train.py, then prints, per method, the SHA-256 of the saved
weights and the test accuracy line. Run it before and after a change to the training, data or
evaluation path: the two printouts must be identical. The runs use one CPU thread: float sums
split over another number of threads round differently, so the digests of an unpinned run
depend on the machine and its load.

Usage: python benchmarks/fixed_seed_check.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from clip.synthetic import TINY_INPUT_SIZE, write_synthetic_checkpoint  # noqa: E402
from datasets.synthetic import write_tiny_image_dataset  # noqa: E402

METHODS = {
    "TaskRes": ["TRAINER.TaskRes.PREC", "fp32", "OPTIM.NAME", "adam", "OPTIM.LR", "0.002"],
    "CoOp": ["TRAINER.COOP.PREC", "fp32", "TRAINER.COOP.N_CTX", "4", "OPTIM.LR", "0.002"],
}
COMMON = [
    "DATASET.NAME", "TinyImages", "DATASET.NUM_SHOTS", "2",
    "INPUT.SIZE", f"({TINY_INPUT_SIZE}, {TINY_INPUT_SIZE})",
    "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
    "USE_CUDA", "False", "OPTIM.MAX_EPOCH", "3",
]


def weights_digest(output_dir: Path) -> str:
    """SHA-256 over the last checkpoint's state dict, key by key in sorted order."""
    checkpoint = max(output_dir.glob("*/model.pth.tar-*"), key=lambda p: int(p.name.rsplit("-")[1]))
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def run(method: str, work: Path, backbone: Path) -> str:
    output_dir = work / "output" / method
    argv = [
        sys.executable, str(REPO / "train.py"), "--root", str(work / "data"), "--seed", "1",
        "--trainer", method, "--output-dir", str(output_dir),
        "MODEL.BACKBONE.NAME", str(backbone), *COMMON, *METHODS[method],
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    log = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, env=env)
    if log.returncode != 0:
        sys.exit(f"{method} failed:\n{log.stdout[-3000:]}\n{log.stderr[-3000:]}")
    accuracy = re.findall(r"\* accuracy: [\d.]+%", log.stdout + log.stderr)[-1]
    return f"{method}: weights {weights_digest(output_dir)} {accuracy}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="work in DIR and keep it (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        write_tiny_image_dataset(work / "data")
        backbone = write_synthetic_checkpoint(work / "tiny-clip.pt")
        for method in METHODS:
            print(run(method, work, backbone), flush=True)


if __name__ == "__main__":
    main()
