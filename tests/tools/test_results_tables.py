"""The results tables: facts from config.yaml (or upstream's folders), cells of mean ± std with the
seed count, per-seed averages, and the exact text of every output format."""

from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path

import pytest
import torch

from tests.tools.grid import GRID, ZERO_SHOT, expected, per_seed_average, write_grid
from tests.tools.logs import training_log, write_log, write_run
from tools import parse_test_res as ptr
from tools.results import render
from tools.results.runs import ResultsError, collect_records, collect_settings
from tools.results.tables import (
    Results,
    base_to_new,
    by_dataset,
    by_shots,
    cross_dataset,
    generalization,
)


def results_of(root: Path, split_by: tuple[str, ...] = (), metric: str = "accuracy") -> Results:
    return Results(collect_records(collect_settings(root), split_by), metric)


@pytest.fixture
def grid(tmp_path: Path) -> Path:
    write_grid(tmp_path)
    return tmp_path


def rows_as_text(table) -> dict[str, list[str]]:
    return {
        " / ".join(labels): [render.cell_text(c) for c in cells] for labels, cells in table.rows
    }


def test_methods_by_datasets_at_the_largest_shot_count(grid):
    table = by_dataset(results_of(grid))
    assert table.columns == ["Caltech101", "DTD", "Average"]
    assert "at 16 shots" in table.title and "backbone RN50; protocol exact" in table.title
    rows = rows_as_text(table)
    assert list(rows) == ["Zero-shot CLIP (ensemble)", "CoOp", "TaskRes"]
    for method in ("TaskRes", "CoOp"):
        caltech = GRID[(method, "Caltech101", 16)]
        dtd = GRID[(method, "DescribableTextures", 16)]
        assert rows[method] == [
            expected(caltech),
            expected(dtd),
            expected(per_seed_average(caltech, dtd)),
        ]
    zero_shot = list(ZERO_SHOT.values())
    assert rows["Zero-shot CLIP (ensemble)"] == [
        expected([zero_shot[0]]),
        expected([zero_shot[1]]),
        expected([statistics.mean(zero_shot)]),
    ]


def test_methods_by_shots_averaged_over_datasets_per_seed(grid):
    table = by_shots(results_of(grid))
    assert table.columns == ["zero-shot", "1-shot", "16-shot"]
    rows = rows_as_text(table)
    for method in ("TaskRes", "CoOp"):
        assert rows[method] == [
            "-",
            *(
                expected(
                    per_seed_average(
                        GRID[(method, "Caltech101", s)], GRID[(method, "DescribableTextures", s)]
                    )
                )
                for s in (1, 16)
            ),
        ]
    assert rows["Zero-shot CLIP (ensemble)"][1:] == ["-", "-"]


def test_average_uses_the_seeds_every_dataset_has_and_marks_missing_datasets(tmp_path):
    write_run(tmp_path, "a/seed1", 80.0, DATASET__NAME="Caltech101", SEED=1)
    write_run(tmp_path, "a/seed2", 84.0, DATASET__NAME="Caltech101", SEED=2)
    write_run(tmp_path, "b/seed1", 60.0, DATASET__NAME="DescribableTextures", SEED=1)
    write_run(tmp_path, "c/seed1", 70.0, DATASET__NAME="EuroSAT", SEED=1, TRAINER__NAME="CoOp")
    table = by_dataset(results_of(tmp_path))
    rows = rows_as_text(table)
    assert table.columns == ["Caltech101", "DTD", "EuroSAT", "Average"]
    assert rows["TaskRes"] == [expected([80.0, 84.0]), expected([60.0]), "-", "70.00 (n=1)*"]
    assert rows["CoOp"] == ["-", "-", expected([70.0]), "70.00 (n=1)*"]
    assert "*: average over the datasets this row has only." in table.notes


def test_runs_differing_in_backbone_or_protocol_never_share_a_cell(tmp_path):
    common = {"DATASET__NAME": "EuroSAT", "SEED": 1}
    write_run(tmp_path, "rn50", 70.0, **common)
    write_run(tmp_path, "vit", 80.0, MODEL__BACKBONE__NAME="ViT-B/16", **common)
    write_run(tmp_path, "plain", 71.0, TRAINER__FEATURE_CACHE__TRAIN=True, **common)
    write_run(tmp_path, "views", 72.0, TRAINER__PROTOCOL="views:4", **common)
    rows = rows_as_text(by_dataset(results_of(tmp_path)))
    assert rows == {
        "TaskRes [RN50, protocol exact]": ["70.00 (n=1)"],
        "TaskRes [RN50, protocol plain]": ["71.00 (n=1)"],
        "TaskRes [RN50, protocol views:4]": ["72.00 (n=1)"],
        "TaskRes [ViT-B/16, protocol exact]": ["80.00 (n=1)"],
    }


def test_alpha_and_the_enhanced_base_are_facts(tmp_path):
    """The paper's alpha is 0.5, but 1.0 on Flowers: one TaskRes row. An enhanced base is another
    method (the paper's Ours*)."""
    write_run(tmp_path, "a", 90.0, DATASET__NAME="Caltech101")
    write_run(
        tmp_path, "b", 95.0, DATASET__NAME="OxfordFlowers", TRAINER__TaskRes__RESIDUAL_SCALE=1.0
    )
    write_run(
        tmp_path, "c", 92.0, DATASET__NAME="Caltech101", TRAINER__TaskRes__ENHANCED_BASE="x.pth"
    )
    records = collect_records(collect_settings(tmp_path))
    assert sorted(r.facts.alpha for r in records) == [0.5, 0.5, 1.0]
    rows = rows_as_text(by_dataset(results_of(tmp_path)))
    assert rows["TaskRes"] == ["90.00 (n=1)", "95.00 (n=1)", "92.50 (n=1)"]
    assert rows["TaskRes (enhanced base: file x.pth)"] == ["92.00 (n=1)", "-", "92.00 (n=1)*"]


def _base_file(path: Path, dataset: str, shots: int, seed: int | None) -> str:
    """An enhanced-base file; ``seed`` None: upstream's format, without provenance."""
    state = {"state_dict": {"weight": torch.zeros(4, 8)}, "epoch": 1}
    if seed is not None:
        state["built_by"] = {"dataset": dataset, "shots": shots, "seed": seed}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return str(path)


def test_tables_say_which_enhanced_base_a_row_used(tmp_path):
    """Built per seed (one row over the seeds), built with another seed, or a file by path (with
    the dataset and shot count as placeholders, so one row spans datasets)."""
    for seed, acc in ((1, 80.0), (2, 82.0)):
        own = _base_file(tmp_path / f"bases/seed{seed}/b.pth.tar", "Caltech101", 16, seed)
        write_run(tmp_path, f"own/seed{seed}", acc, SEED=seed, TRAINER__TaskRes__ENHANCED_BASE=own)
        shared = _base_file(tmp_path / "bases/seed3/b.pth.tar", "Caltech101", 16, 3)
        write_run(tmp_path, f"shared/seed{seed}", acc + 1, SEED=seed,
                  TRAINER__TaskRes__ENHANCED_BASE=shared)  # fmt: skip
    for dataset, acc in (("Caltech101", 70.0), ("DescribableTextures", 60.0)):
        released = _base_file(
            tmp_path / f"strong_base/{dataset}/rn50_16shots/m.pth", dataset, 16, None
        )
        write_run(tmp_path, f"released/{dataset}/seed1", acc, DATASET__NAME=dataset,
                  TRAINER__TaskRes__ENHANCED_BASE=released)  # fmt: skip
    rows = rows_as_text(by_dataset(results_of(tmp_path)))
    assert rows["TaskRes (enhanced base: built here, own seed)"][0] == expected([80.0, 82.0])
    assert rows["TaskRes (enhanced base: built here with seed 3)"][0] == expected([81.0, 83.0])
    file_row = f"TaskRes (enhanced base: file {tmp_path}/strong_base/<dataset>/rn50_<K>shots/m.pth)"
    assert rows[file_row][:2] == ["70.00 (n=1)", "60.00 (n=1)"]


def test_same_cell_twice_names_the_differing_keys_and_split_by_separates_them(tmp_path):
    write_run(tmp_path, "lr_a/seed1", 70.0, OPTIM__LR=0.002)
    write_run(tmp_path, "lr_b/seed1", 75.0, OPTIM__LR=0.0002)
    with pytest.raises(ResultsError) as err:
        results_of(tmp_path)
    message = str(err.value)
    assert "lr_a/seed1" in message and "lr_b/seed1" in message
    assert "OPTIM.LR (0.002 vs 0.0002)" in message and "--split-by OPTIM.LR" in message
    rows = rows_as_text(by_dataset(results_of(tmp_path, split_by=("OPTIM.LR",))))
    assert rows == {"TaskRes [LR=0.0002]": ["75.00 (n=1)"], "TaskRes [LR=0.002]": ["70.00 (n=1)"]}


def test_split_by_an_unknown_key_says_so(tmp_path):
    write_run(tmp_path, "a", 70.0)
    with pytest.raises(ResultsError, match="OPTIM.LRR"):
        results_of(tmp_path, split_by=("OPTIM.LRR",))


def trained_and_evaluated(root: Path, trainer: str, source: str, targets: dict, **keys) -> None:
    """Runs trained on ``source`` (seeds 1, 2) and evaluations of them (``targets``: dataset ->
    {evaluated keys..., "accs": [seed1, seed2]}); an evaluation's own config says 4 shots and
    seed 9, so the table's facts can only come from the trained run's config."""
    for seed, acc in enumerate(keys.pop("accs"), start=1):
        trained = write_run(
            root, f"{trainer}/train/seed{seed}", acc,
            TRAINER__NAME=trainer, DATASET__NAME=source, SEED=seed, **keys,
        )  # fmt: skip
        for dataset, spec in targets.items():
            evaluated = {k: v for k, v in spec.items() if k != "accs"}
            write_run(
                root, f"{trainer}/eval/{dataset}/seed{seed}", spec["accs"][seed - 1],
                TRAINER__NAME=trainer, DATASET__NAME=dataset, SEED=9, DATASET__NUM_SHOTS=4,
                RUN__EVAL_ONLY=True, RUN__MODEL_DIR=str(trained), **evaluated,
            )  # fmt: skip


def test_base_to_new_with_the_harmonic_mean(tmp_path):
    base = {"Caltech101": [97.0, 98.0], "DescribableTextures": [80.0, 82.0]}
    new = {"Caltech101": [93.0, 94.0], "DescribableTextures": [50.0, 54.0]}
    for dataset in base:
        trained_and_evaluated(
            tmp_path / dataset, "CoOp", dataset,
            {dataset: {"DATASET__SUBSAMPLE_CLASSES": "new", "accs": new[dataset]}},
            DATASET__SUBSAMPLE_CLASSES="base", accs=base[dataset],
        )  # fmt: skip
    table = base_to_new(results_of(tmp_path))
    assert table.label_headers == ["dataset", "method"] and table.columns == ["base", "new", "H"]
    rows = rows_as_text(table)

    def hm(b: float, n: float) -> str:
        return f"{2 * b * n / (b + n):.2f}"

    for dataset, title in (("Caltech101", "Caltech101"), ("DescribableTextures", "DTD")):
        b, n = base[dataset], new[dataset]
        assert rows[f"{title} / CoOp"] == [
            expected(b),
            expected(n),
            hm(statistics.mean(b), statistics.mean(n)),
        ]
    avg_base = per_seed_average(*base.values())
    avg_new = per_seed_average(*new.values())
    assert rows["Average / CoOp"] == [
        expected(avg_base),
        expected(avg_new),
        hm(statistics.mean(avg_base), statistics.mean(avg_new)),
    ]
    # base/new runs stay out of the all-classes tables
    assert by_dataset(results_of(tmp_path)) is None


def test_generalization_table_takes_the_trained_runs_facts(tmp_path):
    targets = {
        "ImageNetV2": [56.0, 57.0],
        "ImageNetSketch": [35.0, 34.0],
        "ImageNetA": [22.0, 23.0],
        "ImageNetR": [60.0, 61.5],
    }
    trained_and_evaluated(
        tmp_path, "TaskRes", "ImageNet", {d: {"accs": a} for d, a in targets.items()},
        accs=[64.5, 65.0],
    )  # fmt: skip
    for dataset, acc in {"ImageNet": 60.3, "ImageNetV2": 53.3, "ImageNetA": 23.9}.items():
        write_run(
            tmp_path, f"zs/{dataset}", acc,
            TRAINER__NAME="ZeroshotCLIP", DATASET__NAME=dataset, RUN__EVAL_ONLY=True,
        )  # fmt: skip
    table = generalization(results_of(tmp_path))
    assert "at 16 shots" in table.title  # the trained runs' shots, not the evaluations' 4
    assert table.columns == [
        "ImageNet", "ImageNet-V2", "ImageNet-Sketch", "ImageNet-A", "ImageNet-R",
        "Average (targets)",
    ]  # fmt: skip
    rows = rows_as_text(table)
    assert rows["TaskRes"] == [
        expected([64.5, 65.0]),
        *(expected(a) for a in targets.values()),
        expected(per_seed_average(*targets.values())),
    ]
    assert rows["Zero-shot CLIP"] == [
        "60.30 (n=1)", "53.30 (n=1)", "-", "23.90 (n=1)", "-", f"{(53.3 + 23.9) / 2:.2f} (n=1)*",
    ]  # fmt: skip
    # the shifted test sets are no columns of the in-domain table
    assert by_dataset(results_of(tmp_path)).columns == ["ImageNet"]


def test_an_evaluation_whose_trained_run_is_gone_keeps_its_own_facts(tmp_path):
    write_run(
        tmp_path, "eval/seed2", 55.0, DATASET__NAME="ImageNetV2", SEED=2, DATASET__NUM_SHOTS=8,
        RUN__EVAL_ONLY=True, RUN__MODEL_DIR=str(tmp_path / "deleted"),
    )  # fmt: skip
    (record,) = collect_records(collect_settings(tmp_path))
    assert (record.facts.shots, record.facts.seed, record.facts.source) == (8, 2, "imagenet")


def test_upstream_runs_without_config_yaml_follow_upstream_folders(tmp_path):
    final = tmp_path / "output" / "FINAL"
    for seed, acc in enumerate([70.0, 72.0], start=1):
        write_log(
            final / "debug/dtd/adam_lr2e-3_B256_ep100_2shots" / f"seed{seed}", training_log(acc)
        )
    write_log(final / "enhanced/dtd/adam_lr2e-3_B256_ep100_2shots/seed1", training_log(73.0))
    coop = tmp_path / "output/dtd/CoOp/vit_b16_ep50_2shots/nctx16_cscFalse_ctpend/seed1"
    write_log(coop, training_log(65.0))
    write_log(tmp_path / "output/ZeroshotCLIP2/rn50/dtd", training_log(42.0))
    # ours, in the same tree: same facts as the upstream TaskRes runs, so the same cell
    write_run(
        tmp_path,
        "ours/seed3",
        74.0,
        DATASET__NAME="DescribableTextures",
        DATASET__NUM_SHOTS=2,
        SEED=3,
    )

    records = {
        r.path.relative_to(tmp_path).as_posix(): r.facts
        for r in collect_records(collect_settings(tmp_path))
    }
    up = records["output/FINAL/debug/dtd/adam_lr2e-3_B256_ep100_2shots/seed1"]
    assert (up.method, up.dataset, up.shots, up.seed, up.backbone, up.protocol) == (
        "TaskRes", "dtd", 2, 1, "RN50", "exact",
    )  # fmt: skip
    coop_facts = records["output/dtd/CoOp/vit_b16_ep50_2shots/nctx16_cscFalse_ctpend/seed1"]
    assert (coop_facts.method, coop_facts.backbone, coop_facts.shots) == ("CoOp", "ViT-B/16", 2)
    zero_shot = records["output/ZeroshotCLIP2/rn50/dtd"]
    assert (zero_shot.method, zero_shot.shots, zero_shot.backbone) == ("ZeroshotCLIP2", 0, "RN50")

    rows = rows_as_text(by_dataset(results_of(tmp_path)))
    assert rows == {
        "Zero-shot CLIP (ensemble) [RN50]": ["42.00 (n=1)"],
        "CoOp [ViT-B/16]": ["65.00 (n=1)"],
        "TaskRes [RN50]": [expected([70.0, 72.0, 74.0])],
        "TaskRes (enhanced base) [RN50]": ["73.00 (n=1)"],
    }


def test_runs_without_method_or_dataset_are_named_not_guessed(tmp_path, capsys):
    write_log(tmp_path / "mystery/seed1", training_log(50.0))
    write_run(tmp_path, "known/seed1", 70.0)
    assert ptr.main([str(tmp_path), "--table"]) == 0
    out = capsys.readouterr().out
    assert "Not in the tables or figures (1 run(s)): mystery/seed1" in out
    assert "70.00 (n=1)" in out


SMALL = {"Caltech101": [90.0, 92.0], "EuroSAT": [70.5]}


@pytest.fixture
def small(tmp_path: Path) -> Path:
    for dataset, accs in SMALL.items():
        for seed, acc in enumerate(accs, start=1):
            write_run(
                tmp_path,
                f"{dataset}/seed{seed}",
                acc,
                DATASET__NAME=dataset,
                SEED=seed,
                DATASET__NUM_SHOTS=4,
            )
    return tmp_path


TITLE = "accuracy (%) at 4 shots: mean ± std over seeds (n = seeds); backbone RN50; protocol exact"


# What each text format prints for the small grid's by-dataset table.
RENDERED = {
    "terminal": [
        TITLE,
        "method            Caltech101      EuroSAT      Average",
        "--------  ------------------  -----------  -----------",
        "TaskRes   91.00 ± 1.00 (n=2)  70.50 (n=1)  80.25 (n=1)",
        "Averages over datasets are taken per seed, over the seeds every dataset has.",
    ],
    "markdown": [
        f"**{TITLE}**",
        "",
        "| method   |         Caltech101 |     EuroSAT |     Average |",
        "|----------|--------------------|-------------|-------------|",
        "| TaskRes  | 91.00 ± 1.00 (n=2) | 70.50 (n=1) | 80.25 (n=1) |",
        "",
        "Averages over datasets are taken per seed, over the seeds every dataset has.",
    ],
    "latex": [
        "\\begin{table}[t]",
        "\\centering",
        "\\caption{Test accuracy (\\%) of each method on each dataset, trained with 4 shots per "
        "class, as the mean $\\pm$ standard deviation over seeds, with the number of seeds in "
        "parentheses (backbone RN50; protocol exact). Averages over datasets are taken per seed, "
        "over the seeds every dataset has.}",
        "\\label{tab:by-dataset}",
        "\\begin{tabular}{lrrr}",
        "\\toprule",
        "method & Caltech101 & EuroSAT & Average \\\\",
        "\\midrule",
        "TaskRes & 91.00 $\\pm$ 1.00 {\\scriptsize (2)} & 70.50 {\\scriptsize (1)} & "
        "80.25 {\\scriptsize (1)} \\\\",
        "\\bottomrule",
        "\\end{tabular}",
        "\\end{table}",
    ],
}


@pytest.mark.parametrize("fmt", list(RENDERED))
def test_text_formats(small, fmt):
    text = render.render([by_dataset(results_of(small))], fmt)
    assert text.splitlines() == RENDERED[fmt]


def latex_rows(tex: str) -> dict[str, list[str]]:
    """Body rows of a booktabs tabular: first label -> its cells."""
    body = tex.split("\\midrule\n", 1)[1].split("\\bottomrule")[0]
    rows = [line.removesuffix(" \\\\").split(" & ") for line in body.splitlines()]
    return {" / ".join(r[:-3] if len(r) > 4 else r[:1]): r for r in rows if r != ["\\midrule"]}


def test_latex_bold_best_per_column_with_ties_and_by_group(grid, tmp_path):
    tex = render.latex(by_dataset(results_of(grid)), bold_best=True)
    rows = {r[0]: r[1:] for r in latex_rows(tex).values()}
    # 16 shots: TaskRes beats CoOp on both datasets and on average; zero-shot CLIP loses
    assert rows["TaskRes"][0].startswith("\\textbf{91.17 $\\pm$ 1.03}")
    assert all(c.startswith("\\textbf{") for c in rows["TaskRes"])
    assert not any("textbf" in c for c in rows["CoOp"] + rows["Zero-shot CLIP (ensemble)"])
    assert "Bold: the best value of each column." in tex
    assert "textbf" not in render.latex(by_dataset(results_of(grid)))  # only when asked

    # error: the smallest wins; a tie (as printed) bolds both; groups (base-to-new: one dataset
    # per group) compete apart
    for dataset, accs in (("Caltech101", (90.0, 90.001)), ("EuroSAT", (70.0, 60.0))):
        for trainer, acc in zip(("CoOp", "TaskRes"), accs):
            write_run(
                tmp_path / "b2n", f"{trainer}/{dataset}", acc, TRAINER__NAME=trainer,
                DATASET__NAME=dataset, DATASET__SUBSAMPLE_CLASSES="base",
            )  # fmt: skip
    table = base_to_new(results_of(tmp_path / "b2n", metric="error"))
    tex = render.latex(table, bold_best=True)
    cells = {k: v[2] for k, v in latex_rows(tex).items()}
    assert cells["Caltech101 / CoOp"].startswith("\\textbf{10.00}")
    assert cells["Caltech101 / TaskRes"].startswith("\\textbf{10.00}")  # 9.999 prints 10.00
    assert cells["EuroSAT / CoOp"].startswith("\\textbf{30.00}")
    assert "textbf" not in cells["EuroSAT / TaskRes"]
    assert tex.count("\\midrule") == 3  # after the header, then between the dataset groups
    assert "\\label{tab:base-to-new}" in tex and "H is the harmonic mean" in tex


def test_cli_bold_best_flag(grid, tmp_path):
    export = tmp_path / "paper"
    assert ptr.main([str(grid), "--export", str(export), "--bold-best"]) == 0
    tex = (export / "results.tex").read_text()
    assert "\\textbf{" in tex and "\\label{tab:by-dataset}" in tex and "\\toprule" in tex
    assert "textbf" not in (export / "results.md").read_text()


def test_csv_format(small):
    rows = list(csv.reader(io.StringIO(render.render([by_dataset(results_of(small))], "csv"))))
    assert rows == [
        ["table", "row", "column", "mean", "std", "seeds", "datasets", "partial"],
        ["by_dataset", "TaskRes", "Caltech101", "91.0000", "1.0000", "2", "", ""],
        ["by_dataset", "TaskRes", "EuroSAT", "70.5000", "", "1", "", ""],
        ["by_dataset", "TaskRes", "Average", "80.2500", "", "1", "2", "0"],
    ]


def test_cli_prints_the_tables_and_exports_every_format(grid, tmp_path, capsys):
    export = tmp_path / "paper"
    assert ptr.main([str(grid), "--table", "--shots", "1", "--export", str(export)]) == 0
    out = capsys.readouterr().out
    assert "accuracy (%) at 1 shot:" in out and "accuracy (%) by shots" in out
    caltech = GRID[("TaskRes", "Caltech101", 1)]
    assert expected(caltech) in out
    tex = (export / "results.tex").read_text()
    assert "91.00" not in tex and f"{statistics.mean(caltech):.2f} $\\pm$" in tex
    md = (export / "results.md").read_text()
    assert f"| {expected(caltech)} |" in md.replace("  ", " ").replace("  ", " ")
    table = list(csv.DictReader(io.StringIO((export / "results.csv").read_text())))
    cell = next(
        r
        for r in table
        if r["table"] == "by_dataset" and r["row"] == "TaskRes" and r["column"] == "Caltech101"
    )
    assert float(cell["mean"]) == pytest.approx(statistics.mean(caltech), abs=1e-4)
    assert float(cell["std"]) == pytest.approx(statistics.pstdev(caltech), abs=1e-4)
    assert cell["seeds"] == "3"


def test_cli_names_the_shot_counts_present(grid, capsys):
    assert ptr.main([str(grid), "--table", "--shots", "8"]) == 1
    err = capsys.readouterr().err
    assert "no finished run at 8 shots" in err and "shot counts present: 1, 16" in err


def test_ci95_spread_in_the_tables(grid, capsys):
    assert ptr.main([str(grid), "--table", "--ci95"]) == 0
    out = capsys.readouterr().out
    accs = GRID[("CoOp", "Caltech101", 16)]
    half = 1.96 * statistics.pstdev(accs) / len(accs) ** 0.5
    assert "mean ± 95% CI over seeds" in out
    assert f"{statistics.mean(accs):.2f} ± {half:.2f} (n=3)" in out


def test_a_tree_of_zero_shot_runs_gets_its_table(tmp_path):
    for dataset, acc in ZERO_SHOT.items():
        write_run(
            tmp_path, f"zs/{dataset}", acc, TRAINER__NAME="ZeroshotCLIP", DATASET__NAME=dataset
        )
    table = by_dataset(results_of(tmp_path))
    assert table.title.startswith("accuracy (%) zero-shot:")
    assert rows_as_text(table) == {
        "Zero-shot CLIP": [
            "86.30 (n=1)",
            "42.30 (n=1)",
            f"{statistics.mean(ZERO_SHOT.values()):.2f} (n=1)",
        ]
    }


@pytest.mark.parametrize(
    ("config", "protocol"),
    [
        ({"TRAINER.PROTOCOL": "exact", "TRAINER.FEATURE_CACHE.TRAIN": True}, "plain"),
        ({"TRAINER.FEATURE_CACHE.TRAIN": True}, "plain"),
        ({"TRAINER.PROTOCOL": "views:10", "TRAINER.FEATURE_CACHE.TRAIN": False}, "views:10"),
        ({}, "exact"),
    ],
)
def test_protocol_is_resolved_as_the_trainers_resolve_it(config, protocol):
    # A config.yaml always holds TRAINER.PROTOCOL (default exact) now; the older key still counts.
    from tools.results.runs import protocol_of

    assert protocol_of(config) == protocol


def test_every_shipped_method_has_a_row_title_and_a_config_folder():
    """A method added under trainers/methods/ gets its own name in tables and figures."""
    import trainers  # noqa: F401  (registers the methods)
    from dassl.engine import TRAINER_REGISTRY
    from tools.results.runs import CONFIG_FOLDERS, METHOD_TITLES

    shipped = {
        name
        for name in TRAINER_REGISTRY.registered_names()
        if TRAINER_REGISTRY.get(name).__module__.startswith("trainers.methods.")
    }
    assert shipped - set(METHOD_TITLES) == set()
    configs = Path(__file__).resolve().parents[2] / "configs" / "trainers"
    assert [m for m in shipped if not (configs / CONFIG_FOLDERS[m]).is_dir()] == []


def test_cross_dataset_table_lists_the_imagenet_model_on_every_other_dataset(tmp_path):
    targets = {"Caltech101": [90.0, 91.0], "DescribableTextures": [44.0, 46.0]}
    shifted = {"ImageNetV2": {"accs": [56.0, 57.0]}}
    trained_and_evaluated(
        tmp_path, "CoCoOp", "ImageNet",
        {**{d: {"accs": a} for d, a in targets.items()}, **shifted}, accs=[71.0, 71.5],
    )  # fmt: skip
    results = results_of(tmp_path)
    table = cross_dataset(results)
    assert "cross-dataset transfer at 16 shots" in table.title
    assert table.columns == ["ImageNet", "Caltech101", "DTD", "Average (targets)"]
    assert rows_as_text(table)["CoCoOp"] == [
        expected([71.0, 71.5]),
        *(expected(a) for a in targets.values()),
        expected(per_seed_average(*targets.values())),
    ]
    # the transfers stay out of the in-domain table; V2 goes to the generalisation table only
    assert by_dataset(results).columns == ["ImageNet"]
    assert "ImageNet-V2" in generalization(results).columns
