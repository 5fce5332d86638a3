"""train.py merges the config in upstream's order and maps each flag to its key."""

from pathlib import Path

from yacs.config import CfgNode

import train
from dassl.config import extend_cfg, run_config


def _write_yaml(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_merge_order_dataset_then_method_then_flags_then_opts(tmp_path: Path) -> None:
    dataset_cfg = _write_yaml(
        tmp_path / "d.yaml",
        "DATASET:\n  NAME: OxfordPets\nINPUT:\n  SIZE: (64, 64)\nOPTIM:\n  LR: 0.1\n",
    )
    method_cfg = _write_yaml(
        tmp_path / "m.yaml",
        "INPUT:\n  SIZE: (96, 96)\nOPTIM:\n  LR: 0.2\n  MAX_EPOCH: 7\nSEED: 3\n",
    )
    args = train.build_parser().parse_args(
        [
            "--dataset-config-file",
            dataset_cfg,
            "--config-file",
            method_cfg,
            "--root",
            "/data",
            "--output-dir",
            "/out",
            "--seed",
            "0",
            "--trainer",
            "CoOp",
            "--backbone",
            "RN50",
            "--head",
            "mlp",
            "--source-domains",
            "a",
            "b",
            "--target-domains",
            "c",
            "--transforms",
            "random_flip",
            "normalize",
            "--resume",
            "/old",
            "OPTIM.LR",
            "0.3",
        ]
    )
    cfg = train.setup_cfg(args)
    assert cfg.is_frozen()
    assert cfg.DATASET.NAME == "OxfordPets"  # dataset file only
    assert cfg.INPUT.SIZE == (96, 96) and cfg.OPTIM.MAX_EPOCH == 7  # method file beats dataset
    assert cfg.OPTIM.LR == 0.3  # opts beat both files
    assert cfg.SEED == 0  # --seed 0 beats the file's SEED (0 is a valid seed)
    assert (cfg.DATASET.ROOT, cfg.OUTPUT_DIR, cfg.RESUME) == ("/data", "/out", "/old")
    assert (cfg.TRAINER.NAME, cfg.MODEL.BACKBONE.NAME, cfg.MODEL.HEAD.NAME) == (
        "CoOp",
        "RN50",
        "mlp",
    )
    assert cfg.DATASET.SOURCE_DOMAINS == ["a", "b"] and cfg.DATASET.TARGET_DOMAINS == ["c"]
    assert cfg.INPUT.TRANSFORMS == ["random_flip", "normalize"]


def test_flags_left_out_keep_config_values(tmp_path: Path) -> None:
    method_cfg = _write_yaml(tmp_path / "m.yaml", "SEED: 5\nOUTPUT_DIR: /from/file\n")
    cfg = train.setup_cfg(train.build_parser().parse_args(["--config-file", method_cfg]))
    assert cfg.SEED == 5 and cfg.OUTPUT_DIR == "/from/file"


def test_enhanced_base_flag_sets_taskres_key_before_files(tmp_path: Path, monkeypatch) -> None:
    def extend_with_taskres(cfg: CfgNode) -> CfgNode:
        extend_cfg(cfg)
        if "TaskRes" not in cfg.TRAINER:
            cfg.TRAINER.TaskRes = CfgNode()
            cfg.TRAINER.TaskRes.ENHANCED_BASE = "none"
        return cfg

    monkeypatch.setattr(run_config, "extend_cfg", extend_with_taskres)
    parser = train.build_parser()
    cfg = train.setup_cfg(parser.parse_args(["--enhanced-base", "/w/base.pth"]))
    assert cfg.TRAINER.TaskRes.ENHANCED_BASE == "/w/base.pth"
    assert train.setup_cfg(parser.parse_args([])).TRAINER.TaskRes.ENHANCED_BASE == "none"
    # As upstream, the flag only sets the default: KEY VALUE opts still override it.
    cfg = train.setup_cfg(
        parser.parse_args(["--enhanced-base", "/a", "TRAINER.TaskRes.ENHANCED_BASE", "/b"])
    )
    assert cfg.TRAINER.TaskRes.ENHANCED_BASE == "/b"
