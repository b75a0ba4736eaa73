"""Learning on the real CIFAR-10: ResNet-20, 400 steps at batch 128 on the CPU."""

from __future__ import annotations

import pytest
import torch

from debench.data import prepare_dataset
from debench.train.loop import train
from tests.conftest import make_spec


@pytest.mark.slow
def test_resnet20_learns_real_cifar10_in_400_steps(shared_data, tmp_path):
    cache = tmp_path / "cifar10.npz"
    meta = prepare_dataset("cifar10", "npz", cache, npz_dir=str(shared_data))
    assert (meta["train_size"], meta["test_size"]) == (50000, 10000)
    # the published full-precision CIFAR-10 train mean (shared/data/README.md)
    assert meta["mean"] == pytest.approx([0.49139967861519607, 0.48215840839460783, 0.44653091444546567], abs=1e-9)
    spec = make_spec(tmp_path, cache, protocol={
        "epochs": None, "iterations": 400, "batch_size": 128, "lr": 0.1, "momentum": 0.9,
        "weight_decay": 5e-4, "schedule": "cosine", "crop_padding": 4, "flip": True, "eval_every": 10,
        "eval_batch_size": 1000,
    }, runtime={"device": "cpu", "threads": torch.get_num_threads(), "channels_last": True})
    rec = train(spec)
    print(f"ResNet-20, 400 steps: test accuracy {rec['test_accuracy']:.2f}% in {rec['train_time_s']:.0f} s "
          f"of training ({rec['throughput_img_s']:.0f} img/s)")
    assert rec["status"] == "ok" and rec["steps"] == 400
    assert rec["test_accuracy"] >= 40.0
