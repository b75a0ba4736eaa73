"""The cheap check before the ResNet-20 campaign: debench's loop against a minimal loop written here.

Both train He et al.'s ResNet-20 on the real CIFAR-10 shards with the campaign's protocol (batch
128, SGD momentum 0.9, weight decay 1e-4, lr 0.1, 4-pixel pad + crop + flip, per-pixel mean) for
the same short budget and 3 seeds, and are evaluated on the whole test split. The minimal loop
shares no code with debench: its own network (option-A ResNet-20 from the paper's description),
its own data reading (numpy on the shards), augmentation and evaluation. A protocol mistake in
debench (a wrong learning rate, normalisation, label order, augmentation or evaluation) moves its
accuracy away from the minimal loop's; seed-to-seed noise at this budget is a few points.
Size: CAMPAIGN_CHECK_STEPS (default 100) steps per seed; evaluation at batch 128 (the fastest on a CPU).
"""

from __future__ import annotations

import os
import statistics

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from debench.data import prepare_dataset
from debench.train.loop import train
from tests.conftest import make_spec

STEPS = int(os.environ.get("CAMPAIGN_CHECK_STEPS", "100"))
SEEDS = (0, 1, 2)


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.pad = cout - cin
        self.stride = stride

    def forward(self, x):
        out = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
        short = x[:, :, ::self.stride, ::self.stride]
        if self.pad:  # option A: zero channels, half before and half after
            short = F.pad(short, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return F.relu(out + short)


def _resnet20() -> nn.Module:
    layers, cin = [], 16
    for cout, stride in ((16, 1), (32, 2), (64, 2)):
        for i in range(3):
            layers.append(_Block(cin, cout, stride if i == 0 else 1))
            cin = cout
    net = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), *layers,
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight)
    return net


def _load(shards) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    tr = [np.load(shards / "cifar10" / f"train_{i:02d}.npz") for i in range(5)]
    te = np.load(shards / "cifar10" / "test.npz")
    return (np.concatenate([d["images"] for d in tr]), np.concatenate([d["labels"] for d in tr]),
            te["images"], te["labels"])


def _minimal_run(seed: int, x_tr, y_tr, x_te, y_te) -> float:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    mean = x_tr.astype(np.float64).mean(0) / 255.0  # per-pixel mean image
    to_input = lambda u8: torch.from_numpy(((u8 / 255.0 - mean).transpose(0, 3, 1, 2)).astype(np.float32))
    net = _resnet20()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    padded = np.pad(x_tr, ((0, 0), (4, 4), (4, 4), (0, 0)))
    order = rng.permutation(len(y_tr))
    net.train()
    for step in range(STEPS):
        idx = order[step * 128 % len(order):][:128]
        dy, dx, flip = rng.integers(0, 9, len(idx)), rng.integers(0, 9, len(idx)), rng.random(len(idx)) < 0.5
        batch = np.stack([padded[i, a:a + 32, b:b + 32][:, ::-1] if f else padded[i, a:a + 32, b:b + 32]
                          for i, a, b, f in zip(idx, dy, dx, flip)])
        loss = F.cross_entropy(net(to_input(batch)), torch.from_numpy(y_tr[idx].astype(np.int64)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    correct = 0
    with torch.no_grad():
        for s in range(0, len(y_te), 128):
            correct += (net(to_input(x_te[s:s + 128])).argmax(1).numpy() == y_te[s:s + 128]).sum()
    return float(100.0 * correct / len(y_te))


@pytest.mark.slow
def test_debench_loop_matches_a_minimal_loop_on_real_cifar10(shared_data, tmp_path):
    cache = tmp_path / "cifar10.npz"
    prepare_dataset("cifar10", "npz", cache, npz_dir=str(shared_data))
    threads = torch.get_num_threads()
    ours = []
    for seed in SEEDS:
        spec = make_spec(tmp_path / f"s{seed}", cache, seed=seed, protocol={
            "epochs": None, "iterations": STEPS, "batch_size": 128, "lr": 0.1, "momentum": 0.9,
            "weight_decay": 1e-4, "milestones": [32000, 48000], "crop_padding": 4, "flip": True,
            "input_norm": "pixel_mean", "eval_batch_size": 128,
        }, runtime={"device": "cpu", "threads": threads, "channels_last": True, "amp": "off"})
        rec = train(spec)
        assert rec["status"] == "ok" and rec["steps"] == STEPS
        ours.append(rec["test_accuracy"])
    x_tr, y_tr, x_te, y_te = _load(shared_data)
    theirs = [_minimal_run(seed, x_tr, y_tr, x_te, y_te) for seed in SEEDS]
    m_ours, m_theirs = statistics.mean(ours), statistics.mean(theirs)
    spread = max(statistics.stdev(ours), statistics.stdev(theirs))
    print(f"{STEPS} steps, test accuracy: debench {ours} (mean {m_ours:.2f}), minimal loop {theirs} "
          f"(mean {m_theirs:.2f})")
    assert m_theirs > 20.0, "the minimal loop did not learn (chance is 10%): the check itself is broken"
    # both learn well past chance, and their means agree within the seed noise of this budget
    assert abs(m_ours - m_theirs) <= max(5.0, 3 * spread), (ours, theirs)
