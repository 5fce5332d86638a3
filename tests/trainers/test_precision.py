"""PREC fp16 and amp: the code paths of a CUDA run, exercised on the CPU.

torch runs fp16 weights and fp16 autocast on the CPU, so these tests force the precision past
resolve_precision's CPU fallback (the `force_precision` fixture) and check what a GPU run relies
on: CLIP in upstream's fp16 layout under fp16 and in fp32 under amp, the heads in fp32 under every
PREC, the GradScaler step, and checkpoints that hold fp32 tensors whatever the PREC and load
across precisions.
"""

import pytest
import torch

from dassl.optim import build_optimizer
from dassl.utils.torchtools import read_checkpoint_pointer
from tests.support.tiny_clip import tiny_clip_checkpoint
from trainers.methods.taskres import TaskRes

from .helpers import make_trainer, train_loss

FAST = ("OPTIM.MAX_EPOCH", 10, "OPTIM.LR", 0.05, "DATALOADER.TRAIN_X.BATCH_SIZE", 6)
HALF = {"fp16": torch.float16, "fp32": torch.float32, "amp": torch.float32}  # CLIP's weights


def _record_output_dtypes(module: torch.nn.Module) -> list[torch.dtype]:
    seen: list[torch.dtype] = []
    module.register_forward_hook(lambda _module, _args, out: seen.append(out.dtype))
    return seen


def _own_tensors(trainer) -> dict[str, torch.Tensor]:
    """The head's floating-point parameters and buffers (saved or not) that are not CLIP's."""
    clip_ids = {id(t) for t in (*trainer.clip_model.parameters(), *trainer.clip_model.buffers())}
    named = (*trainer.head.named_parameters(), *trainer.head.named_buffers())
    return {n: t for n, t in named if t.is_floating_point() and id(t) not in clip_ids}


def _assert_fp32_checkpoint(path) -> None:
    """Every floating tensor of the checkpoint (weights and optimizer state) is finite fp32."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    tensors = list(checkpoint["state_dict"].values())
    for state in (checkpoint["optimizer"] or {}).get("state", {}).values():
        tensors += [v for k, v in state.items() if k != "step"]
    assert tensors and all(t.dtype == torch.float32 for t in tensors), path
    assert all(torch.isfinite(t).all() for t in tensors), path


@pytest.mark.parametrize(
    "trainer_name, opts, arch",
    [
        ("TaskRes", (), "ViT"),
        ("TaskRes", ("TRAINER.TaskRes.RESIDUAL_SIDE", "image"), "RN"),
        ("CoOp", ("TRAINER.COOP.N_CTX", 4), "ViT"),
        ("CoOp", ("TRAINER.COOP.CTX_INIT", "a_photo_of", "TRAINER.COOP.CSC", True), "ViT"),
        ("CoCoOp", ("TRAINER.COCOOP.CTX_INIT", "a photo of a"), "ViT"),
        ("CLIP_Adapter", (), "ViT"),
        ("ZeroshotCLIP2", (), "ViT"),
        ("LinearProbeCLIP", (), "ViT"),
    ],
)
@pytest.mark.parametrize("prec", ["fp16", "amp"])
def test_heads_stay_fp32_and_evaluate_like_fp32(
    make_cfg, force_precision, clip_dir, trainer_name, opts, arch, prec
):
    backbone = tiny_clip_checkpoint(clip_dir, arch=arch)
    trainer = make_trainer(make_cfg(trainer_name, *opts, backbone=backbone, prec=prec))
    clip_model = trainer.clip_model
    assert trainer.precision == prec
    # Upstream's fp16 layout (convert_weights): conv/linear weights and projections in fp16,
    # norms and embeddings in fp32. amp keeps CLIP in fp32 and autocasts the training step.
    assert clip_model.visual.conv1.weight.dtype == HALF[prec]
    assert clip_model.text_projection.dtype == HALF[prec]
    assert clip_model.ln_final.weight.dtype == torch.float32
    own = _own_tensors(trainer)
    assert own and all(t.dtype == torch.float32 for t in own.values()), own.keys()

    image_dtypes = _record_output_dtypes(clip_model.visual)
    logit_dtypes = _record_output_dtypes(trainer.head)
    half_acc = trainer.test()
    assert set(image_dtypes) == {HALF[prec]} and set(logit_dtypes) == {torch.float32}

    fp32 = make_trainer(make_cfg(trainer_name, *opts, backbone=backbone))
    features, _ = fp32.encode_data_source(fp32.dm.dataset.test)
    with torch.no_grad():
        logits = trainer.model(features.to(HALF[prec]))
        torch.testing.assert_close(logits, fp32.model(features), atol=0.05, rtol=0.02)
    if prec == "amp":  # amp evaluates in fp32, exactly as an fp32 run
        assert half_acc == fp32.test()


def _set_loss_scale(trainer, scale: float) -> None:
    """Restart the GradScaler at `scale`, as restoring a checkpointed scaler would."""
    trainer.scaler.load_state_dict({**trainer.scaler.state_dict(), "scale": scale})


@pytest.mark.parametrize(
    "trainer_name, opts",
    [
        ("TaskRes", ()),
        ("CoOp", ("TRAINER.COOP.N_CTX", 4)),
        ("CoCoOp", ("TRAINER.COCOOP.N_CTX", 4)),
        ("CLIP_Adapter", ()),
    ],
)
@pytest.mark.parametrize("prec", ["fp16", "amp"])
def test_training_step_runs_clip_in_fp16_and_updates_fp32_weights(
    make_cfg, force_precision, trainer_name, opts, prec
):
    trainer = make_trainer(make_cfg(trainer_name, *FAST, *opts, prec=prec))
    if prec == "amp":  # a scale whose first step cannot overflow (the next test covers that)
        _set_loss_scale(trainer, 2.0**4)
    image_dtypes = _record_output_dtypes(trainer.clip_model.visual)
    logit_dtypes = _record_output_dtypes(trainer.head)
    text_dtypes = _record_output_dtypes(getattr(trainer.head, "text_encoder", torch.nn.Identity()))
    learner = trainer.learnable()
    before = {k: v.detach().clone() for k, v in learner.state_dict().items()}
    trainer.batch_idx, trainer.num_batches = 0, len(trainer.train_loader_x)
    summary = trainer.forward_backward(next(iter(trainer.train_loader_x)))

    # fp16 runs the frozen encoders in fp16 and the head in fp32; amp autocasts the whole step,
    # so the matmuls of the head and of CoOp's (CoCoOp's) text encoder give fp16 too.
    assert image_dtypes == [torch.float16]
    assert logit_dtypes == [torch.float32 if prec == "fp16" else torch.float16]
    if trainer_name in ("CoOp", "CoCoOp"):
        assert text_dtypes == [torch.float16]
    assert 0 < summary["loss"] < float("inf")
    for param in learner.parameters():
        assert param.dtype == torch.float32 and param.grad.dtype == torch.float32
        assert torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0
    after = learner.state_dict()
    assert any(not torch.equal(after[k], v) for k, v in before.items())


def test_amp_step_scales_the_loss_and_skips_steps_that_overflow(make_cfg, force_precision):
    opts = ("OPTIM.NAME", "sgd", "OPTIM.LR", 0.5, "DATALOADER.TRAIN_X.BATCH_SIZE", 6)
    trainer = make_trainer(make_cfg("TaskRes", *opts, prec="amp"))
    # A loss scaler that works on this device, at upstream's initial scale (a "cuda" scaler
    # disables itself on the CPU: scale 1, unscaled steps).
    assert trainer.scaler.get_scale() == 2.0**16
    residual = trainer.head.text_feature_residuals
    raw_grads = []
    residual.register_hook(lambda grad: raw_grads.append(grad.clone()))
    batch = next(iter(trainer.train_loader_x))
    trainer.batch_idx, trainer.num_batches = 0, len(trainer.train_loader_x)

    # A scale so large that the fp16 gradients overflow: the step is skipped, the scale halves.
    _set_loss_scale(trainer, 2.0**100)
    trainer.forward_backward(batch)
    assert not torch.isfinite(raw_grads[0]).all()
    assert torch.equal(residual.detach(), torch.zeros_like(residual))
    assert trainer.scaler.get_scale() == 2.0**99

    # Backward runs through the scaled loss, the optimizer steps on the unscaled gradient (SGD's
    # first step from zero weights, weight decay and momentum aside, is -lr * grad).
    _set_loss_scale(trainer, 2.0**4)
    trainer.forward_backward(batch)
    assert torch.isfinite(raw_grads[1]).all()
    torch.testing.assert_close(raw_grads[1], 2.0**4 * residual.grad)
    lr = trainer.optim.param_groups[0]["lr"]
    torch.testing.assert_close(residual.detach(), -lr * residual.grad)


class ClassBias(torch.nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(num_classes))

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return logits + self.bias


class TaskResWithClassBias(TaskRes):
    """A method with two registered models, each with its own optimizer."""

    def build_model(self) -> None:
        super().build_model()
        bias = ClassBias(self.num_classes).to(self.device)
        self.model.head = torch.nn.Sequential(self.head, bias)
        self.register_model("class_bias", bias, build_optimizer(bias, self.cfg.OPTIM))


def test_amp_step_updates_every_registered_model(make_cfg, force_precision):
    cfg = make_cfg("TaskRes", *FAST, prec="amp")
    cfg.freeze()
    trainer = TaskResWithClassBias(cfg)
    _set_loss_scale(trainer, 2.0**4)
    trainer.batch_idx, trainer.num_batches = 0, len(trainer.train_loader_x)
    trainer.forward_backward(next(iter(trainer.train_loader_x)))
    for name in ("prompt_learner", "class_bias"):
        param = next(trainer.get_model(name).parameters())
        assert param.abs().sum() > 0, name  # both moved from their zero initialisation


def _train_and_check(trainer, prec: str, output_dir) -> None:
    """What a run under `prec` must do on any device: CLIP in the PREC's dtype, a loss scaler
    exactly under amp, the train loss falling (accuracy on 18 images can stay put for a given
    random stream), and finite fp32 checkpoints (weights and optimizer state), as an fp32 run
    writes them."""
    assert trainer.precision == prec and trainer.clip_model.dtype == HALF[prec]
    assert (trainer.scaler is not None) == (prec == "amp")
    assert trainer.scaler is None or trainer.scaler.is_enabled()
    before = train_loss(trainer)
    trainer.train()
    assert train_loss(trainer) < before
    for name in trainer.get_model_names():
        _assert_fp32_checkpoint(read_checkpoint_pointer(str(output_dir / name)))


# Settings under which each method learns the tiny dataset (as in test_training.py).
TRAINS = {
    "TaskRes": (),
    "CoOp": ("TRAINER.COOP.N_CTX", 4, "OPTIM.LR", 0.01),
    "CoCoOp": ("TRAINER.COCOOP.N_CTX", 4, "OPTIM.LR", 0.01),
    "CLIP_Adapter": (),
}


@pytest.mark.parametrize("trainer_name", ["TaskRes", "CoOp", "CoCoOp", "CLIP_Adapter"])
@pytest.mark.parametrize("prec", ["fp16", "amp"])
def test_precisions_train_and_save_fp32_checkpoints(
    make_cfg, force_precision, tmp_path, trainer_name, prec
):
    trainer = make_trainer(make_cfg(trainer_name, *FAST, *TRAINS[trainer_name], prec=prec))
    _train_and_check(trainer, prec, tmp_path / "output")


@pytest.mark.gpu
@pytest.mark.parametrize("trainer_name", ["TaskRes", "CoOp", "CoCoOp", "CLIP_Adapter"])
@pytest.mark.parametrize("prec", ["fp16", "amp"])
def test_gpu_precisions_train(make_cfg, tmp_path, trainer_name, prec):
    cfg = make_cfg(trainer_name, *FAST, *TRAINS[trainer_name], "USE_CUDA", True, prec=prec)
    trainer = make_trainer(cfg)
    assert trainer.device.type == "cuda"
    _train_and_check(trainer, prec, tmp_path / "output")


@pytest.mark.parametrize("prec", ["fp16", "amp"])
def test_fp16_and_amp_fall_back_to_fp32_without_cuda(make_cfg, capsys, prec):
    if torch.cuda.is_available():
        pytest.skip("tests the CPU fallback")
    trainer = make_trainer(make_cfg("TaskRes", prec=prec))
    assert f"PREC={prec} needs a CUDA device" in capsys.readouterr().out
    assert trainer.precision == "fp32" and trainer.clip_model.dtype == torch.float32
    assert trainer.scaler is None


def _state(trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.learnable().state_dict().items()}


@pytest.mark.parametrize("prec", ["fp16", "amp"])
def test_checkpoints_reload_under_every_precision(make_cfg, force_precision, tmp_path, prec):
    """Eval-only under the training PREC reproduces the run; fp32 and the other PREC load the
    very same weights (checkpoints are fp32 whatever the PREC)."""
    run_dir = tmp_path / "run"
    train = (*FAST[2:], "OPTIM.MAX_EPOCH", 4, "TEST.FINAL_MODEL", "best_val")
    run = make_trainer(make_cfg("TaskRes", *train, "OUTPUT_DIR", str(run_dir), prec=prec))
    run.train()  # deploys the best-val model and tests it
    state, acc = _state(run), run.test()
    for eval_prec in ("fp16", "fp32", "amp"):
        evaluator = make_trainer(make_cfg("TaskRes", prec=eval_prec))
        evaluator.load_model(str(run_dir))
        loaded = _state(evaluator)
        assert all(torch.equal(v, state[k]) for k, v in loaded.items()), eval_prec
        if eval_prec == prec:
            assert evaluator.test() == acc


def test_upstream_fp16_coop_checkpoint_loads_into_fp32_and_fp16_runs(
    make_cfg, force_precision, tmp_path
):
    # Upstream CoOp keeps ctx and the token buffers in CLIP's dtype: fp16 under PREC fp16.
    trainer = make_trainer(make_cfg("CoOp", "TRAINER.COOP.N_CTX", 4))
    upstream = {k: (v + 0.01).half() for k, v in _state(trainer).items()}
    folder = tmp_path / "upstream" / "prompt_learner"
    folder.mkdir(parents=True)
    torch.save({"state_dict": upstream, "epoch": 50}, folder / "model.pth.tar-50")
    for prec in ("fp32", "fp16"):
        run = make_trainer(make_cfg("CoOp", "TRAINER.COOP.N_CTX", 4, prec=prec))
        run.load_model(str(tmp_path / "upstream"), epoch=50)
        ctx = run.head.prompt_learner.ctx
        assert ctx.dtype == torch.float32 and torch.equal(ctx.detach(), upstream["ctx"].float())
        features, _ = run.encode_data_source(run.dm.dataset.test)
        with torch.no_grad():
            assert torch.isfinite(run.model(features)).all()


def test_enhanced_base_under_fp16_matches_the_fp32_one(make_cfg, force_precision, tmp_path):
    regular = make_trainer(make_cfg("TaskRes", prec="fp16"))
    width, dim = regular.clip_model.text_projection.shape
    weight = torch.randn(dim, width, generator=torch.Generator().manual_seed(0)).half()
    path = tmp_path / "enhanced.pth.tar"
    torch.save({"state_dict": {"weight": weight}, "epoch": 1}, path)  # as an fp16 run saves it
    opts = ("TRAINER.TaskRes.ENHANCED_BASE", str(path))
    fp16 = make_trainer(make_cfg("TaskRes", *opts, prec="fp16")).head.base_text_features
    fp32 = make_trainer(make_cfg("TaskRes", *opts)).head.base_text_features
    assert fp16.dtype == fp32.dtype == torch.float32
    torch.testing.assert_close(fp16, fp32, atol=0.02, rtol=0.02)
    assert not torch.allclose(fp16, regular.head.base_text_features, atol=0.1)
