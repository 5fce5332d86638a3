"""Training protocols (exact, views:V, plain) and the feature store as runs use it: each protocol's
epoch draws are as documented, the store never changes a result, and it is shared across runs."""

import re

import pytest
import torch
from torch.utils.data import DataLoader

from dassl.utils.tools import read_image
from datasets.synthetic import write_tiny_image_dataset
from tests.support.tiny_clip import TINY_INPUT_SIZE
from tests.support.warm_process import WarmPython
from trainers.feature_store import FeatureStore, image_key
from trainers.features import FEATURES
from trainers.protocol import MAX_VIEWS, Protocol, ProtocolError, parse_protocol, protocol_of
from trainers.views import seeded_rng, stable_key, view_seed

from .conftest import NUM_CLASSES, PER_CLASS
from .helpers import make_trainer

RUNNER = "import sys, datasets.synthetic, train; train.main(train.build_parser().parse_args())"
EPOCHS = 3
# Crops, so that augmented views of a 32 px image differ from each other and from the test view.
AUGMENT = ("INPUT.TRANSFORMS", ["random_resized_crop", "random_flip", "normalize"])
TRAIN = ("OPTIM.MAX_EPOCH", EPOCHS, "DATALOADER.TRAIN_X.BATCH_SIZE", 6, *AUGMENT)
FEATURE_LINE = re.compile(r"Image features \((\w+)\): (\d+) encoded, (\d+) from the feature store")


def feature_lines(text: str) -> list[tuple[str, int, int]]:
    return [(s, int(n), int(m)) for s, n, m in FEATURE_LINE.findall(text)]


def learned_state(trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.learnable().state_dict().items()}


# ---- the config key --------------------------------------------------------------------------


def test_protocol_values_and_the_alias():
    assert parse_protocol("exact") == Protocol("exact")
    assert parse_protocol("plain") == Protocol("plain")
    assert parse_protocol("views:10") == Protocol("views", 10)
    assert str(parse_protocol("views:10")) == "views:10"
    for bad in ("views", "views:0", "views:x", "augmented", ""):
        with pytest.raises(ProtocolError, match="TRAINER.PROTOCOL"):
            parse_protocol(bad)
    # A config.yaml, flattened or nested; runs written before the key existed.
    assert protocol_of({"TRAINER.FEATURE_CACHE.TRAIN": True}) == Protocol("plain")
    assert protocol_of({"TRAINER": {"FEATURE_CACHE": {"TRAIN": False}}}) == Protocol("exact")
    assert protocol_of({"TRAINER.PROTOCOL": "views:4"}) == Protocol("views", 4)
    with pytest.raises(ProtocolError, match="FEATURE_CACHE.TRAIN.*views:4"):
        protocol_of({"TRAINER.PROTOCOL": "views:4", "TRAINER.FEATURE_CACHE.TRAIN": True})


def test_an_unknown_protocol_is_refused_before_any_work(make_cfg):
    with pytest.raises(ProtocolError, match="views:V"):
        make_trainer(make_cfg("TaskRes", "TRAINER.PROTOCOL", "views10"))


def test_a_view_count_above_the_bound_is_refused_before_any_encoding(make_cfg):
    assert parse_protocol(f"views:{MAX_VIEWS}") == Protocol("views", MAX_VIEWS)
    for bad in (f"views:{MAX_VIEWS + 1}", "views:1000000"):
        with pytest.raises(ProtocolError, match=f"{bad}.*at most {MAX_VIEWS} views"):
            parse_protocol(bad)
    with pytest.raises(ProtocolError, match=f"at most {MAX_VIEWS} views"):
        make_trainer(make_cfg("TaskRes", "TRAINER.PROTOCOL", "views:1000000"))


# ---- what each protocol's epochs draw --------------------------------------------------------


def _record_epochs(trainer) -> list[dict]:
    """Per epoch: the global RNG state before its view draw, the view choice, and each batch's
    (indices, features) as the head receives them."""
    epochs: list[dict] = []
    before_epoch, parse = trainer.before_epoch, trainer.parse_batch_train

    def recording_before_epoch() -> None:
        epochs.append({"rng": torch.get_rng_state(), "batches": []})
        before_epoch()
        if trainer.protocol.trains_on_features:
            epochs[-1]["choice"] = trainer.train_set.choice.clone()

    def recording_parse(batch):
        features, label = parse(batch)
        epochs[-1]["batches"].append((batch["index"].clone(), features.detach().clone()))
        return features, label

    trainer.before_epoch, trainer.parse_batch_train = recording_before_epoch, recording_parse
    return epochs


def _per_image(epoch: dict, n: int) -> torch.Tensor:
    """Features [n, D] of one epoch by image index; every image exactly once."""
    indices = torch.cat([i for i, _ in epoch["batches"]])
    assert sorted(indices.tolist()) == list(range(n))
    features = torch.cat([f for _, f in epoch["batches"]])
    return features[indices.argsort()]


def test_exact_encodes_freshly_augmented_images_every_epoch(make_cfg, capsys):
    trainer = make_trainer(make_cfg("TaskRes", *TRAIN))
    epochs = _record_epochs(trainer)
    trainer.train()
    n = len(trainer.dm.dataset.train_x)
    seen = [_per_image(epoch, n) for epoch in epochs]
    assert len(seen) == EPOCHS
    assert not torch.equal(seen[0], seen[1])  # new crops each epoch
    lines = feature_lines(capsys.readouterr().out)
    assert ("train", EPOCHS * n, 0) in lines


def test_plain_serves_the_test_view_of_every_image_every_epoch(make_cfg):
    trainer = make_trainer(make_cfg("TaskRes", *TRAIN, "TRAINER.PROTOCOL", "plain"))
    epochs = _record_epochs(trainer)
    trainer.train()
    train_x = trainer.dm.dataset.train_x
    expected, _ = trainer.encode_data_source(train_x, "train")  # the store has them now
    for epoch in epochs:
        assert torch.equal(_per_image(epoch, len(train_x)), expected)


def test_views_are_drawn_and_picked_as_documented(make_cfg):
    trainer = make_trainer(make_cfg("TaskRes", *TRAIN, "TRAINER.PROTOCOL", "views:3"))
    epochs = _record_epochs(trainer)
    trainer.train()
    views = trainer.train_set.features  # [V, N, D]
    n = views.shape[1]
    assert views.shape[0] == 3
    assert not torch.equal(views[0], views[1])

    # View v of image i: the train transform under RNGs seeded from (relpath|size, v).
    item = trainer.dm.dataset.train_x[4]
    transform = trainer.dm.train_loader_x.dataset.transform
    with seeded_rng(view_seed(stable_key(item.impath, trainer.cfg.DATASET.ROOT), 2)):
        image = transform(read_image(item.impath))
    assert torch.equal(trainer.model.encode_each(image[None])[0], views[2, 4])

    # Each epoch picks one view per image with torch.randint(V, (N,)) from the run's own RNG.
    choices = []
    for epoch in epochs:
        rng = torch.get_rng_state()
        torch.set_rng_state(epoch["rng"])
        expected_choice = torch.randint(3, (n,))
        torch.set_rng_state(rng)
        assert torch.equal(epoch["choice"], expected_choice)
        assert torch.equal(_per_image(epoch, n), views[expected_choice, torch.arange(n)])
        choices.append(expected_choice)
    assert not all(torch.equal(c, choices[0]) for c in choices[1:])


def test_views_do_not_move_the_run_s_random_streams(make_cfg):
    """Drawing and encoding views leaves python's and torch's global generators untouched."""
    import random

    trainer = make_trainer(make_cfg("TaskRes", *TRAIN, "TRAINER.PROTOCOL", "views:2"))
    state = (random.getstate(), torch.get_rng_state())
    trainer.train_view_features(trainer.protocol)
    assert random.getstate() == state[0] and torch.equal(torch.get_rng_state(), state[1])


def test_a_views_run_resumes_to_identical_weights(make_cfg, tmp_path):
    opts = (*TRAIN, "OPTIM.MAX_EPOCH", 4, "TRAIN.CHECKPOINT_FREQ", 1, "TRAINER.PROTOCOL", "views:3")
    opts = (*opts, "TEST.FINAL_MODEL", "best_val")
    full = make_trainer(make_cfg("TaskRes", *opts, "OUTPUT_DIR", str(tmp_path / "full")))
    full.train()

    class Interrupted(Exception):
        pass

    killed_cfg = make_cfg("TaskRes", *opts, "OUTPUT_DIR", str(tmp_path / "killed"))
    killed = make_trainer(killed_cfg.clone())
    after_epoch = killed.after_epoch

    def stop_after_two() -> None:
        after_epoch()
        if killed.epoch == 1:
            raise Interrupted

    killed.after_epoch = stop_after_two
    with pytest.raises(Interrupted):
        killed.train()
    resumed = make_trainer(killed_cfg)
    resumed.train()
    assert resumed.start_epoch == 2
    full_state, resumed_state = learned_state(full), learned_state(resumed)
    assert all(torch.equal(full_state[k], resumed_state[k]) for k in full_state)


# ---- the store never changes a result ---------------------------------------------------------


@pytest.mark.parametrize("protocol", ["exact", "plain", "views:2"])
def test_store_on_and_off_give_equal_results(make_cfg, feature_store, tmp_path, protocol, capsys):
    """Store off; store on and empty (filled with another eval batch size); store on and full:
    the same weights and test results, and the full store encodes nothing but exact's crops."""
    opts = (*TRAIN, "TRAINER.PROTOCOL", protocol, "TEST.FINAL_MODEL", "best_val")
    runs = {
        "off": ("TRAINER.FEATURE_STORE.ENABLED", False),
        "cold": ("DATALOADER.TEST.BATCH_SIZE", 5),
        "warm": (),
    }
    results, lines = {}, {}
    for name, extra in runs.items():
        cfg = make_cfg("TaskRes", *opts, *extra, "OUTPUT_DIR", str(tmp_path / name))
        trainer = make_trainer(cfg)
        trainer.train()
        results[name] = (learned_state(trainer), trainer.test())
        lines[name] = feature_lines(capsys.readouterr().out)
    for name in ("cold", "warm"):
        assert results[name][1] == results["off"][1]
        assert all(torch.equal(v, results["off"][0][k]) for k, v in results[name][0].items())
    assert all(m == 0 for _, _, m in lines["off"] + lines["cold"])
    encoded = [(split, n) for split, n, _ in lines["warm"] if n]
    assert encoded == ([("train", EPOCHS * 18)] if protocol == "exact" else [])


def _one_global_draw(state: torch.Tensor) -> torch.Tensor:
    """The global generator's state after iterating one loader (upstream's cost of an eval)."""
    saved = torch.get_rng_state()
    torch.set_rng_state(state)
    iter(DataLoader([0]))
    after = torch.get_rng_state()
    torch.set_rng_state(saved)
    return after


@pytest.mark.parametrize("cache_eval", [True, False])
def test_every_evaluation_takes_exactly_one_global_draw(make_cfg, cache_eval):
    """Encoding (into or from the store) draws nothing; iterating the eval loader one, as
    upstream's image loader does; so best-val runs and their resumes see upstream's stream."""
    for _ in range(2):  # an empty store, then a full one
        trainer = make_trainer(make_cfg("TaskRes", "TRAINER.FEATURE_CACHE.EVAL", cache_eval))
        for split in ("val", "val", "test"):
            state = torch.get_rng_state()
            trainer.test(split)
            assert torch.equal(torch.get_rng_state(), _one_global_draw(state))


def test_decode_once_serves_identical_crops_within_its_budget(make_cfg, tmp_path, capsys):
    """exact with decoded images kept (some, within the budget) draws the same crops as exact
    reading every image every epoch; with loader workers as well."""
    root = tmp_path / "large"
    write_tiny_image_dataset(root, num_classes=NUM_CLASSES, per_class=PER_CLASS, image_size=300)
    for workers in (0, 2):
        batches = {}
        for budget in (0, 1):  # 1 MB: 3 of the 18 images (300 x 300 x 3 bytes each)
            opts = (*AUGMENT, "DATASET.ROOT", str(root), "TRAINER.DECODE_ONCE_MB", budget)
            cfg = make_cfg("TaskRes", *opts, "DATALOADER.NUM_WORKERS", workers)
            trainer = make_trainer(cfg)
            trainer.before_train()
            torch.manual_seed(0)
            batches[budget] = [b["img"] for b in trainer.train_loader_x]
        assert "Decoded 3 of 18 train images once (0.8 MB" in capsys.readouterr().out
        assert all(torch.equal(a, b) for a, b in zip(batches[0], batches[1], strict=True))


# ---- the store is shared, keyed and repaired --------------------------------------------------


def test_a_grid_encodes_the_test_split_once(make_cfg, tmp_path, capsys):
    """Methods x seeds x shot counts on one dataset: the test split is encoded once, val images
    once each, and every run logs one feature line per split it uses."""
    test_encoded, runs = 0, 0
    for method in ("TaskRes", "CoOp", "CLIP_Adapter", "LinearProbeCLIP", "ZeroshotCLIP"):
        for seed in (1, 2):
            for shots in (1, 2):
                out = tmp_path / f"{method}-{seed}-{shots}"
                opts = ("OPTIM.MAX_EPOCH", 1, "SEED", seed, "DATASET.NUM_SHOTS", shots)
                opts = (*opts, "TRAINER.LINEAR_PROBE.SEARCH_STEPS", 1, "OUTPUT_DIR", str(out))
                make_trainer(make_cfg(method, *opts)).train()
                lines = feature_lines(capsys.readouterr().out)
                splits = [split for split, _, _ in lines]
                expected = {
                    "ZeroshotCLIP": ["test"],
                    "LinearProbeCLIP": ["train", "val", "test"],
                }.get(method, ["train", "test"])
                assert splits == expected, (method, lines)
                test_encoded += sum(n for split, n, _ in lines if split == "test")
                runs += 1
    assert runs == 20 and test_encoded == 12


def test_views_are_shared_by_runs_on_the_same_images(make_cfg, tmp_path, capsys):
    opts = (*TRAIN, "OPTIM.MAX_EPOCH", 1, "TRAINER.PROTOCOL", "views:2")
    for seed, expected in ((1, ("train", 36, 0)), (2, ("train", 0, 36))):
        out = str(tmp_path / f"seed{seed}")
        make_trainer(make_cfg("TaskRes", *opts, "SEED", seed, "OUTPUT_DIR", out)).train()
        assert expected in feature_lines(capsys.readouterr().out)


def test_a_changed_image_or_backbone_misses_the_store(make_cfg, clip_dir, capsys):
    from tests.support.tiny_clip import tiny_clip_checkpoint

    def evaluate(**kwargs) -> tuple[float, tuple[str, int, int]]:
        trainer = make_trainer(make_cfg("ZeroshotCLIP", **kwargs))
        acc = trainer.test()
        return acc, feature_lines(capsys.readouterr().out)[-1]

    acc, line = evaluate()
    assert line == ("test", 12, 0)
    assert evaluate() == (acc, ("test", 0, 12))
    trainer = make_trainer(make_cfg("ZeroshotCLIP"))
    image = trainer.dm.dataset.test[5].impath
    read_image(image).save(image)  # the same pixels, written again: a new mtime
    assert evaluate() == (acc, ("test", 1, 11))
    other = tiny_clip_checkpoint(clip_dir, arch="ViT", seed=7)
    assert evaluate(backbone=other)[1] == ("test", 12, 0)


def test_a_corrupt_store_file_is_reported_and_encoded_again(make_cfg, feature_store, capsys):
    first = make_trainer(make_cfg("ZeroshotCLIP")).test()
    capsys.readouterr()
    (array,) = feature_store.rglob("*.npy")
    data = bytearray(array.read_bytes())
    data[-3] ^= 0xFF
    array.write_bytes(bytes(data))
    assert make_trainer(make_cfg("ZeroshotCLIP")).test() == first
    out = capsys.readouterr().out
    assert "corrupt and will be re-encoded" in out and str(array) in out
    assert feature_lines(out) == [("test", 12, 0)]
    assert make_trainer(make_cfg("ZeroshotCLIP")).test() == first  # repaired: read back
    assert feature_lines(capsys.readouterr().out) == [("test", 0, 12)]


def test_feature_batches_and_image_batches_are_told_apart_by_key(make_cfg):
    trainer = make_trainer(make_cfg("TaskRes", "TRAINER.PROTOCOL", "plain"))
    trainer.before_train()
    feature_batch = next(iter(trainer.train_loader_x))
    assert FEATURES in feature_batch and "img" not in feature_batch
    features, _ = trainer.parse_batch_train(feature_batch)
    assert torch.equal(features, feature_batch[FEATURES])
    image_loader = trainer.dm.test_loader
    image_batch = next(iter(image_loader))
    features, _ = trainer.parse_batch_test(image_batch)
    assert torch.equal(features, trainer.encode_data_source(trainer.dm.dataset.test)[0])


def test_two_runs_encoding_the_same_images_at_once_both_finish(
    make_cfg, vit_clip, data_root, feature_store, tmp_path
):
    """Two train.py processes fill one empty store at the same time: both finish with the same
    result, and the store holds every feature whole (nothing half-written, nothing corrupt)."""
    opts = [
        "DATASET.NAME", "TinyImages", "MODEL.BACKBONE.NAME", str(vit_clip),
        "INPUT.SIZE", f"({TINY_INPUT_SIZE}, {TINY_INPUT_SIZE})", "DATALOADER.NUM_WORKERS", "0",
        "OPTIM.MAX_EPOCH", "1", "USE_CUDA", "False", "TRAINER.TaskRes.PREC", "fp32",
        "TRAINER.PROTOCOL", "views:2", "INPUT.TRANSFORMS", "['random_resized_crop', 'normalize']",
    ]  # fmt: skip
    procs = [
        WarmPython(
            [
                "-c",
                RUNNER,
                "--trainer",
                "TaskRes",
                "--root",
                str(data_root),
                "--seed",
                "1",
                "--output-dir",
                str(tmp_path / f"run{n}"),
                *opts,
            ]
        )  # fmt: skip
        for n in (1, 2)
    ]
    codes, outs = zip(*(proc.wait(timeout=300) for proc in procs))
    assert codes == (0, 0), outs
    accuracies = [re.findall(r"\* accuracy: ([\d.]+)%", out) for out in outs]
    assert accuracies[0] == accuracies[1] != []
    assert "corrupt" not in "".join(outs)
    assert not list(feature_store.rglob("*.tmp"))
    dataset = make_trainer(make_cfg("ZeroshotCLIP")).dm.dataset
    keys = {
        split: [image_key(d.impath, str(data_root)) for d in getattr(dataset, split)]
        for split in ("train_x", "test")
    }
    namespaces = FeatureStore(feature_store).namespaces()
    assert sorted(ns.identity["view"].get("index", -1) for ns in namespaces) == [-1, 0, 1]
    for ns in namespaces:
        split = "train_x" if ns.identity["view"]["kind"] == "augmented" else "test"
        found, missing = ns.lookup(keys[split], "TinyImages")
        assert missing == [] and len(found) == len(keys[split])
