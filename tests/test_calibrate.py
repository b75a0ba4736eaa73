"""debench calibrate: a few timed steps per model, FLOPs of one step, a row per model even when one fails."""

from __future__ import annotations

import json

import pytest
import torch.nn as nn

from debench.calibrate import calibrate
from debench.registry import _REGISTRY, register_model


def test_counts_one_steps_flops_exactly_and_times_it(tmp_path):
    out = tmp_path / "cal.json"
    rows = calibrate(["mlp300_mnist"], None, threads=1, steps=2, warmup=0, out=out, echo=lambda s: None)
    row = json.loads(out.read_text())[0]
    assert row == rows[0] and row["batch_size"] == 128 and row["timed_batch"] == 128 and row["loop"] == "fp32"
    # 784-300-10 MLP: forward 2(784x300 + 300x10) multiply-adds, backward the weight gradients of
    # both layers and the input gradient of the second (the images need none)
    assert row["flops_per_image"] == 2 * (784 * 300 + 300 * 10) + 2 * 784 * 300 + 2 * 2 * 300 * 10
    assert len(row["s_per_step"]) == 2 and row["median_img_s"] > 0 and row["device"].startswith("CPU")


def test_a_missing_package_skips_a_model_and_a_failure_is_a_row_and_resume_keeps_what_was_measured(tmp_path):
    @register_model("calib_needs_pkg", family="discrete", paper="test", scheme="test")
    def needs_pkg(**kw):
        import not_an_installed_package  # noqa: F401

    @register_model("calib_broken", family="discrete", paper="test", scheme="test")
    def broken(**kw):
        return nn.Identity()  # no parameters: the optimizer refuses it

    try:
        out = tmp_path / "cal.json"
        lines: list[str] = []
        rows = calibrate(["calib_needs_pkg", "calib_broken", "mlp300_mnist"], None, steps=1, warmup=0,
                         count_flops=False, out=out, echo=lines.append)
        by = {r["model"]: r for r in rows}
        assert by["calib_needs_pkg"]["skipped"] == "needs not_an_installed_package"
        assert "error" in by["calib_broken"] and "skipped" not in by["calib_broken"]
        assert by["mlp300_mnist"]["median_img_s"] > 0
        assert "skipped: calib_needs_pkg (needs not_an_installed_package); failed: calib_broken" in lines[-1]
        lines.clear()
        again = calibrate(["calib_broken", "mlp300_mnist"], None, steps=1, warmup=0, count_flops=False, out=out,
                          echo=lines.append, resume=True)
        assert "resuming: 1 model(s) already measured" in lines[1]
        assert [r["model"] for r in again] == ["mlp300_mnist", "calib_broken"]
        assert again[0]["s_per_step"] == by["mlp300_mnist"]["s_per_step"]  # kept, not re-timed
    finally:
        _REGISTRY.pop("calib_needs_pkg", None)
        _REGISTRY.pop("calib_broken", None)


def test_a_model_over_its_time_limit_becomes_an_error_row_and_the_others_run(tmp_path):
    import time

    @register_model("calib_slow", family="discrete", paper="test", scheme="test")
    def slow(**kw):
        time.sleep(90)

    try:
        calibrate(["mlp300_mnist"], None, steps=1, warmup=0, count_flops=False, echo=lambda s: None)  # imports
        t0 = time.perf_counter()
        rows = calibrate(["calib_slow", "mlp300_mnist"], None, steps=1, warmup=0, count_flops=False,
                         model_timeout_s=25, echo=lambda s: None)
        assert rows[0]["error"].startswith("TimeoutError") and rows[1]["median_img_s"] > 0
        assert time.perf_counter() - t0 < 80  # the 90 s model was cut at 25 s
    finally:
        _REGISTRY.pop("calib_slow", None)


def test_one_slow_step_does_not_end_the_timing_and_marks_nothing_as_measured_from_it():
    """On an H200, hamiltonian38 was timed as [0.016, 2.059] s: the old cut (the sum of the steps
    over --max-step-s 2) stopped after two steps, whose median is their mean (11.6 img/s, against
    3,259.6 measured again with more warm-up)."""
    from debench.calibrate import time_steps

    durations = iter([0.016, 2.059, 0.016, 0.017, 0.016])
    now = [0.0]

    def clock():
        return now[0]

    def step():
        now[0] += next(durations)
        return 100

    times, n = time_steps(step, 5, 2.0, lambda: None, clock=clock)
    assert n == 100 and len(times) == 5 and sorted(times)[2] == pytest.approx(0.016)
    # a model whose every step is slow is still cut short
    now[0] = 0.0
    durations = iter([1.5] * 5)
    assert len(time_steps(step, 5, 2.0, lambda: None, clock=clock)[0]) == 2


def test_every_timed_step_is_a_full_batch(tmp_path):
    """At a batch that does not divide the synthetic split (100 of 256 rows) an epoch's last batch
    (56 images) was timed as a step, and the row's images/s took the last step's size: on the CPU
    calibration, every Chang et al. model at batch 100 came out with one 5x-fast step, marked unstable."""
    import statistics

    rows = calibrate(["mlp300_mnist"], None, threads=1, steps=6, warmup=0, count_flops=False, max_batch=100,
                     out=tmp_path / "cal.json", echo=lambda s: None)
    row = rows[0]
    assert row["timed_batch"] == 100 and len(row["s_per_step"]) == 6
    assert row["median_img_s"] == pytest.approx(100 / statistics.median(row["s_per_step"]))
