"""Every network the course uses, a name -> network registry (`MODELS`) and training recipes (`RECIPES`).

Each model is a plain `nn.Module`: layers in `__init__`, data flow in `forward`. Copy a class into
your own code with the torch imports below (and `check_input`, which each `forward` calls first)
and it works. Inputs are image batches of shape (N, 1, H, W); `check_input` raises a ValueError
naming the shape it expected, instead of a matmul error from deep inside the network.

Each docstring says what the model returns: raw scores (logits), to train with `F.cross_entropy`,
or log-probabilities (`log_softmax`), to train with `F.nll_loss`. The training code picks the loss
(`RECIPES[name]["loss"]` for train.py); nothing here changes it behind your back.
"""

import functools
from collections import OrderedDict
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

COURSE_MODULE = "pytorch-course"  # the notebooks' setup cell checks this marker: another model.py would shadow this one

# --------------------------------------------------------------------------- input check

def check_input(x: torch.Tensor, shape: tuple[int, ...] = (1, 28, 28)) -> None:
    """Raise a ValueError unless x is a batch of shape (N, *shape)."""
    if x.dim() != len(shape) + 1 or tuple(x.shape[1:]) != tuple(shape):
        want = ", ".join(str(d) for d in shape)
        raise ValueError(
            f"expected input of shape (N, {want}), got {tuple(x.shape)}"
            + (" - add a batch dimension with x.unsqueeze(0)" if x.dim() == len(shape) else "")
        )


# --------------------------------------------------------------------------- S5 Net (notebooks 04 and 05)

class S5Net(nn.Module):
    """The S5 MNIST net: four 3x3 convs, two max-pools, fc 4096 -> 50 -> 10; returns log-probabilities.

    593,200 parameters. Train it with `F.nll_loss` (it ends in `log_softmax`). Notebook 03 writes this
    class by hand and checks it against this one. Its errata, fixed here:
    - `forward` indented at module level is not a method: calling the model raises NotImplementedError.
    - `F.relu(x, 2)` does not pool: relu's second argument is `inplace`. Pooling comes after conv2 and
      conv4 (26 -> 24 -> 12 -> 10 -> 8 -> 4), written as `F.max_pool2d`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3)     # 28 -> 26
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)    # 26 -> 24, pool -> 12
        self.conv3 = nn.Conv2d(64, 128, kernel_size=3)   # 12 -> 10
        self.conv4 = nn.Conv2d(128, 256, kernel_size=3)  # 10 -> 8, pool -> 4
        self.fc1 = nn.Linear(256 * 4 * 4, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x)
        x = F.relu(self.conv1(x))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        x = F.relu(self.conv3(x))
        x = F.relu(F.max_pool2d(self.conv4(x), 2))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        return F.log_softmax(self.fc2(x), dim=1)



# --------------------------------------------------------------------------- MLP (notebook 02)

class MLP(nn.Module):
    """A fully connected classifier: 784 -> 256 -> 10 (203,530 parameters).

    Images are flattened inside, so it takes the same (N, 1, 28, 28) batches as the convnets.
    Dropout (p=0.2 by default) is active only in `train()` mode: in `eval()` mode it is the
    identity, so predictions are deterministic and use every unit (notebook 03's exercise 1 asks
    what it outputs in training).
    Returns log-probabilities (`log_softmax(dim=1)`): train it with `F.nll_loss`. Ending in
    `softmax` instead is a common mistake (notebook 02's errata).
    """

    def __init__(self, hidden: int = 256, dropout: float = 0.2) -> None:
        super().__init__()
        self.hidden = nn.Linear(28 * 28, hidden)
        self.output = nn.Linear(hidden, 10)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x)
        x = torch.flatten(x, 1)
        x = self.dropout(F.relu(self.hidden(x)))
        return F.log_softmax(self.output(x), dim=1)


# --------------------------------------------------------------------------- LeNet (notebook 04)

class LeNet(nn.Module):
    """LeNet: conv 1->6->16 (3x3), fc 120/84/10; returns logits (train with `F.cross_entropy`); 81,194 parameters.

    Designed for 32x32 inputs (32 -> 30 -> 15 -> 13 -> 6, so fc1 sees 16*6*6 = 576 features).
    MNIST digits are 28x28: the model pads them by 2 pixels on each side, replicating the border
    (which is background in MNIST, whatever the normalisation), so the weights keep their shapes
    and the 32x32 walk-through stays valid. Both sizes are accepted.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3)
        self.conv2 = nn.Conv2d(6, 16, 3)
        self.fc1 = nn.Linear(16 * 6 * 6, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and tuple(x.shape[1:]) == (1, 28, 28):  # MNIST: pad to the 32x32 it was designed for
            x = F.pad(x, (2, 2, 2, 2), mode="replicate")
        check_input(x, (1, 32, 32))
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


# --------------------------------------------------------------------------- deep net (notebook 04)

class DeepNet(nn.Module):
    """A 7-convolution MNIST net (6,379,786 parameters); returns log-probabilities (train with `F.nll_loss`).

    Mistakes of the published version, fixed here (notebook 04's errata):
    - It applied ReLU to the output of conv7, the logits, before `log_softmax`. That clamps every
      negative score to 0: the network can no longer push wrong classes below zero, many logits
      tie at 0, and the gradient through a clamped logit is exactly zero, so learning stalls
      (a unit that goes negative for every input never recovers). The logits go straight into
      `log_softmax` here.
    - `F.log_softmax(x)` without `dim` is deprecated; we pass `dim=1`.
    - Its receptive-field comments double the field at each max-pool. A 2x2 pool adds
      (2 - 1) * jump, it does not double it. `utils.layer_table(DeepNet(), (1, 28, 28))` gives
      (published value in brackets): conv1 3 [3], conv2 5 [5], pool1 6 [10], conv3 10 [12],
      conv4 14 [14], pool2 16 [28], conv5 24 [30], conv6 32 [32], conv7 40 [34].
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)     # 28 -> 28
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)    # 28 -> 28
        self.pool1 = nn.MaxPool2d(2, 2)                 # 28 -> 14
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1)   # 14 -> 14
        self.conv4 = nn.Conv2d(128, 256, 3, padding=1)  # 14 -> 14
        self.pool2 = nn.MaxPool2d(2, 2)                 # 14 -> 7
        self.conv5 = nn.Conv2d(256, 512, 3)             # 7 -> 5
        self.conv6 = nn.Conv2d(512, 1024, 3)            # 5 -> 3
        self.conv7 = nn.Conv2d(1024, 10, 3)             # 3 -> 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x)
        x = self.pool1(F.relu(self.conv2(F.relu(self.conv1(x)))))
        x = self.pool2(F.relu(self.conv4(F.relu(self.conv3(x)))))
        x = F.relu(self.conv6(F.relu(self.conv5(x))))
        x = torch.flatten(self.conv7(x), 1)  # no ReLU on the logits
        return F.log_softmax(x, dim=1)


# --------------------------------------------------------------------------- Fashion net (notebook 06)

class FashionNet(nn.Module):
    """The Fashion-MNIST network of notebook 06: conv 6 and 12 (5x5), fc 120/60/10; 32,998 parameters.

    Returns raw scores (logits): train it with `F.cross_entropy`, which applies log-softmax itself
    (a softmax here would be applied twice). Errata: a published listing writes `Class Network` (capital C,
    a syntax error) and its `forward` sketch lacks the final `return`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels=1, out_channels=6, kernel_size=5)   # 28 -> 24, pool -> 12
        self.conv2 = nn.Conv2d(in_channels=6, out_channels=12, kernel_size=5)  # 12 -> 8, pool -> 4
        self.fc1 = nn.Linear(in_features=12 * 4 * 4, out_features=120)
        self.fc2 = nn.Linear(in_features=120, out_features=60)
        self.out = nn.Linear(in_features=60, out_features=10)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        check_input(t)
        t = F.max_pool2d(F.relu(self.conv1(t)), kernel_size=2, stride=2)
        t = F.max_pool2d(F.relu(self.conv2(t)), kernel_size=2, stride=2)
        t = t.reshape(-1, 12 * 4 * 4)
        t = F.relu(self.fc1(t))
        t = F.relu(self.fc2(t))
        return self.out(t)


# --------------------------------------------------------------------------- Sequential versions

def fashion_layers() -> list[tuple[str, nn.Module]]:
    """The Fashion net's layers in order, with names; parameters are created in the class's order."""
    return [
        ("conv1", nn.Conv2d(1, 6, kernel_size=5)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2, 2)),
        ("conv2", nn.Conv2d(6, 12, kernel_size=5)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2, 2)),
        ("flatten", nn.Flatten(start_dim=1)),
        ("fc1", nn.Linear(12 * 4 * 4, 120)), ("relu3", nn.ReLU()),
        ("fc2", nn.Linear(120, 60)), ("relu4", nn.ReLU()),
        ("out", nn.Linear(60, 10)),
    ]


def fashion_sequential(way: str = "constructor") -> nn.Sequential:
    """The Fashion net as nn.Sequential, built one of three ways: constructor, ordered_dict, add_module."""
    layers = fashion_layers()
    if way == "constructor":
        return nn.Sequential(*(module for _, module in layers))
    if way == "ordered_dict":
        return nn.Sequential(OrderedDict(layers))
    if way == "add_module":
        net = nn.Sequential()
        for name, module in layers:
            net.add_module(name, module)
        return net
    raise ValueError(f"unknown way {way!r}; expected constructor, ordered_dict or add_module")


def mlp_sequential(hidden: int = 256) -> nn.Sequential:
    """The MLP as nn.Sequential, ending in LogSoftmax so it pairs with NLLLoss like `MLP`.

    Errata: ending it with `nn.Softmax(dim=1)` is a common mistake; probabilities fed to NLLLoss give a wrong
    loss. Use LogSoftmax + NLLLoss, or no final activation + CrossEntropyLoss.
    """
    return nn.Sequential(
        nn.Flatten(start_dim=1),
        nn.Linear(28 * 28, hidden),
        nn.ReLU(),
        nn.Linear(hidden, 10),
        nn.LogSoftmax(dim=1),
    )


# --------------------------------------------------------------------------- QuickNet: train.py's default and compact

class QuickNet(nn.Module):
    """A stride-2 first convolution, then five thin 3x3 convs with BatchNorm, global average pooling, a 1x1 classifier.

    Returns logits (train with `F.cross_entropy`). Two networks of the registry are this class: `quick`
    (width 16, 12,026 parameters, train.py's default) and `compact` (width 11, 5,796 parameters,
    notebook 09's 6,000-parameter budget network, trained three times as long). A stride-2
    convolution computes every other position only, so no layer works on 26x26 maps and no max-pool
    runs; BatchNorm keeps a thin, deep net trainable at a high learning rate (its shift replaces the
    convolutions' biases); global average pooling and a 1x1 classifier replace a large fully
    connected layer. Layer plan (output side, receptive field): conv 1->w stride 2 (13, 3), conv
    w->w padded (13, 7), four convs w->w (11, 9, 7, 5; receptive fields 11 to 23), global average
    pool, 1x1 conv w -> 10. How it was chosen: benchmarks/README.md, "Speed" and "Accuracy per parameter".
    """

    def __init__(self, width: int = 16, depth: int = 5) -> None:
        super().__init__()

        def block(c_in: int, c_out: int, stride: int = 1, padding: int = 0) -> nn.Sequential:
            """3x3 conv (no bias: BatchNorm has one) -> BatchNorm -> ReLU."""
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=padding, bias=False),
                                 nn.BatchNorm2d(c_out), nn.ReLU())

        self.features = nn.Sequential(
            block(1, width, stride=2),  # 28 -> 13
            block(width, width, padding=1),
            *[block(width, width) for _ in range(depth - 1)],  # 13 -> 11 -> 9 -> 7 -> 5
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Conv2d(width, 10, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x)
        return torch.flatten(self.classifier(self.features(x)), 1)


# --------------------------------------------------------------------------- small Fashion-MNIST net

class FashionBestNet(nn.Module):
    """A 75,450-parameter Fashion-MNIST convnet: five padded 3x3 convs with BatchNorm, three max-pools, a linear head.

    Returns logits (train with `F.cross_entropy`). Layer plan (output side, receptive field): conv
    1->16 (28, 3), max-pool (14, 4), conv 16->32 (14, 8), conv 32->32 (14, 12), max-pool (7, 14),
    conv 32->64 (7, 22), conv 64->64 (7, 30), max-pool (3, 34), then dropout and a linear layer
    64*3*3 -> 10. Unlike digits, clothes differ in *where* things are (collars, sleeves, the gap
    between trouser legs), so the head keeps a coarse 3x3 map instead of averaging it away. Width
    goes where maps are small: 28x28 maps cost the most.
    """

    def __init__(self, head_dropout: float = 0.25) -> None:
        super().__init__()

        def block(c_in: int, c_out: int) -> nn.Sequential:
            """Padded 3x3 conv (no bias: BatchNorm has one) -> BatchNorm -> ReLU."""
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())

        self.features = nn.Sequential(
            block(1, 16), nn.MaxPool2d(2),
            block(16, 32), block(32, 32), nn.MaxPool2d(2),
            block(32, 64), block(64, 64), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(head_dropout), nn.Linear(64 * 3 * 3, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x)
        return self.classifier(self.features(x))


# --------------------------------------------------------------------------- registry

# Registry name -> what builds the network (a class; a function or functools.partial would do too).
MODELS: dict[str, Callable[[], nn.Module]] = {
    "mlp": MLP,
    "lenet": LeNet,
    "deep": DeepNet,
    "s5": S5Net,
    "fashion": FashionNet,
    "compact": functools.partial(QuickNet, width=11),  # notebook 09's 6,000-parameter budget: 5,796
    "quick": QuickNet,  # train.py's default
    "fashion_best": FashionBestNet,
}

# Default training settings per model (train.py's command-line flags override them). "loss" says which loss
# function fits what the model returns: "nll" for log-probabilities, "cross_entropy" for logits.
# s5: the published SGD(lr=0.0175, momentum=0.95), StepLR(10, 0.1), batch 512, 20 epochs.
# fashion: the published Adam(lr=0.01), batch 100, 10 epochs. deep: the published SGD(0.01, 0.9), 9 epochs.
RECIPES: dict[str, dict] = {
    "mlp": {"loss": "nll", "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "batch_size": 128, "epochs": 5,
            "step_size": 10},
    "lenet": {"loss": "cross_entropy", "optimizer": "sgd", "lr": 0.02, "momentum": 0.9, "batch_size": 128,
              "epochs": 5, "step_size": 10},
    "deep": {"loss": "nll", "optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "batch_size": 128, "epochs": 9,
             "step_size": 10},
    "s5": {"loss": "nll", "optimizer": "sgd", "lr": 0.0175, "momentum": 0.95, "batch_size": 512, "epochs": 20,
           "step_size": 10},
    "fashion": {"loss": "cross_entropy", "optimizer": "adam", "lr": 0.01, "momentum": 0.9, "batch_size": 100,
                "epochs": 10, "step_size": 10},
    "compact": {"loss": "cross_entropy", "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "batch_size": 128,
                "epochs": 30, "step_size": 5, "scheduler": "onecycle"},
    "quick": {"loss": "cross_entropy", "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "batch_size": 128,
              "epochs": 10, "step_size": 5, "scheduler": "onecycle"},
    "fashion_best": {"loss": "cross_entropy", "dataset": "fashion_mnist", "optimizer": "sgd", "lr": 0.1,
                     "momentum": 0.9, "batch_size": 128, "epochs": 15, "step_size": 5, "scheduler": "onecycle",
                     "weight_decay": 5e-4, "augment": "flip"},
}


def build(name: str) -> nn.Module:
    """Return a fresh model for a registry name, or raise a ValueError listing the names."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(sorted(MODELS))}")
    return MODELS[name]()


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
