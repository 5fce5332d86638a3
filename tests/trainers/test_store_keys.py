"""The feature store as an attacker tries it: an image or a backbone replaced by another of the
same size with its mtime restored, one weights file run by two architectures, and a store that
cannot be written. Each run must give the result of a run with the store off."""

import errno
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from PIL import Image

from datasets.synthetic import write_tiny_image_dataset
from tests.support.tiny_clip import tiny_clip_checkpoint
from tests.support.tiny_openclip import write_openclip_folder
from trainers import feature_store as store_module
from trainers.views import stable_key

from .conftest import NUM_CLASSES, PER_CLASS, build_cfg
from .helpers import make_trainer
from .test_protocols import feature_lines, learned_state

STORE_OFF = ("TRAINER.FEATURE_STORE.ENABLED", False)
PLAIN = ("TRAINER.PROTOCOL", "plain", "OPTIM.MAX_EPOCH", 2)


def replace_keeping_size_and_mtime(path: Path, new_content: bytes) -> None:
    """Overwrite ``path`` in place with ``new_content`` padded to the old size, then restore
    its mtime, as ``cp -p``, ``rsync -t`` or ``touch -r`` leave a replaced file."""
    stat = path.stat()
    assert len(new_content) <= stat.st_size
    path.write_bytes(new_content + b"\0" * (stat.st_size - len(new_content)))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)


def evaluated(trainer) -> tuple[float, torch.Tensor]:
    """Test accuracy and the test features [N, D] the run evaluated."""
    accuracy = trainer.test()
    return accuracy, trainer.eval_loader("test")[1].dataset.features[0]


def test_an_image_replaced_with_its_size_and_mtime_is_a_miss(make_cfg, tmp_path, capsys):
    root = tmp_path / "data"
    write_tiny_image_dataset(root, num_classes=NUM_CLASSES, per_class=PER_CLASS)

    def run(*opts):
        return evaluated(make_trainer(make_cfg("ZeroshotCLIP", "DATASET.ROOT", str(root), *opts)))

    run()  # fills the store
    trainer = make_trainer(make_cfg("ZeroshotCLIP", "DATASET.ROOT", str(root)))
    replaced = [item.impath for item in trainer.dm.dataset.test[::3]]
    flat = tmp_path / "flat.png"  # one flat colour: far smaller than a striped image
    Image.new("RGB", (32, 32), (255, 0, 0)).save(flat)
    for path in replaced:
        replace_keeping_size_and_mtime(Path(path), flat.read_bytes())  # PIL ignores the padding
    capsys.readouterr()

    accuracy, features = run()
    n = len(trainer.dm.dataset.test)
    assert feature_lines(capsys.readouterr().out) == [("test", len(replaced), n - len(replaced))]
    expected_accuracy, expected = run(*STORE_OFF)
    assert torch.equal(features, expected) and accuracy == expected_accuracy


def test_a_backbone_replaced_with_its_size_and_mtime_is_a_miss(
    make_cfg, vit_clip, clip_dir, tmp_path, capsys
):
    """The weights' SHA-256 is remembered per file version; a replaced file is hashed again."""
    weights = tmp_path / "clip.pt"
    shutil.copyfile(vit_clip, weights)
    other = tiny_clip_checkpoint(clip_dir, arch="ViT", seed=7)
    assert other.stat().st_size == weights.stat().st_size

    def run(*opts):
        return evaluated(make_trainer(make_cfg("ZeroshotCLIP", *opts, backbone=weights)))

    run()  # fills the store and remembers the SHA-256 of the first weights
    replace_keeping_size_and_mtime(weights, other.read_bytes())
    capsys.readouterr()

    accuracy, features = run()
    assert feature_lines(capsys.readouterr().out) == [("test", 12, 0)]
    expected_accuracy, expected = run(*STORE_OFF)
    assert torch.equal(features, expected) and accuracy == expected_accuracy


def test_one_openclip_weights_file_under_two_architectures(data_root, tmp_path, capsys):
    """ViT-B-32 and ViT-B-32-quickgelu read the same weights but compute different features."""
    gelu = write_openclip_folder(tmp_path / "gelu", "vit")
    quick = tmp_path / "quickgelu"
    quick.mkdir()
    config = json.loads((gelu / "open_clip_config.json").read_text())
    config["model_cfg"]["quick_gelu"] = True
    (quick / "open_clip_config.json").write_text(json.dumps(config))
    (quick / "open_clip_model.safetensors").symlink_to(gelu / "open_clip_model.safetensors")

    def run(folder: Path, out: str):
        opts = ["INPUT.SIZE", (224, 224), *PLAIN]
        cfg = build_cfg("TaskRes", f"local-dir:{folder}", data_root, tmp_path / out, opts)
        trainer = make_trainer(cfg)
        trainer.train()
        return learned_state(trainer), feature_lines(capsys.readouterr().out)

    first, _ = run(gelu, "gelu")
    second, lines = run(quick, "quickgelu")
    assert lines and all(stored == 0 for _, _, stored in lines), lines
    assert any(not torch.equal(v, first[k]) for k, v in second.items())
    # Each architecture's features are still served to its own later runs.
    again, lines = run(quick, "again")
    assert lines and all(encoded == 0 for _, encoded, _ in lines), lines
    assert all(torch.equal(v, second[k]) for k, v in again.items())


def _read_only(*args, **kwargs):
    @contextmanager
    def fail():
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(args[0]))
        yield

    return fail()


def _short_write(*args, **kwargs):
    raise OSError("1920 requested and 992 written")  # numpy's words for a full disk


@pytest.mark.parametrize(
    "target, name, failing, cause",
    [
        ("module", "atomic_write", _read_only, "the filesystem is read-only"),
        ("np.save", "save", _short_write, "a short write: the disk is probably full"),
    ],
    ids=["read-only", "disk-full"],
)
def test_a_store_that_cannot_be_written_is_reported_once_and_the_run_goes_on(
    make_cfg, feature_store, monkeypatch, capsys, target, name, failing, cause
):
    opts = (*PLAIN, "TEST.FINAL_MODEL", "best_val")
    trainer = make_trainer(make_cfg("TaskRes", *opts, *STORE_OFF))
    trainer.train()
    expected = learned_state(trainer), trainer.test()
    capsys.readouterr()

    monkeypatch.setattr(store_module.np if target == "np.save" else store_module, name, failing)
    trainer = make_trainer(make_cfg("TaskRes", *opts))
    trainer.train()
    state, accuracy = learned_state(trainer), trainer.test()
    out = capsys.readouterr().out
    assert accuracy == expected[1]
    assert all(torch.equal(v, expected[0][k]) for k, v in state.items())
    assert out.count("cannot be written") == 1
    assert f"the feature store {feature_store} cannot be written ({cause}" in out
    assert "TRAINER.FEATURE_STORE.ENABLED False" in out
    assert not list(feature_store.rglob("*.npy"))


def test_view_seeds_do_not_follow_the_file_version(tmp_path):
    """Views are seeded from path and size only: a touched or copied image keeps its views (a
    new ctime or inode makes its store key new, not its augmentations)."""
    image = tmp_path / "ds" / "a.png"
    image.parent.mkdir()
    image.write_bytes(b"x" * 10)
    key = stable_key(str(image), str(tmp_path))
    assert key == "ds/a.png|10"
    store_key = store_module.image_key(str(image), str(tmp_path))
    copy = tmp_path / "copy.png"
    shutil.copy2(image, copy)
    os.replace(copy, image)
    assert stable_key(str(image), str(tmp_path)) == key
    assert store_module.image_key(str(image), str(tmp_path)) != store_key
