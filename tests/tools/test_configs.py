"""Every shipped YAML merges into the full config (defaults plus the keys that the datasets and
trainers declare) and names things that exist: registered datasets and trainers, CLIP backbones."""

from __future__ import annotations

from pathlib import Path

import pytest

import datasets  # noqa: F401  (registers datasets and DATASET.SUBSAMPLE_CLASSES)
import trainers  # noqa: F401  (registers trainers and their TRAINER.* keys)
from clip import clip
from dassl.data.datasets import DATASET_REGISTRY
from dassl.engine import TRAINER_REGISTRY
from datasets import synthetic
from tests.support.tiny_run import full_cfg
from tools import dataset_configs
from tools.dataset_configs import dataset_table
from tools.results import runs
from tools.sweep import grid

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
DATASET_CONFIGS = sorted((CONFIGS / "datasets").glob("*.yaml"))
TRAINER_CONFIGS = sorted((CONFIGS / "trainers").glob("*/*.yaml"))


def test_each_benchmark_dataset_has_one_config_naming_it():
    """configs/datasets/ is the dataset table: one config per dataset the package registers
    (fifteen; the synthetic test data has none), each naming a registered dataset; the results
    tools and the grid runner read their table from it."""
    table = dataset_table()
    assert len(table) == 15
    assert table["dtd"] == "DescribableTextures" and table["imagenet_r"] == "ImageNetR"
    benchmarks = {
        name
        for name in DATASET_REGISTRY.registered_names()
        if DATASET_REGISTRY.get(name).__module__.startswith("datasets.")
        and DATASET_REGISTRY.get(name).__module__ != synthetic.__name__
    }
    assert sorted(table.values()) == sorted(benchmarks)
    assert runs.DATASETS == {key: table[key] for key in runs.DATASET_TITLES}
    assert grid.dataset_name("oxford_flowers") == "OxfordFlowers"


def test_dataset_config_command_prints_names_and_names_a_missing_config(capsys):
    assert dataset_configs.main(["name", "sun397"]) == 0
    assert capsys.readouterr().out == "SUN397\n"
    assert dataset_configs.main(["list"]) == 0
    assert capsys.readouterr().out.split() == sorted(p.stem for p in DATASET_CONFIGS)
    assert dataset_configs.main(["name", "cifar10"]) == 1
    err = capsys.readouterr().err
    assert "configs/datasets/cifar10.yaml" in err and "caltech101 dtd" in err


def test_a_dataset_config_without_a_name_is_named(tmp_path, monkeypatch):
    (tmp_path / "broken.yaml").write_text("INPUT:\n  SIZE: (224, 224)\n")
    monkeypatch.setattr(dataset_configs, "DATASET_CONFIGS", tmp_path)
    dataset_configs.dataset_table.cache_clear()
    try:
        with pytest.raises(
            dataset_configs.DatasetConfigError, match="broken.yaml sets no DATASET.NAME"
        ):
            dataset_configs.dataset_table()
    finally:
        dataset_configs.dataset_table.cache_clear()


@pytest.mark.parametrize("path", TRAINER_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_trainer_config_merges_after_a_dataset_config(path):
    cfg = full_cfg()
    cfg.merge_from_file(str(CONFIGS / "datasets" / "caltech101.yaml"))
    cfg.merge_from_file(str(path))  # a key unknown to the tree raises KeyError here
    assert path.parent.name in TRAINER_REGISTRY
    backbone = cfg.MODEL.BACKBONE.NAME
    assert backbone in clip.available_models()
    assert tuple(cfg.INPUT.SIZE) == (224, 224)
    assert cfg.OPTIM.MAX_EPOCH > 0


def test_upstream_taskres_hyperparameters():
    """Spot checks against the upstream files (geekyutao/TaskRes configs/trainers/TaskRes)."""
    table = {
        "adam_lr2e-3_B256_ep100": ("adam", 2e-3, 100, "RN50", 500),
        "adam_lr2e-4_B256_ep200": ("adam", 2e-4, 200, "RN50", 500),
        "adam_lr2e-4_B256_ep200_RN50x16": ("adam", 2e-4, 200, "RN50x16", 500),
        "adam_lr2e-4_B256_ep200_ViT32": ("adam", 2e-4, 200, "ViT-B/32", 500),
        "generalization_vit16": ("adam", 2e-4, 200, "ViT-B/16", 1000),
    }
    for name, (optim, lr, epochs, backbone, test_bs) in table.items():
        cfg = full_cfg()
        cfg.merge_from_file(str(CONFIGS / "trainers" / "TaskRes" / f"{name}.yaml"))
        assert (cfg.OPTIM.NAME, cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH) == (optim, lr, epochs)
        assert cfg.MODEL.BACKBONE.NAME == backbone
        assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == 256
        assert cfg.DATALOADER.TEST.BATCH_SIZE == test_bs
        assert cfg.OPTIM.LR_SCHEDULER == "cosine"
        assert (cfg.OPTIM.WARMUP_EPOCH, cfg.OPTIM.WARMUP_TYPE) == (1, "constant")
        assert cfg.OPTIM.WARMUP_CONS_LR == 1e-5
        assert cfg.INPUT.INTERPOLATION == "bicubic"


def test_coop_context_init_configs():
    cfg = full_cfg()
    cfg.merge_from_file(str(CONFIGS / "trainers" / "CoOp" / "vit_b16_ep50_ctxv1.yaml"))
    assert cfg.TRAINER.COOP.CTX_INIT == "a photo of a"
    assert (cfg.OPTIM.NAME, cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH) == ("sgd", 0.002, 50)
    assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == 32
