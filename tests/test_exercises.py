"""exercises.py: every check accepts the reference solution and rejects a typical wrong answer, saying why."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import exercises

ROOT = Path(__file__).resolve().parent.parent
CM = torch.tensor([[50, 1, 0], [9, 40, 2], [0, 3, 45]])  # rows: true class, columns: prediction
SCORES, LABELS = torch.tensor(exercises.ACCURACY_SCORES), torch.tensor(exercises.ACCURACY_LABELS)


def lenet(fc1_inputs: int, padding: int = 0) -> nn.Sequential:
    """LeNet as a Sequential, as in notebook 08's exercise."""
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=padding), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 3),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(fc1_inputs, 120), nn.ReLU(),
                         nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def dropout_values() -> set[float]:
    """What nn.Dropout(0.5) really outputs for ones in train mode."""
    torch.manual_seed(0)
    return set(nn.Dropout(0.5)(torch.ones(1000)).unique().tolist())


def formula_cross_entropy(logits, labels):
    """The reference answer of 02.2: logsumexp minus the true class's logit (not F.cross_entropy, which it equals)."""
    return (torch.logsumexp(logits, dim=1) - logits.gather(1, labels.unsqueeze(1)).squeeze(1)).mean()


def minus_probability(logits, labels):
    """The errata's mistake, written out: -p(true class)."""
    return -F.softmax(logits, dim=1).gather(1, labels.unsqueeze(1)).mean()


def overflowing_cross_entropy(logits, labels):
    """The formula with exp and log: overflows for large logits."""
    return (torch.log(torch.exp(logits).sum(dim=1)) - logits.gather(1, labels.unsqueeze(1)).squeeze(1)).mean()


def library_cross_entropy(logits, labels):
    """Right numbers, but not the exercise: the library does the work."""
    return F.nll_loss(F.log_softmax(logits, dim=1), labels)


def autograd_slope() -> float:
    x = torch.tensor(2.0, requires_grad=True)
    (3 * x ** 2 + 2 * x).backward()
    return x.grad.item()


# name: (check, reference solution, typical wrong answer, words the explanation of the wrong answer must contain)
CASES = {
    "flatten": (exercises.check_flatten, lambda: exercises.flatten_batch().flatten(start_dim=2),
                lambda: exercises.flatten_batch().flatten(start_dim=1), "colour channels"),
    "accuracy": (exercises.check_accuracy,
                 lambda: (SCORES.argmax(dim=1) == LABELS.squeeze(1)).float().mean().item(),
                 lambda: (SCORES.argmax(dim=1) == LABELS).float().mean(), "broadcasts"),
    "gradient": (exercises.check_gradient, autograd_slope, lambda: 2 * autograd_slope(), "ran twice"),
    "batches": (exercises.check_batches_per_epoch, lambda: len(range(0, 45_000, 256)), lambda: 45_000 // 256,
                "drop_last"),
    "dropout": (exercises.check_dropout_values, dropout_values, lambda: {0.0, 1.0}, "1 / (1 - p)"),
    "cross_entropy": (exercises.check_cross_entropy, lambda: formula_cross_entropy, lambda: minus_probability,
                      "-p(true class)"),
    "output_size": (exercises.check_output_size, lambda: (28 + 2 * 1 - 5) // 2 + 1, lambda: (28 + 2 * 1 - 5) // 2,
                    "positions"),
    "receptive_field": (exercises.check_receptive_field, lambda: 1 + 4 + 1 + 4 * 2, lambda: 1 + 4 + 4, "jump 2"),
    "most_confused": (lambda pair: exercises.check_most_confused(CM, pair), lambda: (1, 0), lambda: (0, 1),
                      "reversed"),
    "precision": (lambda p: exercises.check_precision(CM, p), lambda: CM.diag() / CM.sum(dim=0),
                  lambda: CM.diag() / CM.sum(dim=1), "recall"),
    "run_count": (exercises.check_run_count, lambda: 3 * 2 * 2, lambda: 3 + 2 + 2, "multiplied"),
    "moves": (exercises.check_moves, lambda: {"a", "c"}, lambda: {"a", "c", "d"}, "factory functions"),
    "optimizer_order": (exercises.check_optimizer_order, lambda: "b", lambda: "a", "in place"),
    "lenet_sequential": (exercises.check_lenet_sequential, lambda: lenet(400), lambda: lenet(576), "32x32 images"),
    "sequential_params": (exercises.check_sequential_params,
                          lambda: sum(p.numel() for p in nn.Sequential(
                              nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10)
                          ).parameters()),
                          lambda: 784 * 128 + 128 * 64 + 64 * 10, "bias"),
    "classifier_params": (exercises.check_classifier_params, lambda: 11 * 5 * 5 * 10 + 10, lambda: 11 * 5 * 5 * 10,
                          "biases"),
    "stride_one": (exercises.check_stride_one, lambda: 13, lambda: 23, "jump 2"),
    "schedule_steps": (exercises.check_schedule_steps, lambda: 15 * 391, lambda: 15, "once per epoch"),
    "normalised_pixel": (exercises.check_normalised_pixel, lambda: round((0.5 - 0.1307) / 0.3081, 2),
                         lambda: 0.5 - 0.1307, "did not divide"),
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
    assert "overflows" in verdict_of(exercises.check_cross_entropy, overflowing_cross_entropy, capsys)
    assert "calls log_softmax" in verdict_of(exercises.check_cross_entropy, library_cross_entropy, capsys)
    assert "3 linear layers" in verdict_of(exercises.check_lenet_sequential, lenet(576)[:-1], capsys)
    assert verdict_of(exercises.check_lenet_sequential, lenet(576, padding=2), capsys).startswith("Correct.")
    transposed = exercises.flatten_batch().transpose(2, 3).reshape(8, 3, 1024)
    assert "another order" in verdict_of(exercises.check_flatten, transposed, capsys)
    assert "Expected a number" in verdict_of(exercises.check_gradient, "14", capsys)
    unfinished = lambda logits, labels: ...  # noqa: E731
    assert verdict_of(exercises.check_cross_entropy, unfinished, capsys).startswith("Not answered yet")


def test_every_check_is_used_by_a_notebook_and_every_core_lesson_has_two_checked_exercises():
    used = set()
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
        calls = {m for cell in code for m in re.findall(r"exercises\.(check_\w+)\(", cell)}
        text = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        if "(optional)" in "".join(cells[0]["source"]).splitlines()[0]:
            continue  # an "Under the hood" notebook writes machinery; the core lessons hold the exercises
        assert len(calls) >= 2, f"{path.name}: {sorted(calls)}"
        assert text.count("<details>") >= len(calls), f"{path.name}: every checked exercise has a solution"
        used |= calls
    helpers = ("check_number", "check_sealed")  # what the checks are built from
    checks = {name for name in dir(exercises) if name.startswith("check_") and name not in helpers}
    assert checks == used


def test_lenet_check_wants_relus_pools_3x3_kernels_and_a_flatten(capsys):
    no_relu_no_pool_5x5 = nn.Sequential(nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5), nn.Flatten(),
                                        nn.Linear(16 * 20 * 20, 120), nn.Linear(120, 84), nn.Linear(84, 10))
    assert sum(p.numel() for p in no_relu_no_pool_5x5.parameters()) == 781_706
    assert "3x3" in verdict_of(exercises.check_lenet_sequential, no_relu_no_pool_5x5, capsys)
    no_relu = nn.Sequential(*[m for m in lenet(400) if not isinstance(m, nn.ReLU)])
    assert "4; found 0" in verdict_of(exercises.check_lenet_sequential, no_relu, capsys)
    no_pool = nn.Sequential(*[m for m in lenet(400) if not isinstance(m, nn.MaxPool2d)])
    assert "max-pool" in verdict_of(exercises.check_lenet_sequential, no_pool, capsys)
    no_flatten = nn.Sequential(*[m for m in lenet(400) if not isinstance(m, nn.Flatten)])
    assert "nn.Flatten()" in verdict_of(exercises.check_lenet_sequential, no_flatten, capsys)


def test_numpy_numbers_are_numbers(capsys):
    assert verdict_of(exercises.check_batches_per_epoch, np.int64(176), capsys).startswith("Correct.")
    assert verdict_of(exercises.check_gradient, np.float32(14.0), capsys).startswith("Correct.")
    assert verdict_of(exercises.check_gradient, np.array(14.0), capsys).startswith("Correct.")


def test_most_confused_accepts_every_tied_pair(capsys):
    tied = torch.tensor([[50, 7, 0], [7, 40, 2], [0, 3, 45]])
    for pair in [(0, 1), (1, 0)]:
        assert verdict_of(lambda p: exercises.check_most_confused(tied, p), pair, capsys).startswith("Correct.")
    assert "reversed" not in verdict_of(lambda p: exercises.check_most_confused(tied, p), (2, 1), capsys)


def test_precision_of_a_class_never_predicted_may_be_nan_or_zero(capsys):
    cm = torch.tensor([[50, 0, 1], [9, 0, 2], [0, 0, 45]])  # class 1 is never predicted
    with np.errstate(invalid="ignore"):
        nan_answer = torch.tensor(cm.numpy().diagonal() / cm.numpy().sum(axis=0))
    assert torch.isnan(nan_answer[1])
    check = lambda p: exercises.check_precision(cm, p)  # noqa: E731
    assert verdict_of(check, nan_answer, capsys).startswith("Correct.")
    assert verdict_of(check, torch.nan_to_num(nan_answer), capsys).startswith("Correct.")
    assert verdict_of(check, torch.tensor([0.85, 0.0, 0.9]), capsys).startswith("Not yet.")


def test_lenet_check_wants_lenets_widths_pools_and_strides(capsys):
    narrow = nn.Sequential(*list(lenet(400))[:7], nn.Linear(400, 7), nn.ReLU(), nn.Linear(7, 3), nn.ReLU(),
                           nn.Linear(3, 10))
    assert "120, 84 and 10" in verdict_of(exercises.check_lenet_sequential, narrow, capsys)
    strided = lenet(400)
    strided[0] = nn.Conv2d(1, 6, 3, stride=2)
    assert "stride 2" in verdict_of(exercises.check_lenet_sequential, strided, capsys)
    wide_pool = lenet(400)
    wide_pool[2] = nn.MaxPool2d(3)
    assert "2x2 max-pool" in verdict_of(exercises.check_lenet_sequential, wide_pool, capsys)


def test_answers_in_other_reasonable_forms(capsys):
    assert "a fraction" in verdict_of(exercises.check_accuracy, 60, capsys)
    assert verdict_of(exercises.check_moves, "a, c", capsys).startswith("Correct.")
    assert "from a to d" in verdict_of(exercises.check_moves, {"a", "c", "e"}, capsys)
    rounded = (CM.diag() / CM.sum(dim=0)).mul(100).round().div(100)  # two decimals
    assert verdict_of(lambda p: exercises.check_precision(CM, p), rounded, capsys).startswith("Correct.")


ALIAS = F.cross_entropy  # bound before the check runs: the check must still see the library call


def test_the_cross_entropy_check_judges_what_runs_not_the_text(capsys):
    def commented(logits, labels):
        # the same number as F.cross_entropy(logits, labels), from the formula
        return (torch.logsumexp(logits, dim=1) - logits[torch.arange(len(labels)), labels]).mean()

    assert verdict_of(exercises.check_cross_entropy, commented, capsys).startswith("Correct.")
    for answer in (lambda logits, labels: nn.CrossEntropyLoss()(logits, labels),
                   lambda logits, labels: ALIAS(logits, labels),
                   lambda logits, labels: -logits.log_softmax(dim=1)[torch.arange(len(labels)), labels].mean()):
        assert "formula itself" in verdict_of(exercises.check_cross_entropy, answer, capsys)


def test_letters_are_read_as_answers_only_where_they_stand_alone(capsys):
    assert verdict_of(exercises.check_moves, "a and c", capsys).startswith("Correct.")
    assert verdict_of(exercises.check_moves, "ac", capsys).startswith("Correct.")
    for choice in ("(b)", "b)", "B", "option b"):
        assert verdict_of(exercises.check_optimizer_order, choice, capsys).startswith("Correct."), choice


def test_wrong_answers_name_the_mistake_never_the_answer(capsys):
    precision = verdict_of(lambda p: exercises.check_precision(CM, p), torch.tensor([0.5, 0.5, 0.5]), capsys)
    assert precision.startswith("Not yet.") and "diag" not in precision and "dim=0" not in precision
    assert "0.6" not in verdict_of(exercises.check_accuracy, 60, capsys)
    classifier = verdict_of(exercises.check_classifier_params, 2_750, capsys)
    assert "biases" in classifier and "2,760" not in classifier and "+ 10" not in classifier
    sequential = verdict_of(exercises.check_sequential_params, 109_184, capsys)
    assert "biases" in sequential and "109,386" not in sequential and "128 + 64" not in sequential
    dropout = verdict_of(exercises.check_dropout_values, {1.0}, capsys)
    assert "unique()" not in dropout and "2" not in dropout


def test_a_relu_after_the_last_layer_gets_its_own_reason(capsys):
    out = verdict_of(exercises.check_lenet_sequential, nn.Sequential(*lenet(400), nn.ReLU()), capsys)
    assert "clamps" in out and "collapse" not in out
