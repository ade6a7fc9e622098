"""exercises.py: every check accepts the reference solution and rejects a typical wrong answer, saying why."""

import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import exercises

ROOT = Path(__file__).resolve().parent.parent
CM = torch.tensor([[50, 1, 0], [9, 40, 2], [0, 3, 45]])  # rows: true class, columns: prediction


def lenet(fc1_inputs: int, padding: int = 0) -> nn.Sequential:
    """LeNet as a Sequential, as in notebook 06's exercise."""
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=padding), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 3),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(fc1_inputs, 120), nn.ReLU(),
                         nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def dropout_values() -> set[float]:
    """What nn.Dropout(0.5) really outputs for ones in train mode."""
    torch.manual_seed(0)
    return set(nn.Dropout(0.5)(torch.ones(1000)).unique().tolist())


def autograd_slope() -> float:
    x = torch.tensor(2.0, requires_grad=True)
    (3 * x ** 2 + 2 * x).backward()
    return x.grad.item()


# name: (check, reference solution, typical wrong answer, words the explanation of the wrong answer must contain)
CASES = {
    "flatten": (exercises.check_flatten, lambda: exercises.flatten_batch().flatten(start_dim=1),
                lambda: exercises.flatten_batch().view(-1), "batch dimension"),
    "accuracy": (exercises.check_accuracy,
                 lambda: (torch.tensor([[3], [1], [4], [1], [5]]).squeeze(1) == torch.tensor([3, 1, 4, 1, 9]))
                 .float().mean().item(),
                 lambda: (torch.tensor([[3], [1], [4], [1], [5]]) == torch.tensor([3, 1, 4, 1, 9])).float().mean(),
                 "broadcasts"),
    "gradient": (exercises.check_gradient, autograd_slope, lambda: 2 * autograd_slope(), "ran twice"),
    "batches": (exercises.check_batches_per_epoch, lambda: len(range(0, 50_000, 128)), lambda: 50_000 // 128,
                "drop_last"),
    "dropout": (exercises.check_dropout_values, dropout_values, lambda: {0.0, 1.0}, "1 / (1 - p)"),
    "cross_entropy": (exercises.check_cross_entropy,
                      lambda: lambda logits, labels: F.nll_loss(F.log_softmax(logits, dim=1), labels),
                      lambda: lambda logits, labels: F.nll_loss(F.softmax(logits, dim=1), labels), "-p(true class)"),
    "output_size": (exercises.check_output_size, lambda: (28 + 2 * 1 - 5) // 2 + 1, lambda: (28 + 2 * 1 - 5) // 2,
                    "add 1"),
    "receptive_field": (exercises.check_receptive_field, lambda: 1 + 4 + 1 + 4 * 2, lambda: 1 + 4 + 4, "jump 2"),
    "most_confused": (lambda pair: exercises.check_most_confused(CM, pair), lambda: (1, 0), lambda: (0, 1),
                      "reversed"),
    "precision": (lambda p: exercises.check_precision(CM, p), lambda: CM.diag() / CM.sum(dim=0),
                  lambda: CM.diag() / CM.sum(dim=1), "recall"),
    "run_count": (exercises.check_run_count, lambda: 3 * 2 * 2, lambda: 3 + 2 + 2, "multiplied"),
    "moves": (exercises.check_moves, lambda: {"b", "c"}, lambda: {"a", "b", "c"}, "moves nothing"),
    "optimizer_order": (exercises.check_optimizer_order, lambda: "b", lambda: "a", "in place"),
    "lenet_sequential": (exercises.check_lenet_sequential, lambda: lenet(400), lambda: lenet(576), "400 features"),
    "sequential_params": (exercises.check_sequential_params,
                          lambda: sum(p.numel() for p in nn.Sequential(nn.Linear(784, 256), nn.ReLU(),
                                                                       nn.Linear(256, 10)).parameters()),
                          lambda: 784 * 256 + 256 * 10, "bias"),
    "classifier_params": (exercises.check_classifier_params, lambda: 14 * 6 * 6 * 10 + 10, lambda: 14 * 6 * 6 * 10,
                          "biases"),
    "pool_later": (exercises.check_pool_later, lambda: 20, lambda: 22, "jump 1"),
}


@pytest.mark.parametrize("name", CASES)
def test_the_reference_solution_passes(name, capsys):
    check, reference, _, _ = CASES[name]
    assert check(reference()) is None  # it prints its verdict; a notebook shows only that line
    assert capsys.readouterr().out.startswith("Correct. ")


@pytest.mark.parametrize("name", CASES)
def test_a_typical_wrong_answer_fails_and_says_why(name, capsys):
    check, _, wrong, why = CASES[name]
    check(wrong())
    out = capsys.readouterr().out
    assert out.startswith("Not yet. ") and why in out, out


@pytest.mark.parametrize("name", CASES)
def test_the_placeholder_is_not_an_answer(name, capsys):
    CASES[name][0](...)
    assert capsys.readouterr().out.startswith("Not answered yet")


def verdict_of(check, answer, capsys) -> str:
    """What a check prints for an answer."""
    check(answer)
    return capsys.readouterr().out


def test_other_mistakes_get_their_own_explanation(capsys):
    log_of_softmax = lambda logits, labels: F.nll_loss(torch.log(F.softmax(logits, 1)), labels)  # noqa: E731
    assert "underflows" in verdict_of(exercises.check_cross_entropy, log_of_softmax, capsys)
    assert "3 linear layers" in verdict_of(exercises.check_lenet_sequential, lenet(576)[:-1], capsys)
    assert verdict_of(exercises.check_lenet_sequential, lenet(576, padding=2), capsys).startswith("Correct.")
    transposed = exercises.flatten_batch().transpose(2, 3).reshape(8, 784)
    assert "another order" in verdict_of(exercises.check_flatten, transposed, capsys)
    assert "Expected a number" in verdict_of(exercises.check_gradient, "14", capsys)
    unfinished = lambda logits, labels: ...  # noqa: E731
    assert verdict_of(exercises.check_cross_entropy, unfinished, capsys).startswith("Not answered yet")


def test_every_check_is_used_by_a_notebook_and_every_notebook_has_two_checked_exercises():
    used = set()
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
        calls = {m for cell in code for m in re.findall(r"exercises\.(check_\w+)\(", cell)}
        text = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        assert len(calls) >= 2, f"{path.name}: {sorted(calls)}"
        assert text.count("<details>") >= len(calls), f"{path.name}: every checked exercise has a solution"
        used |= calls
    checks = {name for name in dir(exercises) if name.startswith("check_") and name != "check_number"}
    assert checks == used
