"""A user's mistake is one message, before anything is written or CLIP is loaded."""

import time

import pytest

import clip.backbone
import train
from clip.clip import WeightsNotFoundError
from dassl.utils.registry import RegistryLookupError
from datasets.benchmark import DatasetLayoutError
from tests.support.tiny_run import run_train_in_process, tiny_run_argv


@pytest.fixture
def clip_never_loads(monkeypatch):
    def refuse(name):
        raise AssertionError(f"CLIP was loaded ({name}) before the inputs were checked")

    monkeypatch.setattr("trainers.clip_base.load_backbone", refuse)


def test_a_bare_train_py_prints_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit:
        train.cli([])
    message = str(exit.value.code)
    assert message.startswith("ERROR: TRAINER.NAME is empty: pass --trainer NAME")
    assert "TaskRes" in message  # the registered trainers are listed
    assert capsys.readouterr().out == ""
    assert list(tmp_path.iterdir()) == []  # no ./output/config.yaml, no log


def test_missing_data_is_refused_before_clip_loads_or_the_folder_is_written(
    tmp_path, vit_clip, clip_never_loads
):
    out = tmp_path / "run"
    argv = tiny_run_argv(
        "TaskRes",
        tmp_path / "nodata",
        out,
        {"DATASET.NAME": "Caltech101", "MODEL.BACKBONE.NAME": vit_clip},
    )
    with pytest.raises(DatasetLayoutError, match="caltech-101"):
        run_train_in_process(argv)
    assert not out.exists()


def test_an_unknown_dataset_name_is_refused_with_the_known_ones(tmp_path, vit_clip, data_root):
    out = tmp_path / "run"
    argv = tiny_run_argv(
        "TaskRes", data_root, out, {"DATASET.NAME": "Caltech", "MODEL.BACKBONE.NAME": vit_clip}
    )
    with pytest.raises(RegistryLookupError, match='Did you mean "Caltech101"'):
        run_train_in_process(argv)
    assert not out.exists()


def test_weights_not_on_this_machine_are_refused_before_data_is_read(
    tmp_path, data_root, monkeypatch
):
    monkeypatch.setenv("CLIP_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setattr("clip.clip._default_cache", lambda: tmp_path / "cache")
    monkeypatch.setattr("clip.clip._download", _no_network)
    out = tmp_path / "run"
    argv = tiny_run_argv("TaskRes", data_root, out, {"MODEL.BACKBONE.NAME": "ViT-L/14"})
    with pytest.raises(WeightsNotFoundError, match="ViT-L-14.pt"):
        run_train_in_process(argv)
    assert not out.exists()


def _no_network(url, root):
    raise ConnectionError("no network in this test")


def test_the_command_line_prints_the_message_alone_unless_asked(tmp_path, vit_clip, capsys):
    keys = {"DATASET.NAME": "Caltech101", "MODEL.BACKBONE.NAME": vit_clip}
    argv = [str(a) for a in tiny_run_argv("TaskRes", tmp_path / "nodata", tmp_path / "run", keys)]
    with pytest.raises(SystemExit) as exit:
        train.cli(argv)
    assert str(exit.value.code).startswith("ERROR: Caltech101: the dataset under DATASET.ROOT=")
    assert capsys.readouterr().out == ""  # no config dump before the error
    with pytest.raises(DatasetLayoutError):  # the traceback, on request
        train.cli(["--traceback", *argv])


def test_an_offline_openclip_name_fails_at_once(tmp_path, monkeypatch):
    pytest.importorskip("open_clip")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("CLIP_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setattr("clip.openclip.openclip_url_cache", lambda: tmp_path / "urls")

    def unreachable(address, timeout):
        raise OSError("Name or service not known")

    def download(*args, **kwargs):
        raise AssertionError("a download was attempted with no network")

    monkeypatch.setattr("socket.create_connection", unreachable)
    open_clip = pytest.importorskip("open_clip")
    monkeypatch.setattr(open_clip, "download_pretrained", download)
    start = time.monotonic()
    with pytest.raises(WeightsNotFoundError, match="huggingface.co cannot be reached"):
        clip.backbone.find_weights("openclip:ViT-B-32/laion2b_s34b_b79k")
    assert time.monotonic() - start < 5


def test_help_lists_the_registered_trainers():
    text = train.build_parser().format_help()
    assert "TaskRes" in text and "CoOp" in text and "--traceback" in text
