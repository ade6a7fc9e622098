"""Device choice, DataLoader settings per device, seeding and smoke mode."""

import torch
import torch.nn.functional as F

import engine
import model
import utils


def test_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert utils.get_device().type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert utils.get_device().type == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert utils.get_device().type == "cpu"


def first_batch_and_loss(seed: int) -> tuple[torch.Tensor, float]:
    """First training batch and the loss after three SGD steps, all from one seed."""
    utils.set_seed(seed)
    loaders = utils.get_loaders("mnist", 32, torch.device("cpu"), limit=256, seed=seed,  # seeded augmentation too
                                train_transform=utils.train_transform("mnist", "rotate"))
    net = model.build("s5")
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    batches = iter(loaders.train)
    first, labels = next(batches)
    for images, targets in [(first, labels), next(batches), next(batches)]:
        opt.zero_grad()
        loss = F.nll_loss(net(images), targets)  # S5 returns log-probabilities
        loss.backward()
        opt.step()
    return first, loss.item()


def test_same_seed_same_first_batch_and_loss(data_root):
    batch_a, loss_a = first_batch_and_loss(7)
    batch_b, loss_b = first_batch_and_loss(7)
    batch_c, _ = first_batch_and_loss(8)
    assert torch.equal(batch_a, batch_b) and loss_a == loss_b
    assert not torch.equal(batch_a, batch_c)


def test_smoke_mode_helpers(monkeypatch):
    monkeypatch.setenv("COURSE_SMOKE", "1")
    assert engine.smoke_mode() and engine.epochs(15) == 1 and engine.data_limit() == 2000
    monkeypatch.setenv("COURSE_SMOKE", "0")
    assert not engine.smoke_mode() and engine.epochs(15) == 15 and engine.data_limit() is None
