"""Self-checking exercises: `exercises.check_<name>(answer)` says whether an answer is right, and why.

Every notebook ends with exercises; each has a cell that calls one check function here. A check
prints one verdict: "Correct." or "Not yet." and why, or "Not answered yet" while the cell still
holds the `...` placeholder. It returns nothing, so a notebook shows only that line. The worked
solution is in the notebook, behind "Solution". tests/test_exercises.py checks that every reference
solution passes and a typical wrong answer fails with its explanation.

The functions come in notebook order: 01 tensors, 02 first network, 03 training, 04 convolutions,
05 training a convnet, 06 Fashion-MNIST, 07 devices, 08 nn.Sequential, 09 small models (the optional
notebooks 04b and 05b have no exercises).
"""

from __future__ import annotations

import hashlib
import math
import re

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

COURSE_MODULE = "pytorch-course"  # the notebooks' setup cell checks this marker: another exercises.py would shadow it


def verdict(correct: bool, why: str) -> None:
    """Print the verdict and the reason."""
    print(("Correct. " if correct else "Not yet. ") + why)


def unanswered(answer) -> bool:
    """True (and a hint printed) while the answer is still the placeholder `...`."""
    if answer is ...:
        print("Not answered yet: replace ... with your answer and run the cell again.")
        return True
    return False


def as_number(answer, decimals: int | None = None) -> int | float | None:
    """The answer as a Python number (rounded to `decimals` if given), or None once it has said why it is not one."""
    if unanswered(answer):
        return None
    if isinstance(answer, (torch.Tensor, np.ndarray)):
        if math.prod(answer.shape) != 1:
            return verdict(False, f"Expected one number, got an array of shape {tuple(answer.shape)}.")
        answer = answer.item()
    if isinstance(answer, np.generic):  # a NumPy scalar (np.int64, np.float32, ...) is a number too
        answer = answer.item()
    if not isinstance(answer, (int, float)) or isinstance(answer, bool):
        return verdict(False, f"Expected a number, got {type(answer).__name__}.")
    return round(answer, decimals) if decimals is not None else answer


def check_number(answer, expected: float, why: str, mistakes: dict | None = None, hint: str = "",
                 decimals: int | None = None) -> None:
    """Compare a numeric answer (rounded to `decimals` if given); a known wrong answer gets its own explanation."""
    answer = as_number(answer, decimals)
    if answer is None:
        return
    if math.isclose(answer, expected, rel_tol=1e-6, abs_tol=1e-9):
        return verdict(True, why)
    for wrong, explanation in (mistakes or {}).items():
        if math.isclose(answer, wrong, rel_tol=1e-6, abs_tol=1e-9):
            return verdict(False, f"{answer} is a common mistake: {explanation}")
    return verdict(False, f"{answer} is not it. {hint}".strip())


# The student edition (tools/student_edition.py) replaces the body of every check that compares one
# number by `check_sealed(answer, SEALED[...])`: the expected number and the mistakes are stored as
# hashes, and each explanation is encrypted with the number it explains, so the checks work as before
# but the file no longer shows the answers. (Brute force would find a whole number; it is not meant to
# resist that, only to keep the answers out of sight.)
SEALED: dict[str, dict] = {}


def answer_key(number: float, decimals: int | None = None) -> str:
    """A number written the same way however it was computed: 6 significant digits, or `decimals` places."""
    return f"{round(number, decimals):.{decimals}f}" if decimals is not None else f"{number:.6g}"


def _digest(key: str, purpose: str) -> bytes:
    return hashlib.sha256(f"pytorch-course:{purpose}:{key}".encode()).digest()


def _xor_with_key(data: bytes, key: str) -> bytes:
    """`data` XORed with a keystream made from `key` by SHA-256: the same call encrypts and decrypts."""
    stream = b"".join(_digest(key, f"stream{i}") for i in range(len(data) // 32 + 1))
    return bytes(a ^ b for a, b in zip(data, stream))


def seal_text(text: str, key: str) -> str:
    """`text` encrypted with `key`, as hex."""
    return _xor_with_key(text.encode(), key).hex()


def open_text(sealed: str, key: str) -> str:
    """The text that seal_text encrypted with `key`."""
    return _xor_with_key(bytes.fromhex(sealed), key).decode()


def seal_number_check(expected: float, why: str, mistakes: dict | None = None, hint: str = "",
                      decimals: int | None = None) -> dict:
    """A check_number call's arguments with the answers hashed and the explanations encrypted."""
    def entry(number: float, text: str) -> tuple[str, str]:
        key = answer_key(number, decimals)
        return _digest(key, "answer").hex(), seal_text(text, key)

    right = entry(expected, why)
    return {"answer": right[0], "why": right[1], "hint": hint, "decimals": decimals,
            "mistakes": dict(entry(wrong, text) for wrong, text in (mistakes or {}).items())}


def check_sealed(answer, sealed: dict) -> None:
    """check_number for a sealed check: the same verdicts, from hashes."""
    answer = as_number(answer, sealed["decimals"])
    if answer is None:
        return
    key = answer_key(answer, sealed["decimals"])
    digest = _digest(key, "answer").hex()
    if digest == sealed["answer"]:
        return verdict(True, open_text(sealed["why"], key))
    if digest in sealed["mistakes"]:
        return verdict(False, f"{answer} is a common mistake: {open_text(sealed['mistakes'][digest], key)}")
    return verdict(False, f"{answer} is not it. {sealed['hint']}".strip())


# ==================== 01 tensors

def flatten_batch() -> torch.Tensor:
    """The batch of exercise 01.1: 8 colour (RGB) 32x32 images, numbered pixel by pixel."""
    return torch.arange(8 * 3 * 32 * 32, dtype=torch.float32).reshape(8, 3, 32, 32)


def check_flatten(flat) -> None:
    """01.1: every channel of every image of flatten_batch() as one row of 1,024 pixels, shape (8, 3, 1024)."""
    if unanswered(flat):
        return
    batch = flatten_batch()
    if not isinstance(flat, torch.Tensor):
        return verdict(False, f"Expected a tensor, got {type(flat).__name__}.")
    if tuple(flat.shape) == (8, 3 * 1024):
        return verdict(False, "shape (8, 3072): the three colour channels were flattened together too. Keep "
                              "dimensions 0 and 1 and flatten only height and width: flatten(start_dim=2).")
    if tuple(flat.shape) == (8 * 3 * 1024,):
        return verdict(False, "shape (24576,): everything became one row, the batch too.")
    if tuple(flat.shape) != (8, 3, 1024):
        return verdict(False, f"shape {tuple(flat.shape)}; expected (8, 3, 1024): per image, one row per channel.")
    if not torch.equal(flat, batch.reshape(8, 3, 1024)):
        return verdict(False, "the shape is right but the numbers are in another order: a row must be one "
                              "channel's pixels, row by row (did you transpose or permute?).")
    return verdict(True, "flatten(start_dim=2) keeps the batch and the channels and joins height and width: "
                         "reshape(8, 3, -1) and view(8, 3, 1024) give the same.")


ACCURACY_SCORES = [[0.1, 2.0, 0.3, 0.0], [1.5, 0.2, 0.1, 0.0], [0.0, 0.1, 0.2, 3.0], [0.3, 0.2, 0.9, 0.1],
                   [2.0, 0.1, 0.0, 0.5]]  # exercise 01.2: 5 images, scores for 4 classes
ACCURACY_LABELS = [[1], [0], [3], [1], [3]]  # ... and their labels, as a column


def check_accuracy(accuracy) -> None:
    """01.2: accuracy of the (5, 4) scores ACCURACY_SCORES against the (5, 1) labels ACCURACY_LABELS."""
    predicted, labels = torch.tensor(ACCURACY_SCORES).argmax(dim=1), torch.tensor(ACCURACY_LABELS)
    broadcast = (predicted == labels).float().mean().item()  # the (5, 5) matrix's mean
    return check_number(
        accuracy, 0.6, "argmax(dim=1) gives the predicted classes (1, 0, 3, 2, 0); squeezed to (5,), the labels "
                       "agree in 3 of 5 places.",
        {broadcast: "comparing the (5,) predictions with the (5, 1) labels broadcasts to a (5, 5) matrix of every "
                    "prediction against every label. Squeeze the labels to (5,) first.",
         3: "that is the number of right predictions; accuracy divides by the 5 images.",
         60: "that is a percent; the exercise asks for a fraction between 0 and 1."},
        "The predicted class of an image is the index of its largest score; compare it with the label.",
    )


def check_gradient(slope) -> None:
    """01.3: dy/dx of y = 3x^2 + 2x at x = 2, as autograd computes it."""
    return check_number(
        slope, 14.0, "dy/dx = 6x + 2 = 14 at x = 2, and x.grad says the same.",
        {28.0: "backward() ran twice: gradients add up in .grad until you reset it (x.grad = None or "
               "optimizer.zero_grad()).",
         12.0: "that forgets the derivative of the 2x term."},
        "Differentiate term by term, or read x.grad after y.backward().",
    )


# ==================== 02 first network

def check_batches_per_epoch(batches) -> None:
    """02.1: iterations in one epoch over 45,000 images with batch_size=256 (DataLoader defaults)."""
    return check_number(
        batches, 176, "175 full batches of 256 and a last one of 200: len(loader) = ceil(45,000 / 256) = 176.",
        {175: "the last, smaller batch (200 images) still counts unless the DataLoader has drop_last=True.",
         45_000 / 256: "the number of batches is a whole number: the last one is smaller."},
        "Divide the images by the batch size and think about the remainder.",
    )


class LibraryLossCalled(Exception):
    """Raised when an answer calls one of the library functions an exercise asks to write by hand."""


class _RefuseLibraryLoss(TorchFunctionMode):
    """While active, any torch function that computes cross-entropy, NLL or log-softmax raises LibraryLossCalled.

    A TorchFunctionMode sees every torch function call (F.*, torch.*, tensor methods, and those inside
    nn.CrossEntropyLoss), so an alias such as `ce = F.cross_entropy` is caught too, and a comment is not.
    """

    REFUSED = {"cross_entropy", "nll_loss", "log_softmax", "_log_softmax", "cross_entropy_loss", "nll_loss_nd",
               "nll_loss2d"}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in self.REFUSED:
            raise LibraryLossCalled(name)
        return func(*args, **(kwargs or {}))


def check_cross_entropy(my_cross_entropy) -> None:
    """02.2: a function (logits, labels) -> mean cross-entropy from its formula, stable even for very large logits."""
    if unanswered(my_cross_entropy):
        return
    generator = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(16, 10, generator=generator), torch.randint(0, 10, (16,), generator=generator)
    for scale, what in ((1.0, "ordinary logits"), (200.0, "logits in the hundreds")):
        expected = F.cross_entropy(scale * logits, labels)
        try:
            with _RefuseLibraryLoss():  # judged by what runs: the library's loss functions refuse to run
                result = my_cross_entropy(scale * logits, labels)
            if unanswered(result):
                return
            got = torch.as_tensor(result, dtype=torch.float32)
        except LibraryLossCalled as call:
            return verdict(False, f"the exercise asks for the formula itself, but your function calls {call}: "
                                  "write the two terms of the formula with tensor operations.")
        except Exception as err:  # any error in the student's function is the answer to report
            return verdict(False, f"your function raised {type(err).__name__}: {err}")
        if got.numel() != 1:
            return verdict(False, f"your function returns {got.numel()} numbers; expected one, the batch's mean.")
        probabilities = F.softmax(scale * logits, dim=1)
        if torch.isclose(got, -probabilities[torch.arange(16), labels].mean()):
            return verdict(False, "that is nll_loss on probabilities: -p(true class), always between -1 and 0. "
                                  "nll_loss expects log-probabilities: use F.log_softmax(logits, dim=1).")
        if not torch.isfinite(got):
            return verdict(False, f"with {what} it returns {got.item()}: exp() of a large logit overflows to inf, "
                                  "and log(softmax) underflows to log(0) = -inf. torch.logsumexp computes "
                                  "log(sum(exp(x))) without either problem.")
        if not torch.isclose(got, expected, rtol=1e-4):
            return verdict(False, f"with {what} the mean cross-entropy is {expected.item():.4f}, your function "
                                  f"gives {got.item():.4f}.")
    return verdict(True, "logsumexp(logits) minus the true class's logit, averaged, is F.cross_entropy, and stays "
                         "finite for huge logits.")


# ==================== 03 training

def check_dropout_values(values) -> None:
    """03.1: the set of values nn.Dropout(p=0.5) can output for an input of ones, in train mode."""
    if unanswered(values):
        return
    try:
        answer = {float(v) for v in values}
    except (TypeError, ValueError):
        return verdict(False, f"Expected a set of numbers such as {{0.0, 1.0}}, got {values!r}.")
    if answer == {0.0, 2.0}:
        return verdict(True, "a dropped unit gives 0 and a kept one is scaled by 1 / (1 - p) = 2, so the expected "
                             "output stays 1 and eval() mode (where dropout is the identity) needs no rescaling.")
    if answer == {0.0, 1.0}:
        return verdict(False, "PyTorch's dropout also scales the kept values by 1 / (1 - p), so that the average "
                              "output in train mode equals the output in eval mode.")
    if answer == {0.0, 0.5}:
        return verdict(False, "kept values are divided by (1 - p), not multiplied by it.")
    return verdict(False, "Think of what a dropped unit outputs, and what dropout does to the kept ones so that the "
                          "average output stays what it is in eval() mode.")


def check_schedule_steps(steps) -> None:
    """03.2: scheduler.step() calls of a OneCycleLR built for 15 epochs of 391 batches."""
    return check_number(
        steps, 15 * 391, "OneCycleLR steps once after every batch: 15 epochs x 391 batches. Stepped once per epoch "
                         "it would stay in its warm-up.",
        {15: "that is once per epoch, like StepLR; OneCycleLR is built for epochs x steps_per_epoch steps.",
         391: "that is one epoch's batches; the schedule spans the whole run."},
        "It steps once per batch, over every epoch of the run.",
    )


# ==================== 04 convolutions

def check_output_size(size) -> None:
    """04.1: width of Conv2d(1, 32, kernel_size=5, stride=2, padding=1)'s output for a 28x28 input."""
    return check_number(
        size, 13, "floor((28 + 2*1 - 5) / 2) + 1 = floor(12.5) + 1 = 13.",
        {12: "that counts the steps the kernel takes, not its positions: the first position comes before any step.",
         14: "the division rounds down (floor): a half step does not fit.",
         24: "that is stride 1 without padding; use the formula with p = 1 and s = 2."},
        "Use floor((n + 2p - k) / s) + 1.",
    )


def check_receptive_field(rf) -> None:
    """04.2: receptive field of model.FashionNet after conv2 (5x5 conv, 2x2 pool, 5x5 conv)."""
    return check_number(
        rf, 14, "conv1: 1 + 4 = 5 (jump 1); pool: 5 + 1 = 6 (jump 2); conv2: 6 + 4 * 2 = 14.",
        {9: "after the pool each step of conv2 moves 2 input pixels (jump 2): conv2 adds 4 * 2, not 4.",
         10: "a pool does not double the field; it adds (2 - 1) * jump and doubles the jump.",
         12: "that leaves out the pool: it widens the field too, before it doubles the jump."},
        "Add (k - 1) * jump per layer; a 2x2 pool adds 1 * jump and doubles the jump.",
    )


# ==================== 05 training a convnet

def check_most_confused(cm, pair) -> None:
    """05.1: (true digit, predicted digit) of the most frequent mistake in confusion matrix `cm`."""
    if unanswered(pair):
        return
    counts = torch.as_tensor(cm).clone()
    counts.fill_diagonal_(0)
    largest = counts.max()
    tied = [tuple(int(v) for v in cell) for cell in (counts == largest).nonzero().tolist()]
    try:
        answer = tuple(int(v) for v in pair)
    except (TypeError, ValueError):
        return verdict(False, f"Expected a pair (true, predicted), got {pair!r}.")
    if answer in tied:
        also = f" (tied with {', '.join(map(str, (t for t in tied if t != answer)))})" if len(tied) > 1 else ""
        return verdict(True, f"a true {answer[0]} predicted as {answer[1]}, {int(largest)} times{also}.")
    if answer[::-1] in tied:
        return verdict(False, "reversed: rows are the true labels and columns the predictions.")
    if len(answer) == 2 and answer[0] == answer[1]:
        return verdict(False, "the diagonal holds the right answers; set it to 0 before looking for the maximum.")
    return verdict(False, "Set the diagonal to 0, then find the largest entry: its row is the true digit and "
                          "its column the prediction.")


def check_normalised_pixel(value) -> None:
    """05.2: a mid-grey pixel (0.5 after ToTensor) after Normalize((0.1307,), (0.3081,)), to 2 decimals."""
    return check_number(
        value, 1.2, "Normalize subtracts the mean, then divides by the standard deviation: (0.5 - 0.1307) / 0.3081.",
        {0.37: "you subtracted the mean but did not divide by the standard deviation.",
         1.62: "you divided by the standard deviation without subtracting the mean first.",
         0.28: "that undoes a normalisation (x * std + mean); Normalize goes the other way.",
         0.11: "Normalize divides by the standard deviation, it does not multiply."},
        "Normalize computes (x - mean) / std for every pixel.", decimals=2,
    )


# ==================== 06 Fashion-MNIST

def check_precision(cm, precision) -> None:
    """06.1: per-class precision from confusion matrix `cm` (rows: true classes, columns: predictions)."""
    if unanswered(precision):
        return
    counts = torch.as_tensor(cm, dtype=torch.float64)
    expected, recall = counts.diag() / counts.sum(dim=0), counts.diag() / counts.sum(dim=1)
    got = torch.as_tensor(precision, dtype=torch.float64).flatten()
    if got.shape != expected.shape:
        return verdict(False, f"Expected one value per class ({expected.numel()}), got {got.numel()}.")
    never = counts.sum(dim=0) == 0  # a class never predicted: 0 / 0, which NaN or 0 both answer fairly
    answered = torch.isnan(got[never]) | (got[never] == 0)
    if answered.all() and torch.allclose(got[~never], expected[~never], atol=5e-3):  # rounded to 2 places is fine
        note = " A class never predicted has no precision (0 / 0): NaN, or 0 by convention." if never.any() else ""
        return verdict(True, "precision = right predictions of a class / all predictions of that class "
                             "(a column sum)." + note)
    if torch.allclose(got, recall, atol=5e-3):
        return verdict(False, "that is recall (divided by the row sums, the true classes). Precision divides by "
                              "the column sums: everything *predicted* as that class.")
    if torch.allclose(got, counts.diag() / counts.sum(), atol=5e-3):
        return verdict(False, "that divides by every image of the test set; precision divides by the images "
                              "*predicted* as the class.")
    return verdict(False, "Of everything the model predicted as a class, which share is right? "
                          "Rows of cm are true classes, columns are predictions.")


def check_run_count(runs) -> None:
    """06.2: how many runs get_runs makes for lr [0.01, 0.001, 0.003], batch_size [100, 1000], num_workers [0, 2]."""
    return check_number(
        runs, 12, "every combination: 3 * 2 * 2 = 12 (itertools.product).",
        {7: "the counts are multiplied, not added: each learning rate is tried with every batch size and "
            "every num_workers setting."},
        "One run per combination of the three lists.",
    )


# ==================== 07 devices

def check_moves(lines) -> None:
    """07.1: with x on the CPU and a GPU as `device`, which lines leave y on the GPU (a set of letters)."""
    if unanswered(lines):
        return
    if isinstance(lines, str):  # "a, c", "a and c" or "ac": the letters a-d, not the letters of other words
        words = re.findall(r"[a-z]+", lines.lower())
        lines = [letter for word in words if set(word) <= set("abcd") for letter in word]
    answer = {str(v).strip().lower() for v in lines}
    if not answer <= {"a", "b", "c", "d"}:
        return verdict(False, f"Answer with letters from a to d, got {sorted(answer)}.")
    if answer == {"a", "c"}:
        return verdict(True, "an operation puts its result where its inputs are (a: x.to(device) + 1), and the "
                             "*_like functions create on their argument's device (c). A new tensor without a "
                             "device= argument is made on the CPU (d), and .cpu() brings b) back.")
    if "d" in answer:
        return verdict(False, "d) torch.zeros(3) is created on the CPU: factory functions take device=... (or the "
                              "device of a *_like argument), not the device of tensors used nearby.")
    if "b" in answer:
        return verdict(False, "b) ends with .cpu(): the result is copied back to the CPU.")
    if "c" not in answer:
        return verdict(False, "c) zeros_like makes a tensor like its argument: same shape, dtype and device.")
    return verdict(False, "a) the sum of a GPU tensor and a Python number is computed on the GPU and stays there.")


def check_optimizer_order(choice) -> None:
    """07.2: what happens when Adam is created before network.to(device) (multiple choice a/b/c)."""
    if unanswered(choice):
        return
    letters = [word for word in re.findall(r"[a-z]+", str(choice).lower()) if len(word) == 1]
    answer = letters[0] if len(letters) == 1 else str(choice).strip().lower()  # "b", "(b)", "b)", "option b"
    if answer == "b":
        return verdict(True, "moving between the CPU and a GPU, Module.to keeps every Parameter object and replaces "
                             "only its data, so the optimiser's references follow; Adam creates its state at the first "
                             "step, on the parameters' device. It breaks if the model moves after steps were taken "
                             "(the state stays behind), or if a conversion makes new Parameter objects (to('meta') "
                             "does): then the optimiser updates orphans. Creating the optimiser last is always right.")
    if answer == "a":
        return verdict(False, "the optimiser holds the Parameter objects themselves, and Module.to moves them in "
                              "place: no error at the first step.")
    if answer == "c":
        return verdict(False, "there is no CPU copy left to train: the same Parameter objects now hold data on "
                              "the device.")
    return verdict(False, "Answer 'a', 'b' or 'c'.")


# ==================== 08 nn.Sequential

def check_lenet_sequential(net) -> None:
    """08.1: LeNet written as nn.Sequential that accepts 28x28 digits and returns 10 scores per image."""
    if unanswered(net):
        return
    if not isinstance(net, nn.Sequential):
        return verdict(False, f"Expected an nn.Sequential, got {type(net).__name__}.")
    layers = [m for m in net.modules() if not isinstance(m, nn.Sequential)]
    convs = [m for m in layers if isinstance(m, nn.Conv2d)]
    linears = [m for m in layers if isinstance(m, nn.Linear)]
    if len(convs) != 2 or len(linears) != 3:
        return verdict(False, f"LeNet has 2 convolutions and 3 linear layers; this one has {len(convs)} and "
                              f"{len(linears)}.")
    shapes = [(c.out_channels, c.kernel_size, c.stride) for c in convs]
    if shapes != [(6, (3, 3), (1, 1)), (16, (3, 3), (1, 1))]:
        return verdict(False, f"LeNet's convolutions have 6 and 16 filters of 3x3, stride 1; these have "
                              f"{', '.join(f'{n} of {k[0]}x{k[1]}, stride {s[0]}' for n, k, s in shapes)}.")
    pools = [m for m in layers if isinstance(m, nn.MaxPool2d)]
    def pair(value) -> tuple:  # nn.MaxPool2d keeps 2 or (2, 2) as it was given
        return tuple(value) if isinstance(value, (tuple, list)) else (value, value)

    if len(pools) != 2 or any(pair(p.kernel_size) != (2, 2) or pair(p.stride) != (2, 2) for p in pools):
        return verdict(False, f"each convolution is followed by a 2x2 max-pool of stride 2 (nn.MaxPool2d(2)); "
                              f"found {', '.join(map(str, pools)) or 'none'}.")
    if [m.out_features for m in linears] != [120, 84, 10]:
        return verdict(False, f"LeNet's linear layers end in 120, 84 and 10 units; these end in "
                              f"{', '.join(str(m.out_features) for m in linears)}.")
    relus = sum(isinstance(m, nn.ReLU) for m in layers)
    if isinstance(layers[-1], nn.ReLU):
        return verdict(False, "a ReLU after the last linear layer clamps every negative score to 0: the network "
                              "could not push a wrong class below the others. The scores leave the last layer as "
                              "they are.")
    if relus != 4:
        return verdict(False, f"LeNet has a ReLU after each convolution and after the first two linear layers: 4; "
                              f"found {relus}." + (" Without them stacked layers collapse into one linear map."
                                                   if relus < 4 else ""))
    if not any(isinstance(m, nn.Flatten) for m in layers):
        return verdict(False, "nothing turns the (N, 16, 5, 5) maps into vectors before the first linear layer: "
                              "add nn.Flatten() there (it replaces num_flat_features).")
    try:
        out = net(torch.zeros(2, 1, 28, 28))
    except RuntimeError as err:
        if "400" in str(err):
            return verdict(False, "576 = 16 * 6 * 6 is fc1's size for 32x32 images; a 28x28 digit gives smaller "
                                  "maps. Follow one through the layers with the output-size rule (notebook 04), "
                                  "or pad the first convolution so that it behaves like a 32x32 image.")
        return verdict(False, f"a 28x28 batch fails: {err}")
    if tuple(out.shape) != (2, 10):
        return verdict(False, f"output shape {tuple(out.shape)}; expected (2, 10): 10 scores per image.")
    if not any(isinstance(m, nn.Flatten) for m in layers[layers.index(pools[-1]):layers.index(linears[0])]):
        return verdict(False, "nn.Flatten() belongs between the last pool and the first linear layer.")
    return verdict(True, f"a (2, 1, 28, 28) batch gives (2, 10); {sum(p.numel() for p in net.parameters()):,} "
                         "parameters. nn.Flatten() replaces num_flat_features.")


def check_sequential_params(count) -> None:
    """08.2: parameters of Linear(784, 128), ReLU, Linear(128, 64), ReLU, Linear(64, 10) in an nn.Sequential."""
    return check_number(
        count, 109_386, "784 * 128 + 128 = 100,480, then 128 * 64 + 64 = 8,256 and 64 * 10 + 10 = 650: 109,386.",
        {109_184: "that leaves out the biases: every Linear layer has one per output unit.",
         100_480: "the other two Linear layers count too.",
         109_386 - 650: "the last Linear layer counts too."},
        "in_features * out_features + out_features per Linear; ReLU has none.",
    )


# ==================== 09 small models

def check_classifier_params(count) -> None:
    """09.1: parameters of nn.Flatten() + nn.Linear on compact's last map (11 channels, 5 x 5) to 10 classes."""
    return check_number(
        count, 2_760, "11 * 5 * 5 = 275 inputs: 275 * 10 + 10 = 2,760, against 120 for the 1x1 classifier.",
        {2_750: "that leaves out the linear layer's biases.",
         120: "that is today's 1x1 classifier after global average pooling (11 * 10 + 10); without the pooling "
              "the linear layer sees all 5 x 5 positions of each channel."},
        "Count the inputs of the linear layer first: channels * height * width.",
    )


def check_stride_one(rf) -> None:
    """09.2: final receptive field of compact with stride 1 in its first convolution (nothing else changed)."""
    return check_number(
        rf, 13, "With jump 1 throughout, each of the six 3x3 convolutions adds 2: 3, 5, 7, 9, 11, 13.",
        {23: "that is today's network: the stride-2 convolution makes the jump 2, so every later 3x3 "
             "convolution adds 4 pixels. With stride 1 the jump stays 1.",
         12: "the first convolution sees 3 pixels on its own, and each later one adds (3 - 1) * jump."},
        "Add (k - 1) * jump per layer; the jump is the product of the strides before the layer.",
    )
