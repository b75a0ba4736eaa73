"""fp32 means IEEE fp32, and only fp32 rows are judged against the papers.

PyTorch's default runs fp32 convolutions (and cuDNN RNNs) in TF32 on Ampere and later GPUs, a
10-bit mantissa the papers' GPUs never used; before this, debench's "fp32" GPU runs and
measurements inherited it, and a bf16 run (the survey config's ``amp: auto`` on CUDA) stood beside
the papers' fp32 numbers with a verdict.
"""

from __future__ import annotations

import json

import pytest
import torch

from debench.config import SURVEY_CONFIG, load_config
from debench.errors import ConfigError
from debench.plan import format_plan, load_measurements, plan, training_loop
from debench.report.aggregate import aggregate
from debench.train.loop import train
from debench.train.runtime import apply_math_mode, resolve_precision
from tests.conftest import ROOT, make_spec
from tests.report_records import record, write_record

PUBLISHED = ROOT / "config" / "reference" / "published_results.csv"
FLAGS = (torch.backends.cudnn.conv, torch.backends.cudnn.rnn, torch.backends.cuda.matmul)


@pytest.fixture
def restore_math():
    before = [f.fp32_precision for f in FLAGS]
    yield
    for f, v in zip(FLAGS, before):
        f.fp32_precision = v


def test_a_run_sets_ieee_fp32_whatever_the_process_had(tmp_path, synthetic_cache, restore_math):
    for f in FLAGS:  # torch's own default for cuDNN convolutions; here set on every flag
        f.fp32_precision = "tf32"
    spec = make_spec(tmp_path, synthetic_cache, protocol={"epochs": 1})
    spec["runtime"] = {**spec.get("runtime", {}), "amp": "off"}
    rec = train(spec)
    assert rec["status"] == "ok" and rec["precision"]["train"] == "fp32"
    assert [f.fp32_precision for f in FLAGS] == ["ieee"] * 3


def test_tf32_is_a_named_precision_and_sets_tf32(restore_math):
    assert resolve_precision("tf32", "cuda", adaptive=False)["train"] == "tf32"
    assert resolve_precision("tf32", "cpu", adaptive=False)["train"] == "fp32"  # no TF32 on a CPU
    assert resolve_precision("off", "cuda", adaptive=False)["train"] == "fp32"
    assert apply_math_mode({"train": "tf32"}) == "tf32"
    assert [f.fp32_precision for f in FLAGS] == ["tf32"] * 3
    assert apply_math_mode({"train": "bf16"}) == "ieee"  # what autocast leaves in fp32 stays IEEE
    assert [f.fp32_precision for f in FLAGS] == ["ieee"] * 3


def test_a_bf16_or_tf32_row_is_not_judged_against_the_fp32_paper(tmp_path):
    runs = tmp_path / "runs"
    # three tight seeds whose CI lies inside 8.75 +- 0.5: reproduced in fp32, not comparable otherwise
    for prec, model in (("fp32", "resnet20"), ("bf16", "resnet32"), ("tf32", "resnet44")):
        for seed, err in enumerate([8.6, 8.7, 8.8]):
            write_record(runs, record(model, seed, value=err, config_hash=prec,
                                      precision={"train": prec, "eval": prec, "time": prec}))
    summary = aggregate(runs, PUBLISHED, tmp_path / "out", tolerances={"test_error": 0.5}).set_index("model")
    assert summary.loc["resnet20", "verdict"] == "reproduced"
    for model, prec in (("resnet32", "bf16"), ("resnet44", "tf32")):
        assert summary.loc[model, "verdict"] == "not comparable"
        assert f"trained in {prec}" in summary.loc[model, "verdict_reason"]
        assert "amp: off" in summary.loc[model, "verdict_reason"]


def test_the_survey_trains_in_fp32_and_a_comparable_bf16_preset_is_refused(tmp_path):
    survey = load_config(SURVEY_CONFIG)
    assert survey["runtime"]["amp"] == "off"
    text = SURVEY_CONFIG.read_text().replace('amp: "off"', "amp: bf16", 1)
    bad = tmp_path / "config.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError, match=r"runtime\.amp.*bf16.*comparable"):
        load_config(bad)
    variant = tmp_path / "variant.yaml"
    variant.write_text(text.replace("comparable: true", "comparable: false", 1))
    assert load_config(variant)["runtime"]["amp"] == "bf16"  # a variant may


def _measurements(folder, rows):
    folder.mkdir()
    (folder / "m.json").write_text(json.dumps(rows))
    return load_measurements(folder)


def test_gpu_fp32_rows_timed_before_ieee_load_as_tf32_and_the_plan_says_lower_bound(tmp_path):
    gpu, cpu = "NVIDIA X", "CPU test x2 threads"
    ms = _measurements(tmp_path / "m", [
        {"model": "resnet20", "loop": "fp32", "device": gpu, "median_img_s": 1000.0},  # no fp32_math: TF32
        {"model": "resnet32", "loop": "fp32", "device": gpu, "median_img_s": 500.0, "fp32_math": "ieee"},
        {"model": "resnet20", "loop": "fp32", "device": cpu, "median_img_s": 10.0},
    ])
    loops = {(m.device, m.model): m.loop for m in ms}
    assert loops == {(gpu, "resnet20"): "tf32", (gpu, "resnet32"): "fp32", (cpu, "resnet20"): "fp32"}
    config = load_config(SURVEY_CONFIG)
    config["experiments"] = {"resnet_he2016": {**config["experiments"]["resnet_he2016"],
                                               "models": ["resnet20", "resnet32"]}}
    config["runtime"]["compile"] = False
    assert training_loop(config["runtime"], "cuda", "resnet20") == "fp32"
    rows = {r["model"]: r["machines"][gpu] for r in plan(config, ms)}
    assert rows["resnet20"]["how"] == "measured" and rows["resnet20"]["loop"] == "tf32"
    assert rows["resnet32"]["how"] == "measured" and rows["resnet32"]["loop"] == "fp32"
    text = format_plan(plan(config, ms))
    assert "fp32 from tf32" in text and "lower bound" in text
