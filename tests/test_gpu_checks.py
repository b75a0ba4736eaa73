"""What docs/performance.md claims for a GPU, asserted: resume under bf16 + CUDA graphs, the
reversible backward under autocast, device-independent activation memory.

Tests marked ``cuda`` need an NVIDIA GPU: they are deselected by default and run by
``benchmarks/gpu_check.sh`` (``pytest -m cuda``); without CUDA they fail saying so. Each has a CPU
counterpart here that runs in the normal suite.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from debench.models.discrete import units
from debench.models.discrete.reversible import ReversibleSequence
from debench.registry import create_model
from debench.train import checkpoint as ckpt
from debench.train.measure import training_step_activation_bytes
from tests.conftest import make_spec


@pytest.fixture
def cuda():
    if not torch.cuda.is_available():
        pytest.fail("CUDA is not available: the 'cuda' tests need an NVIDIA GPU (benchmarks/gpu_check.sh)",
                    pytrace=False)
    return torch.device("cuda")


# ---------------------------------------------------------------- RNG state in the checkpoint

def test_checkpoint_stores_and_restores_the_cuda_rng_state_when_present(tmp_path, monkeypatch):
    """The CUDA code path on a CPU machine: rng_state() takes every GPU's generator state, it
    survives save/load (weights_only), and set_rng_state() gives it back to CUDA."""
    fake = [torch.arange(16, dtype=torch.uint8), torch.arange(16, 32, dtype=torch.uint8)]
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [t.clone() for t in fake])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: restored.append(states))
    state = ckpt.rng_state()
    ckpt.save_checkpoint(tmp_path, 1, {"config_hash": "h", "rng": state})
    loaded = ckpt.load_latest(tmp_path, "h")["rng"]
    ckpt.set_rng_state(loaded)
    assert len(restored) == 1 and all(torch.equal(a, b) for a, b in zip(restored[0], fake))


# ---------------------------------------------------------------- reversible backward under autocast

def _phi(c=4):
    return nn.Sequential(nn.Conv2d(c, c, 3, 1, 1), nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c, 3, 1, 1))


UNITS = {
    "revnet": lambda: units.revnet_unit(_phi(), _phi()),
    "leapfrog": lambda: units.leapfrog_unit(_phi(), 0.5) + units.leapfrog_unit(_phi(), 0.5),
    "momentum": lambda: units.momentum_unit(_phi(), 0.9) + units.momentum_unit(_phi(), 0.9),
}


def _autocast_gradient_error(name: str, device: torch.device) -> float:
    """Relative error of the memory-saving gradients under bf16 autocast against float32 backprop
    through the same blocks (backward outside the autocast region, as the trainer calls it)."""
    torch.manual_seed(0)
    fast = ReversibleSequence(UNITS[name]() * 2, invertible=True).to(device)
    plain = copy.deepcopy(fast)
    plain.invertible = False
    a, b = (torch.randn(2, 4, 6, 6, device=device, requires_grad=True) for _ in range(2))

    def grads(seq, amp):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            ya, yb = seq(a, b)
            loss = (ya.float().sin() * yb.float()).sum() + ya.float().pow(2).mean()
        return torch.cat([g.flatten().float() for g in torch.autograd.grad(loss, [a, b, *seq.parameters()])])

    ref = grads(plain, False)
    return float((grads(fast, True) - ref).norm() / ref.norm())


@pytest.mark.parametrize("name", sorted(UNITS))
def test_reversible_backward_under_cpu_autocast_matches_backprop(name, one_thread):
    """The reversible blocks run (and rebuild) in float32 even under bf16 autocast, so their
    gradients equal float32 backprop to float32 rounding (measured ~1e-7; plain bf16 autograd of
    the same blocks is off by 0.3-4%)."""
    assert _autocast_gradient_error(name, torch.device("cpu")) < 1e-5


@pytest.mark.cuda
@pytest.mark.parametrize("name", sorted(UNITS))
def test_reversible_backward_under_cuda_autocast_matches_backprop(name, cuda):
    assert _autocast_gradient_error(name, cuda) < 1e-4  # TF32 convolutions: looser than on the CPU


# ---------------------------------------------------------------- activation memory

def _activation_bytes(name: str, device: torch.device) -> int:
    torch.manual_seed(0)
    model = create_model(name).to(device)
    x = torch.randn(4, 3, 32, 32, device=device)
    return training_step_activation_bytes(model, x, lambda out: out.float().sum())


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["resnet20", "revnet38"])
def test_fp32_activation_memory_on_cuda_equals_the_cpu_figure(name, cuda):
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    cpu = _activation_bytes(name, torch.device("cpu"))
    assert cpu > 0 and _activation_bytes(name, cuda) == cpu


# ---------------------------------------------------------------- kill and resume under bf16 + CUDA graphs

def _kill_after_second_checkpoint(spec):
    import debench.train.loop as loop

    calls, real = {"n": 0}, loop.ckpt.save_checkpoint

    def save_then_die(*args, **kwargs):
        real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    loop.ckpt.save_checkpoint = save_then_die
    try:
        with pytest.raises(KeyboardInterrupt):
            loop.train(spec)
    finally:
        loop.ckpt.save_checkpoint = real


@pytest.mark.cuda
@pytest.mark.parametrize("model", ["resnet20", "shake_shake26_2x32d"])  # shake-shake draws on the CUDA RNG
def test_bf16_cuda_graph_run_killed_and_resumed_ends_with_the_same_metrics(model, tmp_path, synthetic_cache, cuda,
                                                                           monkeypatch):
    from debench.train.loop import train

    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    try:
        kw = dict(model=model, protocol={"epochs": 3},
                  runtime={"device": "cuda", "amp": "bf16", "compile": "reduce-overhead", "threads": 4})
        full = train(make_spec(tmp_path / "a", synthetic_cache, **kw))
        _kill_after_second_checkpoint(make_spec(tmp_path / "b", synthetic_cache, **kw))
        resumed = train(make_spec(tmp_path / "b", synthetic_cache, **kw))
    finally:
        torch.use_deterministic_algorithms(False)
    assert full["runtime"]["compile"] == "reduce-overhead" and full["runtime"]["amp"] == "bf16"
    for key in ("test_accuracy", "test_loss", "train_loss", "final_test_error", "steps"):
        assert resumed[key] == full[key], key
    assert resumed["epochs_completed"] == 3


# ---------------------------------------------------------------- the fork server on a GPU

@pytest.mark.cuda
def test_a_job_forked_from_the_fork_server_trains_on_cuda(tmp_path, synthetic_cache, cuda):
    """debench.forkserver never initialises CUDA, so its children can; CPU counterpart:
    tests/test_forkserver.py::test_a_forked_job_learns_exactly_what_its_own_process_learns."""
    import json
    import os
    import subprocess
    import sys

    from debench import forkserver

    server = forkserver.start(tmp_path / "fork_server.log")
    env = dict(os.environ)
    os.environ.pop(forkserver.ENV)
    try:
        records = {}
        for name, job_env in (("own", None), ("forked", env)):
            spec = make_spec(tmp_path / name, synthetic_cache, protocol={"batch_size": 64, "epochs": 1},
                             runtime={"device": "cuda", "amp": "off", "compile": False})
            out = subprocess.run([sys.executable, "-m", "debench.cli", "train", "--spec", json.dumps(spec)],
                                 env=job_env, capture_output=True, text=True, timeout=600)
            assert out.returncode == 0, out.stderr[-3000:]
            records[name] = json.loads((tmp_path / name / "run" / "metrics.json").read_text())
    finally:
        forkserver.stop(server)
    assert ": debench train" in (tmp_path / "fork_server.log").read_text()
    own, forked = records["own"], records["forked"]
    assert forked["status"] == "ok" and forked["runtime"]["device_type"] == "cuda"
    assert forked["train_loss"] == pytest.approx(own["train_loss"], abs=0.05)  # cuDNN may differ in the last bits
