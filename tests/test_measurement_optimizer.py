"""The measurement times the training's own optimizer (issue 23.7).

``debench.measurement`` had a second optimizer builder that dropped the weight decay and turned
AdamW into Adam, so ``time_per_iter_s`` timed another optimizer than the run trains with.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module")
def mnist_cache(tmp_path_factory) -> Path:
    from debench.data import prepare_dataset

    out = tmp_path_factory.mktemp("data") / "mnist.npz"
    prepare_dataset("mnist", "synthetic", out, train_size=32, test_size=8, seed=0)
    return out


@pytest.mark.parametrize("optimizer, cls, weight_decay, momentum", [
    ("adamw", "AdamW", 0.05, 0.9),
    ("adam", "Adam", 1e-4, 0.9),
    ("sgd", "SGD", 5e-4, 0.8),
])
def test_each_timed_step_uses_the_protocols_optimizer_with_its_weight_decay(
        tmp_path, mnist_cache, monkeypatch, one_thread, optimizer, cls, weight_decay, momentum):
    from debench.measurement import measure

    built, steps = [], []
    for name in ("SGD", "Adam", "AdamW"):
        real = getattr(torch.optim, name)

        class Recording(real):  # the real optimizer, noting that it was built and each step
            def __init__(self, *a, _name=name, **k):
                super().__init__(*a, **k)
                built.append((_name, self))

            def step(self, *a, **k):
                steps.append(self)
                return super().step(*a, **k)

        monkeypatch.setattr(torch.optim, name, Recording)
    spec = {"experiment": "m", "preset": "test", "table": "measurements", "mode": "paper", "comparable": True,
            "kind": "measure", "model": "mlp300_mnist", "dataset": "mnist", "seed": 0, "model_args": {},
            "protocol": {"batch_size": 4, "iterations": 2, "warmup_iterations": 1, "crop_padding": 0, "flip": False,
                         "optimizer": optimizer, "lr": 0.003, "weight_decay": weight_decay, "momentum": momentum},
            "runtime": {"device": "cpu", "threads": 1}, "data": {"cache": str(mnist_cache)},
            "tracking": {"enabled": False},
            "paths": {"metrics": str(tmp_path / "run" / "metrics.json"), "checkpoints": str(tmp_path / "ckpt")}}
    rec = measure(spec)
    assert [n for n, _ in built] == [cls]  # mlp300 has no constant-depth twin: one optimizer
    group = built[0][1].param_groups[0]
    assert group["weight_decay"] == weight_decay and group["lr"] == 0.003
    if optimizer == "sgd":
        assert group["momentum"] == 0.8
    else:
        assert group["betas"] == (0.9, 0.999)
    assert len(steps) == 1 + 2 and all(s is built[0][1] for s in steps)  # 1 warm-up step, 2 timed ones
    assert rec["time_steps"] == 2 and rec["protocol"]["optimizer"] == optimizer
