"""Evaluations beside their trained runs, as the README lays them out (``eval.sh`` output under
the same results root): a re-evaluation is counted once, another checkpoint or an overridden key
gets its own row, a transfer stays under its transfer."""

from __future__ import annotations

from pathlib import Path

from tests.tools.grid import expected
from tests.tools.logs import write_run
from tools import parse_test_res as ptr
from tools.results.evaluations import separate
from tools.results.render import cell_text
from tools.results.runs import collect_records, collect_settings
from tools.results.tables import Results, by_dataset, generalization

TRAINED = "FINAL/debug/caltech101/adam_lr2e-3_B256_ep100_4shots"


def results_of(root: Path) -> Results:
    return Results(separate(collect_records(collect_settings(root))).counted, "accuracy")


def rows_of(table) -> dict[str, list[str]]:
    return {" / ".join(labels): [cell_text(c) for c in cells] for labels, cells in table.rows}


def train(root: Path, accs: list[float], dataset: str = "Caltech101", where: str = TRAINED) -> None:
    for seed, acc in enumerate(accs, start=1):
        write_run(
            root, f"{where}/seed{seed}", acc,
            DATASET__NAME=dataset, DATASET__NUM_SHOTS=4, SEED=seed,
        )  # fmt: skip


def evaluate(
    root: Path, where: str, accs: list[float], model_dir: Path, dataset: str = "Caltech101",
    **keys: object,
) -> None:  # fmt: skip
    """eval.sh's runs: DATASET.NUM_SHOTS as the dataset config leaves it (-1), the checkpoint the
    training run tested (last_step: epoch OPTIM.MAX_EPOCH = 10) unless ``keys`` say otherwise."""
    keys = {"RUN__LOAD_EPOCH": 10, **keys}
    for seed, acc in enumerate(accs, start=1):
        write_run(
            root, f"{where}/seed{seed}", acc,
            DATASET__NAME=dataset, DATASET__NUM_SHOTS=-1, SEED=seed, RUN__EVAL_ONLY=True,
            RUN__MODEL_DIR=str(model_dir / f"seed{seed}"), **keys,
        )  # fmt: skip


def test_the_readme_layout_counts_a_re_evaluation_once(tmp_path, capsys):
    root = tmp_path / "output"
    train(root, [70.0, 72.0])
    evaluate(root, "eval/caltech101", [70.0, 72.0], root / TRAINED)
    code = ptr.main(
        [str(root), "--table", "--export", str(tmp_path / "paper"),
         "--figures", str(tmp_path / "paper")]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert rows_of(by_dataset(results_of(root))) == {"TaskRes": [expected([70.0, 72.0])]}
    assert "Counted once (2 evaluation(s) repeating" in out
    assert f"eval/caltech101/seed1 repeats {root / TRAINED}/seed1" in out
    assert (tmp_path / "paper" / "results.tex").is_file()


def test_a_re_evaluation_that_disagrees_is_reported(tmp_path, capsys):
    train(tmp_path, [70.0, 72.0])
    evaluate(tmp_path, "eval", [70.0, 60.0], tmp_path / TRAINED)
    assert ptr.main([str(tmp_path), "--table"]) == 0
    seed1, seed2 = [x for x in capsys.readouterr().out.splitlines() if "repeats" in x]
    assert "eval/seed1" in seed1 and "gives" not in seed1  # seed 1 agrees, seed 2 does not
    assert "eval/seed2" in seed2 and "gives accuracy 60.00% against 72.00%" in seed2
    assert rows_of(by_dataset(results_of(tmp_path))) == {"TaskRes": [expected([70.0, 72.0])]}


def test_another_checkpoint_or_an_overridden_key_gets_its_own_row(tmp_path):
    train(tmp_path, [70.0, 72.0])
    evaluate(tmp_path, "best", [68.0, 69.0], tmp_path / TRAINED, RUN__LOAD_EPOCH=0)
    evaluate(tmp_path, "epoch5", [66.0, 67.0], tmp_path / TRAINED, RUN__LOAD_EPOCH=5)
    evaluate(
        tmp_path, "alpha1", [71.0, 71.5], tmp_path / TRAINED,
        TRAINER__TaskRes__RESIDUAL_SCALE=1.0,
    )  # fmt: skip
    assert rows_of(by_dataset(results_of(tmp_path))) == {
        "TaskRes": [expected([70.0, 72.0])],
        "TaskRes [RESIDUAL_SCALE=1.0]": [expected([71.0, 71.5])],
        "TaskRes [checkpoint=best val]": [expected([68.0, 69.0])],
        "TaskRes [checkpoint=epoch 5]": [expected([66.0, 67.0])],
    }


def test_evaluations_of_a_run_outside_the_tree_stand_in_for_it_once(tmp_path, capsys):
    train(tmp_path / "elsewhere", [70.0, 72.0])
    root = tmp_path / "results"
    evaluate(root, "eval_a", [70.0, 72.0], tmp_path / "elsewhere" / TRAINED)
    evaluate(root, "eval_b", [70.0, 72.0], tmp_path / "elsewhere" / TRAINED)
    assert ptr.main([str(root), "--table"]) == 0
    assert "Counted once (2 evaluation(s) repeating" in capsys.readouterr().out
    table = by_dataset(results_of(root))
    assert "at 4 shots" in table.title  # the trained run's shots, not the evaluation's -1
    assert rows_of(table) == {"TaskRes": [expected([70.0, 72.0])]}


def test_a_transfer_beside_its_trained_run_stays_under_its_transfer(tmp_path):
    train(tmp_path, [64.0, 65.0], dataset="ImageNet", where="imagenet")
    evaluate(tmp_path, "dg/imagenetv2", [56.0, 57.0], tmp_path / "imagenet", dataset="ImageNetV2")
    evaluate(tmp_path, "dg_copy/imagenetv2", [56.0, 57.0], tmp_path / "imagenet",
             dataset="ImageNetV2")  # fmt: skip
    evaluate(tmp_path, "dg_epoch5/imagenetv2", [50.0, 51.0], tmp_path / "imagenet",
             dataset="ImageNetV2", RUN__LOAD_EPOCH=5)  # fmt: skip
    evaluate(tmp_path, "again", [64.0, 65.0], tmp_path / "imagenet", dataset="ImageNet")
    results = results_of(tmp_path)
    assert rows_of(by_dataset(results)) == {"TaskRes": [expected([64.0, 65.0])]}
    rows = rows_of(generalization(results))
    assert rows["TaskRes"][:2] == [expected([64.0, 65.0]), expected([56.0, 57.0])]
    assert rows["TaskRes [checkpoint=epoch 5]"][:2] == ["-", expected([50.0, 51.0])]


def test_train_py_runs_and_their_evaluations(tmp_path, capsys):
    """Real config.yaml files: eval.sh's evaluation (no DATASET.NUM_SHOTS, the default checkpoint)
    is the training run's result again; --load-epoch 1 is another selection."""
    from datasets.synthetic import write_tiny_image_dataset
    from tests.support.tiny_clip import tiny_clip_checkpoint
    from tests.support.tiny_run import run_train_in_process, tiny_run_argv

    write_tiny_image_dataset(tmp_path / "data", num_classes=3, per_class=(4, 2, 3))
    keys = {
        "MODEL.BACKBONE.NAME": tiny_clip_checkpoint(tmp_path / "clip", arch="ViT"),
        "INPUT.TRANSFORMS": "['normalize']",
        "OPTIM.MAX_EPOCH": 2,
        "TRAINER.TaskRes.PREC": "fp32",
    }
    runs = tmp_path / "output"
    trained = runs / "train" / "seed1"
    run_train_in_process(
        tiny_run_argv(
            "TaskRes",
            tmp_path / "data",
            trained,
            {**keys, "DATASET.NUM_SHOTS": 2, "TRAIN.CHECKPOINT_FREQ": 1},
        )  # fmt: skip
    )
    for name, flags in (("eval", ()), ("epoch1", ("--load-epoch", "1"))):
        run_train_in_process(
            tiny_run_argv(
                "TaskRes", tmp_path / "data", runs / name / "seed1", keys,
                ("--eval-only", "--model-dir", str(trained), *flags),
            )
        )  # fmt: skip
    capsys.readouterr()
    assert ptr.main([str(runs), "--table"]) == 0
    out = capsys.readouterr().out
    assert "Counted once (1 evaluation(s) repeating" in out and "gives" not in out
    rows = rows_of(by_dataset(results_of(runs)))
    assert list(rows) == ["TaskRes", "TaskRes [checkpoint=epoch 1]"]
    assert all(cells[0].endswith("(n=1)") for cells in rows.values())


def test_an_evaluation_of_the_val_split_is_named_not_called_unfinished(tmp_path, capsys):
    from tests.tools.logs import result_block, write_config, write_log

    train(tmp_path, [70.0])
    run = tmp_path / "val_eval" / "seed1"
    write_config(run, TEST__SPLIT="val", RUN__EVAL_ONLY=True, RUN__MODEL_DIR=str(tmp_path))
    write_log(run, "Evaluate on the *val* set\n" + result_block(80.0))
    assert ptr.main([str(tmp_path), "--table"]) == 0
    out = capsys.readouterr().out
    assert "seed1: tests the val split (TEST.SPLIT val in its config.yaml)" in out
    assert "unfinished" not in out
    assert rows_of(by_dataset(results_of(tmp_path))) == {"TaskRes": ["70.00 (n=1)"]}
