"""CLIP-LoRA on a tiny ViT CLIP: the adapted towers equal the frozen ones at init (B = 0) and
upstream's merged weights after, only the LoRA weights learn, for upstream's budget of
iterations, ResNets are refused before any work, a resume is exact, eval-only reproduces the
accuracy, the feature store is left untouched, and checkpoints convert to upstream's layout."""

import copy
import hashlib
import json
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from clip.backbone import load_backbone
from dassl.evaluation.result_record import METRICS
from tests.support.tiny_clip import tiny_clip_checkpoint
from tests.support.tiny_run import full_cfg, run_train_in_process, tiny_run_argv
from trainers.methods.clip_lora import (
    CLIP_LoRA,
    LoRABranch,
    from_upstream_layout,
    upstream_layout,
)
from trainers.text import normalize

from .conftest import METHOD_RUN
from .helpers import make_trainer

# One shot of 3 classes in batches of 2 (the last of 1, kept): 5 iterations make 3 epochs,
# the last cut after its first batch.
RUN = (
    "DATASET.NUM_SHOTS", 1, "DATALOADER.TRAIN_X.BATCH_SIZE", 2,
    "TRAINER.CLIP_LORA.ITERS_PER_SHOT", 5, "OPTIM.LR", 0.01,
)  # fmt: skip
ITERATIONS = 5
REPO = Path(__file__).resolve().parents[2]


def _test_images(trainer) -> torch.Tensor:
    loader = trainer.dm.test_loader
    return torch.cat([batch["img"] for batch in loader])


def _randomise_b(trainer, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in trainer.learner.named_parameters():
            if name.endswith("w_lora_B"):
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))


def test_at_init_both_towers_compute_what_the_frozen_model_computes(make_cfg, vit_clip):
    trainer = make_trainer(make_cfg("CLIP_LoRA", *RUN))
    frozen = load_backbone(str(vit_clip))
    images = _test_images(trainer)
    with torch.no_grad():
        expected_images = frozen.visual(images)
        expected_classes = normalize(frozen.encode_text(trainer.head.tokens))
        for mode in ("train", "eval"):  # the dropout acts on the LoRA branch only
            trainer.set_model_mode(mode)
            torch.testing.assert_close(trainer.model.encode_images(images), expected_images)
            torch.testing.assert_close(trainer.head.class_features(), expected_classes)
    blocks = len(frozen.model.transformer.resblocks) + len(frozen.visual.transformer.resblocks)
    branches = [m for m in trainer.learner.modules() if isinstance(m, LoRABranch)]
    assert len(branches) == 3 * blocks  # q, k and v of every block of both towers
    for branch in branches:
        a, b = branch.w_lora_A, branch.w_lora_B
        assert a.shape[0] == b.shape[1] == 2 and torch.equal(b, torch.zeros_like(b))
        assert a.abs().max() <= 1 / math.sqrt(a.shape[1]) and a.abs().min() > 0  # kaiming(a=√5)
        assert branch.scaling == pytest.approx(1 / math.sqrt(2))  # alpha / sqrt(r), as loralib


def test_in_eval_the_adapted_attention_is_upstream_s_merged_weights(make_cfg):
    """Upstream evaluates with W + scaling * B A merged into each projection."""
    trainer = make_trainer(make_cfg("CLIP_LoRA", *RUN))
    _randomise_b(trainer)
    trainer.set_model_mode("eval")
    text_block = trainer.clip_model.transformer.resblocks[0]
    vision_block = trainer.clip_model.visual.transformer.resblocks[-1]
    for block, causal, first_only in ((text_block, True, False), (vision_block, False, True)):
        wrapped = block.attn
        merged = copy.deepcopy(wrapped.attn)
        width = merged.in_proj_weight.shape[1]
        with torch.no_grad():
            for index, name in enumerate("qkv"):
                branch = wrapped.branches[name]
                delta = branch.scaling * branch.w_lora_B @ branch.w_lora_A
                merged.in_proj_weight[index * width : (index + 1) * width] += delta
        x = torch.randn(7, 3, width)
        with torch.no_grad():
            ours = wrapped(x, causal=causal, first_only=first_only)
            upstream = merged(x, causal=causal, first_only=first_only)
            plain = wrapped.attn(x, causal=causal, first_only=first_only)
        torch.testing.assert_close(ours, upstream, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(ours, plain, atol=1e-4)  # the update is live


def test_the_branch_drops_its_input_out_as_upstream_s_linear_lora():
    branch = LoRABranch(8, rank=2, alpha=1.0, dropout=0.25, device=torch.device("cpu"))
    with torch.no_grad():
        branch.w_lora_B.normal_()
    x = torch.randn(5, 3, 8)
    torch.manual_seed(0)
    ours = branch(x)
    torch.manual_seed(0)
    dropped = F.dropout(x, 0.25, training=True)
    expected = dropped @ (branch.w_lora_B @ branch.w_lora_A).t() / math.sqrt(2)
    torch.testing.assert_close(ours, expected)
    torch.manual_seed(0)
    first = branch(x, rows=1)  # one query row, the mask drawn over every row
    torch.testing.assert_close(first, expected[:1])
    branch.eval()
    torch.testing.assert_close(branch(x), x @ (branch.w_lora_B @ branch.w_lora_A).t() / 2**0.5)


def test_only_the_lora_weights_learn_for_upstream_s_iterations(make_cfg, capsys):
    trainer = make_trainer(make_cfg("CLIP_LoRA", *RUN))
    clip_before = {
        k: v.clone() for k, v in trainer.clip_model.state_dict().items() if "w_lora_" not in k
    }
    learner = set(trainer.learner.parameters())
    trainable = {p for p in trainer.clip_model.parameters() if p.requires_grad}
    assert trainable == learner and len(learner) == 2 * 3 * 4  # A, B of q/k/v in 4 blocks
    steps = []
    forward_backward = trainer.forward_backward
    trainer.forward_backward = lambda batch: (
        steps.append(len(batch["img"])) or forward_backward(batch)
    )
    trainer.train()
    assert steps == [2, 1, 2, 1, 2]  # the last batch of each epoch kept, the last epoch cut
    assert "5 iterations" in capsys.readouterr().out
    clip_after = trainer.clip_model.state_dict()
    assert all(torch.equal(v, clip_after[k]) for k, v in clip_before.items())
    assert all(not torch.equal(p, torch.zeros_like(p)) for p in learner if p.shape[1] == 2)
    optim = trainer.optim  # upstream's AdamW, cosine per iteration down to 1e-6
    assert isinstance(optim, torch.optim.AdamW)
    assert optim.defaults["weight_decay"] == 0.01 and optim.defaults["betas"] == (0.9, 0.999)
    assert all(optim.state[p]["step"] == ITERATIONS for p in learner)
    assert trainer.sched.T_max == trainer.iterations == ITERATIONS
    assert optim.param_groups[0]["lr"] == pytest.approx(1e-6)


@pytest.mark.parametrize("prec", ["fp16", "amp"])
def test_fp16_and_amp_keep_the_lora_weights_fp32(make_cfg, force_precision, prec):
    # Long enough for amp's GradScaler to get past its first, overflowing scales.
    trainer = make_trainer(
        make_cfg("CLIP_LoRA", *RUN, "TRAINER.CLIP_LORA.ITERS_PER_SHOT", 20, prec=prec)
    )
    tower_dtype = torch.float16 if prec == "fp16" else torch.float32
    assert trainer.clip_model.visual.conv1.weight.dtype == tower_dtype
    assert (trainer.scaler is not None) == (prec == "amp")
    trainer.train()
    for p in trainer.learner.parameters():
        assert p.dtype == torch.float32 and torch.isfinite(p).all()
    assert any(p.abs().sum() > 0 for n, p in trainer.learner.named_parameters() if "B" in n)


def test_resnet_and_openclip_backbones_are_refused_before_any_work(make_cfg, clip_dir, capsys):
    named = make_cfg("CLIP_LoRA", *RUN, backbone=Path("RN50"))
    with pytest.raises(ValueError, match="ResNet.*Fix: set MODEL.BACKBONE.NAME to a ViT"):
        CLIP_LoRA.check_inputs(named)  # train.py's first check: before the weights are looked for
    with pytest.raises(ValueError, match="ResNet.*Fix: set MODEL.BACKBONE.NAME to a ViT"):
        make_trainer(named)
    assert "Loading CLIP" not in capsys.readouterr().out
    resnet = tiny_clip_checkpoint(clip_dir, arch="RN")
    with pytest.raises(ValueError, match="is a ResNet.*ViT-B/16"):
        make_trainer(make_cfg("CLIP_LoRA", *RUN, backbone=resnet))
    assert "# train_x" not in capsys.readouterr().out  # no dataset read
    openclip_name = make_cfg("CLIP_LoRA", *RUN, backbone=Path("openclip:ViT-B-16/openai"))
    with pytest.raises(ValueError, match="is an OpenCLIP model. Fix: use an OpenAI ViT"):
        CLIP_LoRA.check_inputs(openclip_name)


@pytest.mark.parametrize(
    "opts, message",
    [
        (("TRAINER.CLIP_LORA.PARAMS", ["q", "x"]), "PARAMS is \\['q', 'x'\\]"),
        (("DATASET.NUM_SHOTS", -1), "Fix: set DATASET.NUM_SHOTS"),
    ],
)
def test_bad_settings_are_refused(make_cfg, opts, message):
    with pytest.raises(ValueError, match=message):
        make_trainer(make_cfg("CLIP_LoRA", *RUN, *opts))


def _store_files(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _accuracy(log: str) -> float:
    return float(re.findall(r"\* accuracy: ([\d.]+)%", log)[-1])


def _last_state(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "lora" / "model.pth.tar-3", weights_only=True)["state_dict"]


def test_resume_is_exact_eval_only_agrees_and_the_store_is_untouched(
    vit_clip, data_root, tmp_path, feature_store, monkeypatch
):
    keys = {
        **{k: v for k, v in METHOD_RUN.items() if k != "OPTIM.MAX_EPOCH"},
        **dict(zip(RUN[::2], RUN[1::2])),
        "MODEL.BACKBONE.NAME": vit_clip,
        "TRAINER.CLIP_LORA.PREC": "fp32",
    }
    run_train_in_process(tiny_run_argv("ZeroshotCLIP", data_root, tmp_path / "zs", keys))
    stored = _store_files(feature_store)
    assert stored

    full = tmp_path / "full"
    full_log = run_train_in_process(tiny_run_argv("CLIP_LoRA", data_root, full, keys))

    class Interrupted(Exception):
        pass

    after_epoch = CLIP_LoRA.after_epoch

    def stop_after_first(self) -> None:
        after_epoch(self)
        if self.epoch == 0:
            raise Interrupted

    killed = tmp_path / "killed"
    monkeypatch.setattr(CLIP_LoRA, "after_epoch", stop_after_first)
    with pytest.raises(Interrupted):
        run_train_in_process(tiny_run_argv("CLIP_LoRA", data_root, killed, keys))
    monkeypatch.setattr(CLIP_LoRA, "after_epoch", after_epoch)
    resumed_log = run_train_in_process(tiny_run_argv("CLIP_LoRA", data_root, killed, keys))
    assert "Previous epoch: 1" in resumed_log
    full_state, resumed_state = _last_state(full), _last_state(killed)
    assert full_state.keys() == resumed_state.keys()
    assert all(torch.equal(full_state[k], resumed_state[k]) for k in full_state)
    assert _accuracy(resumed_log) == _accuracy(full_log)

    eval_keys = {k: v for k, v in keys.items() if k != "DATASET.NUM_SHOTS"}
    flags = ["--eval-only", "--model-dir", str(full)]
    eval_log = run_train_in_process(
        tiny_run_argv("CLIP_LoRA", data_root, tmp_path / "eval", eval_keys, flags=flags)
    )
    assert f"{full}/lora/model.pth.tar-3" in eval_log  # the last epoch, as the run tested
    full_record = json.loads((full / "result.json").read_text())
    eval_record = json.loads((tmp_path / "eval" / "result.json").read_text())
    assert [eval_record[m] for m in METRICS] == [full_record[m] for m in METRICS]
    assert _store_files(feature_store) == stored  # never read from or written to

    # The checkpoint holds the LoRA weights only, and converts to upstream's save_lora file.
    assert all(re.fullmatch(r"(text|visual)\.\d+\.[qkv]\.w_lora_[AB]", k) for k in full_state)
    metadata = {"r": 2, "alpha": 1, "encoder": "both", "params": ["q", "k", "v"]}
    saved = upstream_layout(full_state, {**metadata, "position": "all"})
    assert list(saved["weights"]) == [f"layer_{i}" for i in range(4)]
    assert set(saved["weights"]["layer_0"]) == {"q_proj", "k_proj", "v_proj"}
    text_q = saved["weights"]["layer_0"]["q_proj"]["w_lora_B"]
    assert torch.equal(text_q, full_state["text.0.q.w_lora_B"])
    back = from_upstream_layout(saved, text_blocks=2)
    assert back.keys() == full_state.keys()
    assert all(torch.equal(back[k], full_state[k]) for k in full_state)


def test_the_shipped_config_holds_upstream_s_settings():
    cfg = full_cfg()
    cfg.merge_from_file(str(REPO / "configs/trainers/CLIP_LoRA/vit_b16.yaml"))
    node = cfg.TRAINER.CLIP_LORA
    lora = (node.RANK, node.ALPHA, node.DROPOUT, list(node.PARAMS), node.ITERS_PER_SHOT)
    assert lora == (2, 1.0, 0.25, ["q", "k", "v"], 500)
    assert (cfg.OPTIM.LR, cfg.DATALOADER.TRAIN_X.BATCH_SIZE) == (2e-4, 32)
    assert tuple(cfg.INPUT.RRCROP_SCALE) == (0.08, 1.0)
    assert cfg.TEST.FINAL_MODEL == "last_step" and cfg.MODEL.BACKBONE.NAME == "ViT-B/16"
