"""benchmarks/step_roofline.py: its work count against ResNet-20's architecture, counted by hand,
and its floor and ceiling arithmetic."""

import importlib.util
from pathlib import Path

import torch

spec = importlib.util.spec_from_file_location(
    "step_roofline", Path(__file__).resolve().parents[1] / "benchmarks" / "step_roofline.py")
roofline = importlib.util.module_from_spec(spec)
spec.loader.exec_module(roofline)


def resnet20_forward_macs() -> tuple[int, int]:
    """Multiply-accumulates of ResNet-20's forward pass per 32x32 image (He et al. 2016, 4.2):
    a 3x3 stem to 16 channels, three stages of 6 convolutions at 32/16/8 pixels and 16/32/64
    channels (option A shortcuts: no parameters, no products), and the 64->10 classifier.
    Returns (all, stem): the stem's input needs no gradient."""
    stem = 3 * 16 * 9 * 32 * 32
    total, c_in = stem, 16
    for c, side in ((16, 32), (32, 16), (64, 8)):
        for _ in range(6):
            total += c_in * c * 9 * side * side
            c_in = c
    return total + 64 * 10, stem


def test_work_of_a_step_is_the_architectures_count():
    macs, stem = resnet20_forward_macs()
    assert macs == 40_551_040  # 40.6M, the usual figure for ResNet-20
    # forward, then the gradients of every weight and of every input but the image's
    per_image = 2 * macs + 2 * (2 * macs) - 2 * stem
    from debench.registry import create_model

    torch.manual_seed(0)
    model = create_model("resnet20")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 10, (2,))
    assert roofline.step_flops(model, x, y, opt) == 2 * per_image
    assert all(p.grad is None for p in model.parameters())  # the counted step cleaned up after itself


def test_summary_floor_and_target():
    m = {"threads": 2, "batch": 128, "gemm": 1000, "step_flops": 30e9, "gemm_flops": 2e9,
         "step_s": 0.3, "gemm_s": 0.01, "repeats": 1, "steps": 1, "torch": "x"}
    text = "\n".join(roofline.summarise(m, target_ms=100))
    assert "| step rate | 100.0 GFLOP/s |" in text
    assert "| sgemm 1000x1000 rate (the ceiling) | 200.0 GFLOP/s |" in text
    assert "| step rate / sgemm rate | 0.500 |" in text
    assert "| step time at the sgemm rate (the floor) | 150.0 ms |" in text
    assert "| rate a 100 ms step needs | 300.0 GFLOP/s (1.50x the sgemm rate) |" in text


def test_bad_sizes_are_refused(capsys):
    import pytest

    with pytest.raises(SystemExit):
        roofline.main(["--gemm", "0"])
    assert "--gemm must be at least 1, got 0" in capsys.readouterr().err


def test_summary_with_compile_rows():
    m = {"threads": 2, "batch": 128, "gemm": 1000, "step_flops": 30e9, "gemm_flops": 2e9,
         "step_s": 0.3, "gemm_s": 0.01, "repeats": 1, "steps": 1, "torch": "x",
         "compile_mode": "default", "compiled_step_s": 0.25, "compile_s": 31.6}
    text = "\n".join(roofline.summarise(m, target_ms=100))
    assert "| step time under torch.compile (default; 32 s to compile) | 250.0 ms |" in text
    assert "| eager / compiled | 1.200 |" in text


def test_summary_with_nchw_rows():
    m = {"threads": 2, "batch": 128, "gemm": 1000, "step_flops": 30e9, "gemm_flops": 2e9,
         "step_s": 0.3, "gemm_s": 0.01, "repeats": 1, "steps": 1, "torch": "x", "nchw_step_s": 0.375}
    text = "\n".join(roofline.summarise(m, target_ms=100))
    assert "| step time in NCHW (contiguous) | 375.0 ms |" in text
    assert "| NCHW / channels_last | 1.250 |" in text


def test_nchw_twin_is_timed_beside_the_step():
    m = roofline.measure(threads=1, repeats=1, steps=1, gemm=64, batch=2, nchw=True)
    assert m["nchw_step_s"] > 0 and m["step_s"] > 0
