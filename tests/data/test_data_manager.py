"""DataManager / DatasetWrapper / build_data_loader on a tiny image folder (12 train, 6 val,
9 test images of 32 px, 3 classes)."""

import os

import pytest
import torch
from torch.utils.data import RandomSampler, SequentialSampler
from torchvision.transforms import ToTensor

from dassl.data import DataManager, DatasetWrapper, build_data_loader
from dassl.data.datasets import DATASET_REGISTRY
from dassl.data.transforms import build_transform
from dassl.utils.tools import ImageReadError, read_image
from datasets.synthetic import TinyImages

MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]


@DATASET_REGISTRY.register(force=True)
class TinyImagesWithU(TinyImages):
    """The tiny set with its test images reused as the unlabelled train split."""

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self._train_u = list(self.test)


def test_loaders_attributes_and_batches(cfg, capsys):
    dm = DataManager(cfg)
    assert dm.num_classes == 3
    assert dm.num_source_domains == 0
    assert dm.lab2cname == {0: "class_0", 1: "class_1", 2: "class_2"}
    assert dm.train_loader_u is None

    # 12 train items / batch 5 -> 2 full batches (the short one is dropped);
    # evaluation loaders keep every item: 6 val / 4 -> 2, 9 test / 4 -> 3.
    assert [len(dm.train_loader_x), len(dm.val_loader), len(dm.test_loader)] == [2, 2, 3]
    assert isinstance(dm.train_loader_x.sampler, RandomSampler)
    assert isinstance(dm.test_loader.sampler, SequentialSampler)

    batch = next(iter(dm.train_loader_x))
    assert set(batch) == {"img", "label", "domain", "impath", "index"}
    assert batch["img"].shape == (5, 3, 32, 32)
    assert batch["label"].dtype == torch.long and batch["label"].shape == (5,)
    assert batch["domain"].tolist() == [0] * 5
    for i, index in enumerate(batch["index"].tolist()):
        datum = dm.dataset.train_x[index]
        assert batch["impath"][i] == datum.impath
        assert batch["label"][i].item() == datum.label

    sizes = [len(b["label"]) for b in dm.test_loader]
    assert sizes == [4, 4, 1]
    first = next(iter(dm.test_loader))
    assert first["index"].tolist() == [0, 1, 2, 3]
    tfm_test = build_transform(cfg, is_train=False)
    expected = tfm_test(read_image(dm.dataset.test[0].impath))
    assert torch.allclose(first["img"][0], expected)


def test_summary_table(cfg, capsys):
    cfg.VERBOSE = False
    dm = DataManager(cfg)
    assert "# train_x" not in capsys.readouterr().out  # no summary unless VERBOSE
    dm.show_dataset_summary(cfg)
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    rows = [r for r in rows if r and not set(r[0]) <= {"-"}]  # drop tabulate's rules
    assert rows == [
        ["Dataset", "TinyImages"],
        ["#", "classes", "3"],
        ["#", "train_x", "12"],
        ["#", "val", "6"],
        ["#", "test", "9"],
    ]


def test_summary_printed_when_verbose(cfg, capsys):
    cfg.VERBOSE = True
    DataManager(cfg)
    assert "# train_x  12" in capsys.readouterr().out


@pytest.mark.parametrize(
    "batch_size,drop_last,num_batches", [(5, True, 2), (12, True, 1), (16, False, 1)]
)
def test_drop_last_only_with_a_full_batch(cfg, batch_size, drop_last, num_batches):
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = batch_size
    dm = DataManager(cfg)
    loader = dm.train_loader_x
    assert loader.drop_last is drop_last
    assert len(loader) == num_batches
    assert sum(len(b["label"]) for b in loader) == min(12, num_batches * batch_size)
    assert dm.test_loader.drop_last is False


def test_train_u_loader_same_as_x_or_own_settings(cfg):
    cfg.DATASET.NAME = "TinyImagesWithU"
    dm = DataManager(cfg)
    assert dm.train_loader_u.batch_size == 5  # SAME_AS_X copies TRAIN_X
    assert len(dm.train_loader_u.dataset) == 9

    cfg.DATALOADER.TRAIN_U.SAME_AS_X = False
    cfg.DATALOADER.TRAIN_U.BATCH_SIZE = 2
    cfg.DATALOADER.TRAIN_U.SAMPLER = "SequentialSampler"
    dm = DataManager(cfg)
    assert dm.train_loader_u.batch_size == 2
    assert isinstance(dm.train_loader_u.sampler, SequentialSampler)
    assert next(iter(dm.train_loader_u))["img"].shape == (2, 3, 32, 32)


def test_k_transforms_gives_k_views_in_training_only(cfg):
    cfg.DATALOADER.K_TRANSFORMS = 3
    dm = DataManager(cfg)
    views = next(iter(dm.train_loader_x))["img"]
    assert isinstance(views, list) and len(views) == 3
    assert all(v.shape == (5, 3, 32, 32) for v in views)
    assert not torch.equal(views[0], views[1])  # independent random crops
    assert next(iter(dm.test_loader))["img"].shape == (4, 3, 32, 32)


def test_return_img0_is_the_unaugmented_image(cfg):
    cfg.DATALOADER.RETURN_IMG0 = True
    dm = DataManager(cfg)
    batch = next(iter(dm.train_loader_x))
    assert batch["img0"].shape == (5, 3, 32, 32)
    # 32 px images at INPUT.SIZE 32: img0 is just to-tensor + normalize.
    raw = ToTensor()(read_image(batch["impath"][0]))
    assert torch.allclose(batch["img0"][0], (raw - MEAN) / STD, atol=1e-6)


def test_list_of_transforms_fills_img_img2_img3(cfg):
    dm = DataManager(cfg)
    tfm = build_transform(cfg, is_train=False)
    wrapper = DatasetWrapper(cfg, dm.dataset.test, transform=[tfm, ToTensor(), tfm])
    item = wrapper[2]
    assert {"img", "img2", "img3"} <= set(item) and item["index"] == 2
    assert torch.equal(item["img"], item["img3"])
    assert torch.equal(item["img2"], ToTensor()(read_image(dm.dataset.test[2].impath)))


def test_wrapper_without_transform_and_k_views_is_an_error(cfg):
    cfg.DATALOADER.K_TRANSFORMS = 2
    with pytest.raises(ValueError, match="K_TRANSFORMS = 2 needs a transform"):
        DatasetWrapper(cfg, [], transform=None, is_train=True)
    # Evaluation wrappers ignore K_TRANSFORMS, so no transform is fine there.
    assert DatasetWrapper(cfg, [], transform=None, is_train=False).k_tfm == 1


def test_custom_transforms_and_wrapper_are_used(cfg, capsys):
    class Wrapper(DatasetWrapper):
        def __getitem__(self, idx):
            item = super().__getitem__(idx)
            item["extra"] = 7
            return item

    dm = DataManager(
        cfg, custom_tfm_train=ToTensor(), custom_tfm_test=ToTensor(), dataset_wrapper=Wrapper
    )
    out = capsys.readouterr().out
    assert "* Using custom transform for training" in out
    assert "* Using custom transform for testing" in out
    batch = next(iter(dm.test_loader))
    assert batch["extra"].tolist() == [7] * 4
    assert batch["img"].min() >= 0  # plain ToTensor, no normalisation


def test_corrupt_and_missing_images_are_named(cfg):
    dm = DataManager(cfg)
    corrupt = dm.dataset.test[1].impath
    with open(corrupt, "wb") as f:
        f.write(b"not a png")
    with pytest.raises(ImageReadError, match=corrupt):
        next(iter(dm.test_loader))

    missing = dm.dataset.test[0].impath
    os.remove(missing)
    with pytest.raises(ImageReadError, match="not found"):
        next(iter(dm.test_loader))


@pytest.mark.parametrize(
    "sampler", ["RandomDomainSampler", "SeqDomainSampler", "RandomClassSampler"]
)
def test_upstream_samplers_not_supported_here(cfg, sampler):
    cfg.DATALOADER.TRAIN_X.SAMPLER = sampler
    with pytest.raises(
        ValueError,
        match=rf"{sampler}.*not supported by this engine.*RandomSampler.*SequentialSampler",
    ):
        DataManager(cfg)


def test_unknown_sampler(cfg):
    cfg.DATALOADER.TEST.SAMPLER = "Shuffle"
    with pytest.raises(ValueError, match=r'Unknown sampler "Shuffle"'):
        DataManager(cfg)


def test_num_workers_and_pin_memory(cfg, monkeypatch):
    cfg.DATALOADER.NUM_WORKERS = 1
    dm = DataManager(cfg)
    assert dm.test_loader.num_workers == 1
    assert sum(len(b["label"]) for b in dm.test_loader) == 9  # runs through a worker
    assert dm.test_loader.pin_memory is (torch.cuda.is_available() and cfg.USE_CUDA)

    cfg.DATALOADER.NUM_WORKERS = 0
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cfg.USE_CUDA = True
    assert build_data_loader(cfg, data_source=DataManager(cfg).dataset.test).pin_memory is True
    cfg.USE_CUDA = False
    assert build_data_loader(cfg, data_source=DataManager(cfg).dataset.test).pin_memory is False


def test_empty_source_is_a_clear_error(cfg):
    with pytest.raises(ValueError, match="empty data source"):
        build_data_loader(cfg, sampler_type="RandomSampler", data_source=[], batch_size=4)


@pytest.mark.gpu
def test_pinned_batches_on_cuda(cfg):
    cfg.USE_CUDA = True
    dm = DataManager(cfg)
    assert dm.train_loader_x.pin_memory is True
    batch = next(iter(dm.train_loader_x))
    assert batch["img"].is_pinned()
    assert batch["img"].to("cuda", non_blocking=True).shape == (5, 3, 32, 32)
