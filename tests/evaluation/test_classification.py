"""The Classification evaluator: numbers and printed lines against hand-computed values."""

from collections import OrderedDict

import pytest
import torch

from dassl.evaluation import EVALUATOR_REGISTRY, Classification, build_evaluator
from tests.support.tiny_run import full_cfg

LAB2CNAME = {0: "cat", 1: "dog", 2: "fox"}


def logits_for(preds: list[int], num_classes: int = 3) -> torch.Tensor:
    out = torch.zeros(len(preds), num_classes)
    out[torch.arange(len(preds)), torch.tensor(preds)] = 1.0
    return out


# Ground truth / predictions, fed in two batches:
#   class 0: 4 items, predicted 0,0,0,1  -> 3 correct
#   class 1: 2 items, predicted 1,2      -> 1 correct
#   class 2: 2 items, predicted 2,2      -> 2 correct
# total 8, correct 6 -> accuracy 75.0, error 25.0
# F1 per class: c0 P=3/3 R=3/4 -> 6/7; c1 P=1/2 R=1/2 -> 1/2; c2 P=2/3 R=2/2 -> 4/5
# macro F1 = (6/7 + 1/2 + 4/5) / 3 = 0.71904761...
GT = [0, 0, 0, 0, 1, 1, 2, 2]
PRED = [0, 0, 0, 1, 1, 2, 2, 2]
MACRO_F1 = 100 * (6 / 7 + 1 / 2 + 4 / 5) / 3


def make_cfg(tmp_path, per_class=False, cmat=False):
    keys = {"OUTPUT_DIR": str(tmp_path), "TEST.PER_CLASS_RESULT": per_class}
    return full_cfg({**keys, "TEST.COMPUTE_CMAT": cmat})


def printed_from(capsys, header: str) -> list[str]:
    """The lines printed so far, from the line ``header`` on."""
    out = capsys.readouterr().out
    return out[out.index(header) :].splitlines()


def feed(evaluator):
    evaluator.process(logits_for(PRED[:5]), torch.tensor(GT[:5]))
    evaluator.process(logits_for(PRED[5:]), torch.tensor(GT[5:]))


def test_numbers_and_result_lines(tmp_path, capsys):
    evaluator = build_evaluator(make_cfg(tmp_path), lab2cname=LAB2CNAME)
    assert isinstance(evaluator, Classification)
    feed(evaluator)
    results = evaluator.evaluate()

    assert isinstance(results, OrderedDict)
    assert list(results)[:3] == ["accuracy", "error_rate", "macro_f1"]
    assert results["accuracy"] == 75.0
    assert results["error_rate"] == 25.0
    assert results["macro_f1"] == pytest.approx(MACRO_F1)
    assert all(type(v) is float for v in results.values())

    assert printed_from(capsys, "=> result")[:6] == [
        "=> result",
        "* total: 8",
        "* correct: 6",
        "* accuracy: 75.0%",
        "* error: 25.0%",
        "* macro_f1: 71.9%",
    ]


def test_thousands_separator_and_reset(tmp_path, capsys):
    evaluator = build_evaluator(make_cfg(tmp_path))
    feed(evaluator)
    evaluator.reset()
    gt = torch.zeros(1234, dtype=torch.long)
    evaluator.process(logits_for([0] * 1000 + [1] * 234), gt)
    results = evaluator.evaluate()
    assert results["accuracy"] == pytest.approx(100 * 1000 / 1234)
    out = capsys.readouterr().out
    assert "* total: 1,234\n* correct: 1,000\n* accuracy: 81.0%\n* error: 19.0%" in out


def test_per_class_lines(tmp_path, capsys):
    evaluator = build_evaluator(make_cfg(tmp_path, per_class=True), lab2cname=LAB2CNAME)
    feed(evaluator)
    results = evaluator.evaluate()
    assert printed_from(capsys, "=> per-class result")[:5] == [
        "=> per-class result",
        "* class: 0 (cat)\ttotal: 4\tcorrect: 3\tacc: 75.0%",
        "* class: 1 (dog)\ttotal: 2\tcorrect: 1\tacc: 50.0%",
        "* class: 2 (fox)\ttotal: 2\tcorrect: 2\tacc: 100.0%",
        "* average: 75.0%",
    ]
    assert results["perclass_accuracy"] == pytest.approx(75.0)


def test_per_class_needs_names(tmp_path):
    with pytest.raises(ValueError, match="lab2cname"):
        build_evaluator(make_cfg(tmp_path, per_class=True))


def test_confusion_matrix_saved_as_tensor(tmp_path, capsys):
    evaluator = build_evaluator(make_cfg(tmp_path, cmat=True), lab2cname=LAB2CNAME)
    feed(evaluator)
    evaluator.evaluate()
    cmat = torch.load(tmp_path / "cmat.pt", weights_only=True)
    # Rows are true classes normalised to 1 (see the table above GT/PRED).
    expected = torch.tensor([[0.75, 0.25, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]], dtype=cmat.dtype)
    assert torch.allclose(cmat, expected)
    assert f"Confusion matrix is saved to {tmp_path / 'cmat.pt'}" in capsys.readouterr().out


def test_bad_inputs_fail_clearly(tmp_path):
    evaluator = build_evaluator(make_cfg(tmp_path))
    with pytest.raises(RuntimeError, match="no predictions"):
        evaluator.evaluate()
    with pytest.raises(ValueError, match=r"\(batch, num_classes\)"):
        evaluator.process(torch.zeros(4), torch.zeros(4, dtype=torch.long))

    cfg = make_cfg(tmp_path)
    cfg.TEST.EVALUATOR = "Clasification"
    with pytest.raises(KeyError, match="Classification"):
        build_evaluator(cfg)
    assert "Classification" in EVALUATOR_REGISTRY
