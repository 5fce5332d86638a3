"""The experiment scripts: usage messages and the exact train.py commands.

train.py is replaced by a stub interpreter (the scripts' PYTHON variable) that records each
command and writes a finished log (or, with STUB_EXIT set, exits with that status); every other
Python call (the results tool) runs for real. Skipping finished runs and refusing changed configs
is train.py's job (--skip-finished); tests/tools/test_scripts_real.py runs the scripts for real. The
grid wrappers (train_regular.sh, train_enhance.sh) run python -m tools.sweep: their tests read the
commands its dry run lists (tests/tools/test_sweep.py runs grids for real).
"""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tools.logs import training_log, write_log

REPO = Path(__file__).resolve().parents[2]

STUB = """#!{python}
import json, os, sys
args = sys.argv[1:]
if args and args[0] == "train.py":
    with open(os.environ["STUB_CALLS"], "a") as f:
        f.write(json.dumps(args) + "\\n")
    if os.environ.get("STUB_EXIT"):
        sys.exit(int(os.environ["STUB_EXIT"]))
    out = args[args.index("--output-dir") + 1]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "log.txt"), "a") as f:
        f.write("=> result\\n* accuracy: 50.0%\\n")
    sys.exit(0)
os.execv(sys.executable, [sys.executable, *args])
"""


@pytest.fixture
def env(tmp_path):
    """Environment for a script run: stub interpreter, data root and output root under tmp_path."""
    stub = tmp_path / "python-stub"
    stub.write_text(STUB.format(python=sys.executable))
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "data").mkdir()
    return {
        **os.environ,
        "PYTHON": str(stub),
        "DATA": str(tmp_path / "data"),
        "OUTPUT_ROOT": str(tmp_path / "out"),
        "STUB_CALLS": str(tmp_path / "calls.jsonl"),
    }


def run(script: str, *args: str, env: dict, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(REPO / script), *args], env=env, cwd=cwd, capture_output=True, text=True
    )


def calls(env: dict) -> list[list[str]]:
    path = Path(env["STUB_CALLS"])
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def flag(call: list[str], name: str) -> str:
    return call[call.index(name) + 1]


def trained(*run_dirs: Path) -> None:
    """Finished training runs (a log with their final test result) in ``run_dirs``."""
    for run_dir in run_dirs:
        write_log(run_dir, training_log(50.0))


@pytest.mark.parametrize(
    "script",
    [
        "scripts/taskres/main.sh",
        "scripts/taskres/eval.sh",
        "scripts/taskres/zeroshot.sh",
        "scripts/taskres/test_dg.sh",
        "scripts/coop/main.sh",
        "scripts/coop/eval.sh",
        "scripts/cocoop/main.sh",
        "scripts/cocoop/base2new.sh",
        "scripts/clip_adapter/main.sh",
        "scripts/linear_probe/main.sh",
        "scripts/tip_adapter/main.sh",
        "scripts/clap/main.sh",
        "scripts/clip_lora/main.sh",
        "scripts/kgcoop/main.sh",
        "scripts/prograd/main.sh",
    ],
)
def test_missing_arguments_print_usage(script, env):
    result = run(script, env=env)
    assert result.returncode == 2
    assert result.stderr.startswith(f"Usage: bash {script}")
    assert calls(env) == []


def test_taskres_main_runs_three_seeds_with_overrides_last(env, tmp_path):
    result = run(
        "scripts/taskres/main.sh", "caltech101", "adam_lr2e-3_B256_ep100", "none", "4", "0.5",
        "DATALOADER.NUM_WORKERS", "1", env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    first = calls(env)
    assert [flag(c, "--seed") for c in first] == ["1", "2", "3"]
    call = first[0]
    assert flag(call, "--root") == env["DATA"]
    assert flag(call, "--trainer") == "TaskRes"
    assert flag(call, "--dataset-config-file") == "configs/datasets/caltech101.yaml"
    assert flag(call, "--config-file") == "configs/trainers/TaskRes/adam_lr2e-3_B256_ep100.yaml"
    expected_dir = (
        f"{env['OUTPUT_ROOT']}/FINAL/debug/caltech101/adam_lr2e-3_B256_ep100_4shots/seed1"
    )
    assert flag(call, "--output-dir") == expected_dir
    assert flag(call, "--enhanced-base") == "none"
    assert flag(call, "DATASET.NUM_SHOTS") == "4"
    assert flag(call, "TRAINER.TaskRes.RESIDUAL_SCALE") == "0.5"
    assert "--skip-finished" in call
    assert call[-2:] == ["DATALOADER.NUM_WORKERS", "1"]
    assert not any("cuda" in arg.lower() for arg in call)


@pytest.mark.parametrize(
    "script, args, trainer, key, folder",
    [
        ("scripts/kgcoop/main.sh", ("dtd", "rn50_ep100", "4", "8.0"), "KgCoOp",
         "TRAINER.KGCOOP.W", "dtd/KgCoOp/rn50_ep100_4shots/w8.0"),
        ("scripts/prograd/main.sh", ("dtd", "rn50", "16", "0.8"), "ProGrad",
         "TRAINER.PROGRAD.LAMBDA", "dtd/ProGrad/rn50_16shots/lambda0.8"),
    ],
)  # fmt: skip
def test_prompt_method_scripts_run_three_seeds_into_the_grids_folders(
    env, tmp_path, script, args, trainer, key, folder
):
    result = run(script, *args, "OPTIM.LR", "0.01", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    made = calls(env)
    assert [flag(c, "--seed") for c in made] == ["1", "2", "3"]
    call = made[0]
    assert flag(call, "--trainer") == trainer
    assert flag(call, "--config-file") == f"configs/trainers/{trainer}/{args[1]}.yaml"
    assert flag(call, "--output-dir") == f"{env['OUTPUT_ROOT']}/{folder}/seed1"
    assert flag(call, key) == args[3] and flag(call, "DATASET.NUM_SHOTS") == args[2]
    assert call[-2:] == ["OPTIM.LR", "0.01"]


def test_taskres_main_enhanced_base_goes_to_its_own_folder(env, tmp_path):
    base = tmp_path / "strong_base" / "DescribableTextures" / "rn50_1shots" / "model.pth.tar"
    base.parent.mkdir(parents=True)
    base.write_bytes(b"x")
    env = {**env, "SEEDS": "1"}
    result = run(
        "scripts/taskres/main.sh", "dtd", "adam_lr2e-3_B256_ep100", str(base), "1", "0.5", env=env
    )
    assert result.returncode == 0, result.stderr
    (call,) = calls(env)
    assert flag(call, "--enhanced-base") == str(base)
    assert "/FINAL/enhanced/dtd/" in flag(call, "--output-dir")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cifar10", "adam_lr2e-3_B256_ep100", "none", "1", "0.5"], "Available: caltech101"),
        (["dtd", "adam_lr9", "none", "1", "0.5"], "configs/trainers/TaskRes/adam_lr9.yaml"),
        (["dtd", "adam_lr2e-3_B256_ep100", "missing.pth.tar", "1", "0.5"], "strong_base/"),
    ],
)
def test_taskres_main_bad_input_is_named(env, args, message):
    result = run("scripts/taskres/main.sh", *args, env=env)
    assert result.returncode == 1
    assert message in result.stderr
    assert calls(env) == []


def test_missing_data_root_says_how_to_set_it(env, tmp_path):
    env = {**env, "DATA": str(tmp_path / "no-data-here")}
    result = run("scripts/coop/main.sh", "dtd", "rn50", "end", "16", "1", "False", env=env)
    assert result.returncode == 1
    assert "no-data-here" in result.stderr and "DATA=" in result.stderr


def listed_commands(result: subprocess.CompletedProcess, env: dict) -> dict[str, list[str]]:
    """The train.py command of every cell a DRY_RUN=1 grid lists, by output folder below
    OUTPUT_ROOT."""
    commands = {}
    for line in result.stdout.splitlines():
        if line.startswith("    python train.py "):
            argv = shlex.split(line)[2:]
            out = Path(flag(argv, "--output-dir")).relative_to(env["OUTPUT_ROOT"])
            commands[str(out)] = argv
    return commands


def test_grid_uses_upstream_per_dataset_choices(env):
    result = run("scripts/taskres/train_regular.sh", env={**env, "DRY_RUN": "1"})
    assert result.returncode == 0, result.stderr
    commands = listed_commands(result, env)
    assert len(commands) == 11 * 5 * 3
    # DATA holds no dataset and no weights are cached here: the dry run says so for every cell.
    assert "0 pending, 0 conflicting, 0 blocked, 165 cannot start" in result.stdout
    for dataset, config, shots, alpha in [
        ("stanford_cars", "adam_lr2e-3_B256_ep100", "1", "0.5"),
        ("oxford_flowers", "adam_lr2e-3_B256_ep100", "4", "1.0"),
        ("imagenet", "adam_lr2e-4_B256_ep100", "2", "0.5"),
        ("eurosat", "adam_lr2e-3_B256_ep200", "8", "0.5"),
        ("imagenet", "adam_lr2e-4_B256_ep200", "16", "0.5"),
    ]:
        call = commands[f"FINAL/debug/{dataset}/{config}_{shots}shots/seed3"]
        assert flag(call, "--config-file").endswith(f"configs/trainers/TaskRes/{config}.yaml")
        assert flag(call, "--dataset-config-file").endswith(f"configs/datasets/{dataset}.yaml")
        assert flag(call, "--root") == env["DATA"]
        assert flag(call, "--seed") == "3"
        assert flag(call, "--enhanced-base") == "none"
        assert flag(call, "DATASET.NUM_SHOTS") == shots
        assert flag(call, "TRAINER.TaskRes.RESIDUAL_SCALE") == alpha
        assert "--skip-finished" in call
    assert calls(env) == []


def test_enhanced_grid_builds_each_seeds_base_first(env):
    narrowed = {**env, "DRY_RUN": "1", "DATASETS": "dtd", "SHOT_LIST": "16"}
    result = run("scripts/taskres/train_enhance.sh", env=narrowed)
    assert result.returncode == 0, result.stderr
    commands = listed_commands(result, env)
    assert len(commands) == 2 * 3
    for seed in (1, 2, 3):
        base = f"FINAL/enhanced_base/dtd/adam_lr2e-4_B256_ep200_16shots/seed{seed}"
        build = commands[base]
        assert flag(build, "--trainer") == "TextProjectionTuning"
        assert flag(build, "--seed") == str(seed) and flag(build, "DATASET.NUM_SHOTS") == "16"
        taskres = commands[f"FINAL/enhanced_built/dtd/adam_lr2e-3_B256_ep200_16shots/seed{seed}"]
        assert flag(taskres, "--seed") == str(seed)
        assert flag(taskres, "--enhanced-base") == (
            f"{env['OUTPUT_ROOT']}/{base}/enhanced_base.pth.tar"
        )
    # Nothing is built yet: the TaskRes* cells wait for the first stage.
    assert "0 pending, 0 conflicting, 3 blocked, 3 cannot start" in result.stdout


def test_enhanced_grid_points_at_released_bases(env):
    narrowed = {**env, "DRY_RUN": "1", "DATASETS": "dtd oxford_flowers", "SHOT_LIST": "16",
                "BASE": "released"}  # fmt: skip
    result = run("scripts/taskres/train_enhance.sh", "OPTIM.LR", "0.01", env=narrowed)
    assert result.returncode == 0, result.stderr
    commands = listed_commands(result, env)
    assert len(commands) == 2 * 3
    dtd = commands["FINAL/enhanced/dtd/adam_lr2e-3_B256_ep200_16shots/seed1"]
    flowers = commands["FINAL/enhanced/oxford_flowers/adam_lr2e-3_B256_ep200_16shots/seed2"]
    assert (
        flag(dtd, "--enhanced-base") == "strong_base/DescribableTextures/rn50_16shots/model.pth.tar"
    )
    assert (
        flag(flowers, "--enhanced-base") == "strong_base/OxfordFlowers/rn50_16shots/model.pth.tar"
    )
    assert flag(flowers, "TRAINER.TaskRes.RESIDUAL_SCALE") == "1.0"
    assert all(call[-2:] == ["OPTIM.LR", "0.01"] for call in commands.values())
    # The bases are not there: the cells are listed as blocked, with the fix.
    assert "6 blocked" in result.stdout and "--var strong_base_dir=DIR" in result.stdout

    del narrowed["BASE"]  # a folder of released bases chooses them
    moved = run("scripts/taskres/train_enhance.sh", env={**narrowed, "STRONG_BASE_DIR": "/bases"})
    for call in listed_commands(moved, env).values():
        assert flag(call, "--enhanced-base").startswith("/bases/")


def test_regular_grid_passes_overrides_to_every_run(env):
    narrowed = {**env, "DATASETS": "dtd", "SHOT_LIST": "1 2", "SEEDS": "1", "DRY_RUN": "1"}
    result = run("scripts/taskres/train_regular.sh", "--workers", "2", "TRAINER.TaskRes.PREC",
                 "fp32", env=narrowed)  # fmt: skip
    assert result.returncode == 0, result.stderr
    made = list(listed_commands(result, env).values())
    assert [flag(c, "DATASET.NUM_SHOTS") for c in made] == ["1", "2"]
    assert all(c[-2:] == ["TRAINER.TaskRes.PREC", "fp32"] for c in made)


def test_grid_wrapper_names_a_dataset_outside_the_grid(env):
    result = run("scripts/taskres/train_regular.sh", env={**env, "DATASETS": "cifar10"})
    assert result.returncode == 2
    assert "dataset cifar10 is not in grid" in result.stderr and "caltech101" in result.stderr


def test_dg_evaluates_the_imagenet_model_on_four_shifts(env, tmp_path):
    model_dir = tmp_path / "imagenet_run"
    for seed in (1, 2, 3):
        trained(model_dir / f"seed{seed}")
    out = tmp_path / "dg"
    result = run("scripts/taskres/test_dg.sh", str(model_dir), str(out), env=env)
    assert result.returncode == 0, result.stderr
    made = calls(env)
    assert len(made) == 12
    targets = [Path(flag(c, "--dataset-config-file")).stem for c in made[::3]]
    assert targets == ["imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"]
    for call in made:
        assert "--eval-only" in call
        # The checkpoint and alpha come from the trained run's config.yaml, not the script.
        assert "--load-epoch" not in call
        assert not any(arg.startswith("TRAINER.TaskRes") for arg in call)
        assert flag(call, "--config-file").endswith("TaskRes/generalization_rn50.yaml")
        seed = flag(call, "--seed")
        assert flag(call, "--model-dir") == f"{model_dir}/seed{seed}"
    assert flag(made[0], "--output-dir") == f"{out}/imagenetv2/seed1"


def test_eval_refuses_a_scale_where_the_epoch_goes(env, tmp_path):
    (tmp_path / "m" / "seed1").mkdir(parents=True)
    result = run(
        "scripts/taskres/eval.sh", "imagenet_a", "generalization_rn50", str(tmp_path / "o"),
        str(tmp_path / "m"), "0.5", env={**env, "SEEDS": "1"},
    )  # fmt: skip
    assert result.returncode == 1
    assert "TRAINER.TaskRes.RESIDUAL_SCALE" in result.stderr
    assert calls(env) == []


def test_eval_without_trained_model_says_what_to_train(env, tmp_path):
    result = run(
        "scripts/taskres/eval.sh", "imagenet_a", "generalization_rn50", str(tmp_path / "o"),
        str(tmp_path / "nothing"), env=env,
    )  # fmt: skip
    assert result.returncode == 1
    assert "no trained model" in result.stderr and "main.sh" in result.stderr


def test_eval_evaluates_every_trained_seed_then_lists_the_missing_ones(env, tmp_path):
    """Default seeds 1 2 3; seed 2 is still training, seed 3 was never started."""
    model_dir = tmp_path / "m"
    trained(model_dir / "seed1")
    write_log(model_dir / "seed2", training_log(None, (40.0,)))
    result = run(
        "scripts/taskres/eval.sh", "dtd", "adam_lr2e-3_B256_ep100", str(tmp_path / "o"),
        str(model_dir), env=env,
    )  # fmt: skip
    assert result.returncode == 1
    assert [flag(c, "--model-dir") for c in calls(env)] == [str(model_dir / "seed1")]
    assert result.stderr == (
        "ERROR: evaluated seeds 1; not evaluated (no trained model):\n"
        f"  seed 2: {model_dir}/seed2: no finished training run (still training, or stopped "
        "before its final test)\n"
        f"  seed 3: {model_dir}/seed3: no such folder\n"
        "Train them with scripts/taskres/main.sh, or set SEEDS to the seeds you have. Then run "
        "this command again: the evaluated seeds are skipped.\n"
    )


def test_dg_checks_the_seeds_once_and_evaluates_the_trained_ones_on_every_target(env, tmp_path):
    model_dir = tmp_path / "m"
    trained(model_dir / "seed1", model_dir / "seed3")
    result = run("scripts/taskres/test_dg.sh", str(model_dir), env=env)
    assert result.returncode == 1
    made = calls(env)
    assert [flag(c, "--seed") for c in made] == ["1", "3"] * 4
    assert {flag(c, "--dataset-config-file") for c in made} == {
        f"configs/datasets/{target}.yaml"
        for target in ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")
    }
    assert result.stderr.count("not evaluated (no trained model)") == 1
    assert f"seed 2: {model_dir}/seed2: no such folder" in result.stderr


def test_coop_eval_takes_its_settings_from_the_model_folder(env, tmp_path):
    model_root = tmp_path / "m" / "rn50_ep50_16shots" / "nctx4_cscTrue_ctpfront"
    trained(model_root / "seed1")
    env = {**env, "SEEDS": "1"}
    result = run("scripts/coop/eval.sh", "imagenetv2", "rn50_ep50", str(model_root), "best",
                 env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    (call,) = calls(env)
    assert flag(call, "--load-epoch") == "best"
    assert not any(arg.startswith("TRAINER.COOP") for arg in call)
    assert flag(call, "--output-dir") == (
        f"{env['OUTPUT_ROOT']}/evaluation/CoOp/rn50_ep50_16shots/nctx4_cscTrue_ctpfront/"
        "imagenetv2/seed1"
    )


def test_coop_clip_adapter_zeroshot_and_probe_commands(env):
    env = {**env, "SEEDS": "1"}
    assert run("scripts/coop/main.sh", "ucf101", "rn50_ep50", "middle", "8", "2", "True",
               env=env).returncode == 0  # fmt: skip
    assert run("scripts/clip_adapter/main.sh", "eurosat", "vit_b16", "4", env=env).returncode == 0
    assert run("scripts/taskres/zeroshot.sh", "food101", "rn50", env=env).returncode == 0
    assert run("scripts/linear_probe/main.sh", "sun397", "vit_b32", "16", env=env).returncode == 0
    coop, adapter, zeroshot, probe = calls(env)
    assert flag(coop, "--output-dir").endswith(
        "ucf101/CoOp/rn50_ep50_2shots/nctx8_cscTrue_ctpmiddle/seed1"
    )
    assert flag(coop, "TRAINER.COOP.CLASS_TOKEN_POSITION") == "middle"
    assert flag(coop, "TRAINER.COOP.CSC") == "True"
    assert flag(adapter, "--trainer") == "CLIP_Adapter"
    assert flag(adapter, "TRAINER.CLIP_ADAPTER.RATIO") == "0.2"
    assert flag(adapter, "DATASET.NUM_SHOTS") == "4"
    assert flag(zeroshot, "--trainer") == "ZeroshotCLIP2"
    assert flag(zeroshot, "--config-file") == "configs/trainers/CoOp/rn50.yaml"
    assert "--eval-only" in zeroshot
    assert flag(probe, "--trainer") == "LinearProbeCLIP"
    assert flag(probe, "--config-file") == "configs/trainers/CoOp/vit_b32.yaml"
    assert flag(probe, "--output-dir").endswith("sun397/LinearProbeCLIP/vit_b32_16shots/seed1")


def test_a_failing_run_stops_the_sweep_with_its_exit_status(env):
    env = {**env, "STUB_EXIT": "3"}
    result = run("scripts/coop/main.sh", "dtd", "rn50", "end", "16", "1", "False", env=env)
    assert result.returncode == 3
    assert [flag(c, "--seed") for c in calls(env)] == ["1"]


def test_optional_positionals_may_be_left_out_before_overrides(env, tmp_path):
    model_dir = tmp_path / "m"
    trained(model_dir / "seed1")
    env = {**env, "SEEDS": "1"}
    dg = run("scripts/taskres/test_dg.sh", str(model_dir), "TEST.SPLIT", "test", env=env)
    assert dg.returncode == 0, dg.stderr
    made = calls(env)
    assert len(made) == 4
    assert all(c[-2:] == ["TEST.SPLIT", "test"] and "--load-epoch" not in c for c in made)
    assert (
        flag(made[0], "--output-dir")
        == f"{env['OUTPUT_ROOT']}/dg/generalization_rn50/imagenetv2/seed1"
    )
    ev = run("scripts/taskres/eval.sh", "dtd", "adam_lr2e-3_B256_ep100", str(tmp_path / "o"),
             str(model_dir), "last", "OPTIM.LR", "1", env=env)  # fmt: skip
    assert ev.returncode == 0, ev.stderr
    assert flag(calls(env)[-1], "--load-epoch") == "last"
    assert calls(env)[-1][-2:] == ["OPTIM.LR", "1"]
    bad = run("scripts/taskres/eval.sh", "dtd", "adam_lr2e-3_B256_ep100", str(tmp_path / "o"),
              str(model_dir), "lastt", env=env)  # fmt: skip
    assert bad.returncode == 1 and "neither a checkpoint" in bad.stderr


def test_clap_main_takes_an_optional_constraint_before_the_overrides(env):
    env = {**env, "SEEDS": "1"}
    config = "SGD_lr1e-1_B256_ep300"
    assert run("scripts/clap/main.sh", "dtd", config, "16", env=env).returncode == 0
    assert run("scripts/clap/main.sh", "dtd", "SGD_lr1e-1_B256_ep300_ViT16", "2", "none",
               "OPTIM.MAX_EPOCH", "10", env=env).returncode == 0  # fmt: skip
    clap, zs_lp = calls(env)
    assert flag(clap, "--trainer") == "CLAP"
    assert flag(clap, "--config-file") == "configs/trainers/CLAP/SGD_lr1e-1_B256_ep300.yaml"
    assert flag(clap, "TRAINER.CLAP.CONSTRAINT") == "l2"
    assert flag(clap, "--output-dir").endswith(
        "dtd/CLAP/SGD_lr1e-1_B256_ep300_ZSInit_l2Constraint_16shots/seed1"
    )
    assert flag(zs_lp, "TRAINER.CLAP.CONSTRAINT") == "none"
    assert zs_lp[-2:] == ["OPTIM.MAX_EPOCH", "10"]


def test_cocoop_main_and_base_to_new_commands(env):
    assert run("scripts/cocoop/main.sh", "dtd", "vit_b16_c4_ep10_batch1_ctxv1", "4",
               "OPTIM.LR", "0.01", env={**env, "SEEDS": "1"}).returncode == 0  # fmt: skip
    (call,) = calls(env)
    assert flag(call, "--trainer") == "CoCoOp"
    assert flag(call, "--output-dir").endswith(
        "dtd/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1_4shots/seed1"
    )
    assert flag(call, "DATASET.NUM_SHOTS") == "4"
    assert call[-2:] == ["OPTIM.LR", "0.01"]

    listed = {"DRY_RUN": "1", "SEEDS": "2"}
    for method, config in [("CoCoOp", "vit_b16_c4_ep10_batch1_ctxv1"), ("CoOp", "vit_b16_ctxv1")]:
        result = run("scripts/cocoop/base2new.sh", "dtd", method, env={**env, **listed})
        assert result.returncode == 0, result.stderr
        commands = listed_commands(result, env)
        common = f"dtd/shots_16/{method}/{config}/seed2"
        train = commands[f"base2new/train_base/{common}"]
        new = commands[f"base2new/test_new/{common}"]
        assert len(commands) == 2
        assert flag(train, "--trainer") == flag(new, "--trainer") == method
        assert flag(train, "--config-file").endswith(f"configs/trainers/{method}/{config}.yaml")
        assert flag(train, "DATASET.SUBSAMPLE_CLASSES") == "base"
        assert flag(new, "DATASET.SUBSAMPLE_CLASSES") == "new"
        assert "--eval-only" in new and "--eval-only" not in train
        assert flag(new, "--model-dir") == flag(train, "--output-dir")
    refused = run("scripts/cocoop/base2new.sh", "dtd", "TaskRes", env=env)
    assert refused.returncode == 1 and "choose CoCoOp or CoOp" in refused.stderr
    assert calls(env) == [call]
