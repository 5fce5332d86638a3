"""CLIP-LoRA here against upstream MaxZanella/CLIP-LoRA's own `run_lora`, on one tiny CLIP, the
same batches in the same order and the same dropout masks; then seconds per iteration on CPU.

    python benchmarks/clip_lora_parity.py PATH/TO/CLIP-LoRA [--output DIR] [--shots S]
        [--iters-per-shot N] [--lr LR] [--width W] [--layers L]

1. Ours: our CLIP_LoRA trainer is built as train.py builds it: the shipped vit_b16 config on the
   demo's tiny random ViT CLIP (its weights rounded to fp16 values, as OpenAI's published ones
   are: upstream's `build_model` passes them through fp16) and synthetic dataset, fp32, batch 8
   (so an epoch has several batches and an incomplete last one). One pass of its train loader
   (augmented image batches) and its test images go to the work folder.
2. Upstream, in a process of its own (its `clip`, `utils`, `lora` and `loralib` first on the
   path, nothing of ours imported): its `clip.model.build_model` on the same state dict (then
   `.float()`, as its `clip.load` on a CPU), then `lora.run_lora` with upstream's arguments
   (encoder both, position all, q/k/v, r 2, alpha 1, dropout 0.25, logit scale 100, `n_iters`
   and `shots` as given), its train loader being those batches (it cycles them, as it cycles
   its loader), val and test loaders our test images, `save_path` set so its `save_lora` writes
   the trained weights. In-process patches only: `.cuda()` is a no-op, `cls_acc`'s float() of a
   1-element array works under NumPy 2, and `apply_lora` and `evaluate_lora` are wrapped to
   note the LoRA weights it initialised, when its loop starts and ends, and its accuracy.
3. Ours starts from those initial weights (upstream's layout read by `from_upstream_layout`) and
   runs the same iterations through our trainer's `forward_backward` and schedule step, on the
   same batches in the same order, then our evaluation of the test split.
4. Dropout: in both processes `F.dropout` draws the n-th call's mask from a generator seeded with
   n. The calls come in the same order (per step: the text tower's blocks, q, k, v each, then the
   image tower's), but our text tower runs on the prompts up to their last end token while
   upstream's runs on all 77 positions, so one shared generator would be advanced differently.
   torch fills a mask in element order, so each call's mask agrees on the positions both compute;
   the positions past the end token never reach the text features (causal attention).
5. Compared: the LoRA weights after the last iteration (upstream's `save_lora` file) within
   1e-5, and the test accuracy (upstream's `evaluate_lora`, ours through `test`). Then our trained
   weights, written in upstream's layout (`upstream_layout`), are loaded by upstream's own
   `load_lora` (its `--eval_only` path) and evaluated there: the same accuracy.
6. Seconds per iteration, one thread each: upstream's loop (from the end of `apply_lora` to its
   final evaluation) and ours (`forward_backward` and the schedule step).
"""

from __future__ import annotations

import argparse
import builtins
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-5
SEED = 1
BATCH = 8
WEIGHTS = ("w_lora_A", "w_lora_B")  # loralib's names of A [r, in] and B [out, r]
UPSTREAM_BACKBONE = "ViT-B/16"  # upstream's key for its layer positions ('all': blocks 0-11)


class PerCallDropout:
    """F.dropout whose n-th call in training (p > 0) draws its mask from a generator seeded
    with n, whatever the global generator's state."""

    def __init__(self) -> None:
        self.calls = 0
        self.original = F.dropout

    def __call__(
        self, input: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False
    ) -> torch.Tensor:
        if not training or p == 0:
            return input
        self.calls += 1
        generator = torch.Generator().manual_seed(self.calls)
        keep = torch.empty(input.shape).bernoulli_(1 - p, generator=generator)
        return input * keep.to(input.dtype) / (1 - p)

    def install(self) -> None:
        torch.nn.functional.dropout = self

    def remove(self) -> None:
        torch.nn.functional.dropout = self.original


# ---- upstream's side, in a process of its own ---------------------------------------------


def upstream_args(inputs: dict, save_path: Path, eval_only: bool) -> SimpleNamespace:
    """run_utils.get_arguments' namespace with upstream's defaults, our sizes."""
    return SimpleNamespace(
        seed=SEED, root_path="", dataset="tiny", shots=inputs["shots"],
        backbone=UPSTREAM_BACKBONE, lr=inputs["lr"], n_iters=inputs["iters_per_shot"],
        batch_size=BATCH, position="all", encoder="both", params=["q", "k", "v"], r=2,
        alpha=1, dropout_rate=0.25, save_path=str(save_path), filename="lora_weights",
        eval_only=eval_only,
    )  # fmt: skip


def upstream_file(save_path: Path, shots: int) -> Path:
    """Where upstream's save_lora writes (and load_lora reads) with these arguments."""
    return save_path / "vitb16" / "tiny" / f"{shots}shots" / f"seed{SEED}" / "lora_weights.pt"


def upstream_side(checkout: Path, work: Path, eval_only: bool) -> None:
    """Train (or, eval_only, load and evaluate) with upstream's run_lora; write what it did."""
    sys.path.insert(0, str(checkout))
    torch.set_num_threads(1)
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    nn.Module.cuda = lambda self, *args, **kwargs: self
    inputs = torch.load(work / "inputs.pt", weights_only=True)
    import lora  # upstream's lora.py (its utils.py, clip and loralib with it)
    import utils

    from clip.model import build_model

    utils.float = lambda value: builtins.float(value.reshape(()))  # NumPy 2's float(array)
    dropout = PerCallDropout()
    dropout.install()
    noted: dict = {}
    apply_lora, evaluate_lora = lora.apply_lora, lora.evaluate_lora

    def noting_apply_lora(args, clip_model):
        layers = apply_lora(args, clip_model)
        noted["init"] = {
            f"layer_{i}": {
                name: {w: getattr(getattr(layer, name), w).detach().clone() for w in WEIGHTS}
                for name in ("q_proj", "k_proj", "v_proj")
            }
            for i, layer in enumerate(layers)
        }
        dropout.calls = 0
        noted["start"] = time.perf_counter()
        return layers

    def noting_evaluate_lora(args, clip_model, loader, dataset):
        noted.setdefault("end", time.perf_counter())
        noted["accuracy"] = evaluate_lora(args, clip_model, loader, dataset)
        return noted["accuracy"]

    lora.apply_lora, lora.evaluate_lora = noting_apply_lora, noting_evaluate_lora
    model = build_model(dict(inputs["state_dict"])).float()
    dataset = SimpleNamespace(template=[inputs["template"]], classnames=inputs["classnames"])
    save_path = work / ("ours_in_upstream_layout" if eval_only else "upstream_lora")
    args = upstream_args(inputs, save_path, eval_only)
    test = inputs["test"]
    lora.run_lora(args, model, 100, dataset, inputs["train"], test, test)
    iterations = inputs["iters_per_shot"] * inputs["shots"]
    result = {"accuracy": noted["accuracy"], "dropout_calls": dropout.calls}
    if not eval_only:
        result["seconds_per_iteration"] = (noted["end"] - noted["start"]) / iterations
        torch.save(noted["init"], work / "upstream_init.pt")
    name = "upstream_eval.json" if eval_only else "upstream.json"
    (work / name).write_text(json.dumps(result))


def run_upstream(checkout: Path, work: Path, eval_only: bool = False) -> dict:
    command = [sys.executable, __file__, str(checkout), "--upstream-side", str(work)]
    if eval_only:
        command.append("--eval-only")
    done = subprocess.run(command, capture_output=True, text=True, cwd=work)
    (work / f"upstream{'_eval' if eval_only else ''}_log.txt").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"upstream's run failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return json.loads((work / ("upstream_eval.json" if eval_only else "upstream.json")).read_text())


# ---- ours, and the comparison ---------------------------------------------------------------


def build_ours(work: Path, shots: int, iters_per_shot: int, lr: float, width: int, layers: int):
    """Our trainer as train.py builds it, on a random ViT CLIP (the demo's: width 64, 2 layers
    per tower) and the demo's data."""
    import train
    from clip.synthetic import write_synthetic_checkpoint
    from dassl.engine import build_trainer
    from dassl.utils import set_random_seed
    from tools.demo import write_demo_dataset

    root, weights = work / "data", work / "clip.pt"
    write_demo_dataset(root, per_class=(shots, 2, 6))
    sizes = {"vision_width": width, "transformer_width": width}
    write_synthetic_checkpoint(weights, **sizes, vision_layers=layers, transformer_layers=layers)
    # fp16 values, as OpenAI's published weights: upstream's build_model passes them through fp16.
    state = torch.load(weights, weights_only=True)
    torch.save(
        {k: v.half().float() if v.is_floating_point() else v for k, v in state.items()}, weights
    )
    argv = [
        "--root", str(root), "--seed", str(SEED), "--trainer", "CLIP_LoRA",
        "--dataset-config-file", str(REPO / "configs/datasets/caltech101.yaml"),
        "--config-file", str(REPO / "configs/trainers/CLIP_LoRA/vit_b16.yaml"),
        "--output-dir", str(work / "ours"),
        "MODEL.BACKBONE.NAME", str(weights), "USE_CUDA", "False", "DATASET.NUM_SHOTS", str(shots),
        "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", str(BATCH),
        "TRAINER.CLIP_LORA.PREC", "fp32", "TRAINER.CLIP_LORA.ITERS_PER_SHOT", str(iters_per_shot),
        "OPTIM.LR", str(lr),
    ]  # fmt: skip
    cfg = train.setup_cfg(train.build_parser().parse_args(argv), [])
    set_random_seed(cfg.SEED)
    return build_trainer(cfg), weights


def largest_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys(), (sorted(a), sorted(b))
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def compare(checkout: Path, work: Path, options: argparse.Namespace) -> dict:
    sys.path.insert(0, str(REPO))
    from trainers.methods.clip_lora import from_upstream_layout, upstream_layout
    from trainers.templates import custom_template

    torch.set_num_threads(1)
    shots, iters_per_shot, lr = options.shots, options.iters_per_shot, options.lr
    trainer, weights = build_ours(work, shots, iters_per_shot, lr, options.width, options.layers)
    batches = [(b["img"], b["label"]) for b in trainer.train_loader_x]
    test = [(b["img"], b["label"]) for b in trainer.test_loader]
    template = custom_template(trainer.cfg.DATASET.NAME)  # upstream's dataset.template[0]
    inputs = {
        "state_dict": torch.load(weights, weights_only=True), "train": batches, "test": test,
        "classnames": trainer.dm.dataset.classnames, "template": template, "shots": shots,
        "iters_per_shot": iters_per_shot, "lr": lr,
    }  # fmt: skip
    torch.save(inputs, work / "inputs.pt")
    upstream = run_upstream(checkout, work)

    text_blocks = len(trainer.clip_model.transformer.resblocks)
    init = torch.load(work / "upstream_init.pt", weights_only=True)
    trainer.learner.load_state_dict(from_upstream_layout({"weights": init}, text_blocks))
    dropout = PerCallDropout()
    dropout.install()
    try:
        trainer.set_model_mode("train")
        start = time.perf_counter()
        for i in range(trainer.iterations):
            images, labels = batches[i % len(batches)]
            trainer.forward_backward({"img": images, "label": labels})
            trainer.update_lr()
        seconds = (time.perf_counter() - start) / trainer.iterations
        calls = dropout.calls
        accuracy = trainer.test("test")
    finally:
        dropout.remove()
    ours_state = {k: v.detach() for k, v in trainer.learner.state_dict().items()}
    upstream_saved = torch.load(upstream_file(work / "upstream_lora", shots), weights_only=True)
    upstream_state = from_upstream_layout(upstream_saved, text_blocks)
    init_state = from_upstream_layout({"weights": init}, text_blocks)

    metadata = {"r": 2, "alpha": 1, "encoder": "both", "params": ["q", "k", "v"]}
    exported = upstream_layout(ours_state, {**metadata, "position": "all"})
    path = upstream_file(work / "ours_in_upstream_layout", shots)
    path.parent.mkdir(parents=True)
    torch.save(exported, path)
    upstream_eval = run_upstream(checkout, work, eval_only=True)
    return {
        "iterations": trainer.iterations,
        "batches": [len(labels) for _, labels in batches],
        "difference": largest_difference(ours_state, upstream_state),
        "change": largest_difference(upstream_state, init_state),
        "dropout_calls": (calls, upstream["dropout_calls"]),
        "accuracy": (accuracy, upstream["accuracy"], upstream_eval["accuracy"]),
        "seconds": (seconds, upstream["seconds_per_iteration"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("upstream", type=Path, help="a MaxZanella/CLIP-LoRA checkout")
    parser.add_argument("--output", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument("--shots", type=int, default=2)
    parser.add_argument("--iters-per-shot", type=int, default=10, help="upstream's n_iters")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--width", type=int, default=64, help="both towers' width")
    parser.add_argument("--layers", type=int, default=2, help="both towers' blocks (<= 12)")
    parser.add_argument("--upstream-side", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--eval-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    checkout = args.upstream.resolve()
    if args.upstream_side:
        upstream_side(checkout, args.upstream_side, args.eval_only)
        return 0
    if not (checkout / "lora.py").is_file() or not (checkout / "loralib").is_dir():
        parser.error(f"{checkout} holds no lora.py and loralib/: not a CLIP-LoRA checkout")
    with tempfile.TemporaryDirectory() as tmp:
        work = (args.output or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        log = work / "ours_log.txt"
        with open(log, "w") as f:
            stdout, sys.stdout = sys.stdout, f
            try:
                facts = compare(checkout, work, args)
            finally:
                sys.stdout = stdout
        ok_weights = facts["difference"] <= TOLERANCE
        ours_acc, upstream_acc, loaded_acc = facts["accuracy"]
        ok_accuracy = abs(ours_acc - upstream_acc) < 1e-9 and abs(ours_acc - loaded_acc) < 1e-9
        print(
            f"CLIP-LoRA vs upstream's run_lora: {facts['iterations']} iterations on batches of "
            f"{facts['batches']} (cycled), lr {args.lr}, dropout calls {facts['dropout_calls']}"
        )
        print(
            f"  {'ok  ' if ok_weights else 'FAIL'} LoRA weights: largest difference "
            f"{facts['difference']:.2e} (tolerance {TOLERANCE:g}; they moved up to "
            f"{facts['change']:.2e} from their init)"
        )
        print(
            f"  {'ok  ' if ok_accuracy else 'FAIL'} test accuracy: ours {ours_acc:.2f}%, upstream "
            f"{upstream_acc:.2f}%, ours loaded by upstream's load_lora {loaded_acc:.2f}%"
        )
        ours_s, upstream_s = facts["seconds"]
        print(
            f"  seconds per iteration (CPU, 1 thread, width {args.width}, {args.layers} layers): "
            f"ours {ours_s:.4f}, upstream "
            f"{upstream_s:.4f} (ours/upstream {ours_s / upstream_s:.2f})"
        )
        if args.output:
            print(f"Logs: {log}, {work / 'upstream_log.txt'}")
    return 0 if ok_weights and ok_accuracy else 1


if __name__ == "__main__":
    sys.exit(main())
