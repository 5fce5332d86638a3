"""A new method is one module: tests/trainers/cache_method.py adds a Tip-Adapter-F-style cache head
without touching shared code, and train.py trains, checkpoints, reloads and evaluates it."""

import json
import re

import torch
import torch.nn.functional as F

from tests.support.tiny_clip import TINY_INPUT_SIZE
from tests.support.warm_process import run_python

from .helpers import make_trainer

# The method registers in this subprocess only (as a file in trainers/ would when train.py
# imports the package), so nothing is left registered in the test process. After the train.py
# commands, it saves the method's logits on the test split, as the last command loaded it (with
# the beta its search before the final evaluation picks), and that beta.
RUNNER = """
import json, sys, torch
import tests.trainers.cache_method
import train
from dassl.engine import build_trainer
commands = json.loads(sys.argv[1])
for args in commands:
    train.main(train.build_parser().parse_args(args))
args = train.build_parser().parse_args(commands[-1])
cfg = train.setup_cfg(args)
trainer = build_trainer(cfg)
trainer.load_model(args.model_dir, epoch=cfg.RUN.LOAD_EPOCH)
trainer.before_final_evaluation()
features, _ = trainer.encode_data_source(trainer.dm.dataset.test)
with torch.no_grad():
    torch.save({"logits": trainer.model(features), "beta": trainer.head.beta}, sys.argv[2])
"""


def _test_accuracies(text: str) -> list[float]:
    found = re.findall(r"Evaluate on the \*test\* set.*?\* accuracy: ([\d.]+)%", text, re.S)
    return [float(x) for x in found]


def test_cache_method_trains_reloads_and_computes_its_formula(
    make_cfg, vit_clip, data_root, tmp_path
):
    opts = [
        "DATASET.NAME", "TinyImages", "DATASET.NUM_SHOTS", "-1",
        "MODEL.BACKBONE.NAME", str(vit_clip),
        "INPUT.SIZE", f"({TINY_INPUT_SIZE}, {TINY_INPUT_SIZE})",
        "INPUT.TRANSFORMS", "['random_flip', 'normalize']", "DATALOADER.NUM_WORKERS", "0",
        "DATALOADER.TRAIN_X.BATCH_SIZE", "6", "OPTIM.NAME", "sgd", "OPTIM.LR", "0.5",
        "OPTIM.MAX_EPOCH", "2", "TEST.FINAL_MODEL", "last_step", "USE_CUDA", "False",
    ]  # fmt: skip
    run, logits_file = tmp_path / "cache", tmp_path / "logits.pt"
    common = ["--root", str(data_root), "--seed", "1", "--trainer", "CacheAdapter"]
    commands = [
        [*common, "--output-dir", str(run), *opts],
        [*common, "--output-dir", str(tmp_path / "eval"), "--eval-only", "--model-dir", str(run),
         *opts],
    ]  # fmt: skip
    code, output = run_python(["-c", RUNNER, json.dumps(commands), str(logits_file)])
    assert code == 0, output[-6000:]
    trained_acc, reloaded_acc = _test_accuracies(output)
    assert reloaded_acc == trained_acc  # the checkpoint holds the whole method

    checkpoint = torch.load(run / "cache_adapter" / "model.pth.tar-2", weights_only=True)
    state = checkpoint["state_dict"]
    assert sorted(state) == ["alpha", "cache_keys", "cache_values"]
    assert state["alpha"] != 1.0  # the loop trained the blend weight (TRAINER.CACHE.ALPHA 1.0)
    # Upstream's optimizer details, given without overriding build_model: AdamW's eps, and a
    # cosine schedule over every iteration, stepped once per batch (3 batches x 2 epochs).
    assert checkpoint["optimizer"]["param_groups"][0]["eps"] == 1e-4
    assert checkpoint["scheduler"]["T_max"] == checkpoint["scheduler"]["last_epoch"] == 6

    # The same features (make_cfg has the run's input settings) and zero-shot classifier, from
    # a method that ships with the repo.
    zero_shot = make_trainer(make_cfg("ZeroshotCLIP"))
    train_features, train_labels = zero_shot.encode_data_source(zero_shot.dm.dataset.train_x)
    # Fitted from the train features: values are their one-hot labels; keys started as the
    # normalised features and were fine-tuned from there (Tip-Adapter-F).
    fitted_keys, values = F.normalize(train_features, dim=-1), F.one_hot(train_labels).float()
    keys = state["cache_keys"]
    assert torch.equal(state["cache_values"], values)
    assert not torch.allclose(keys, fitted_keys)

    # Tip-Adapter's logits: zero-shot ones plus alpha * exp(-beta (1 - cos)) affinities @ values.
    test_features, test_labels = zero_shot.encode_data_source(zero_shot.dm.dataset.test)
    saved = torch.load(logits_file, weights_only=True)
    beta = saved["beta"]
    assert f"Chosen beta {beta}" in output  # the search ran before the final tests too
    with torch.no_grad():
        zs_logits = zero_shot.model(test_features)
        affinity = F.normalize(test_features, dim=-1) @ keys.t()
        expected = zs_logits + state["alpha"] * torch.exp(-beta * (1 - affinity)) @ values
    torch.testing.assert_close(saved["logits"], expected)
    accuracy = 100 * (expected.argmax(1) == test_labels).float().mean().item()
    assert trained_acc == round(accuracy, 1)
    # The cache's votes decide where zero-shot CLIP (random tiny weights: chance) fails.
    assert accuracy == 100.0 and not torch.equal(expected.argmax(1), zs_logits.argmax(1))
