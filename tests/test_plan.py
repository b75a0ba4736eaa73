"""debench plan: images per run from the resolved protocol, hours only from measured throughput."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from debench.errors import ConfigError
from debench.plan import format_plan, load_measurements, plan

ROOT = Path(__file__).resolve().parents[1]


def _config(tmp: Path) -> Path:
    cfg = {
        "preset": "plantest", "seeds": [0, 1, 2],
        "data": {"source": "synthetic", "synthetic": {"train_size": 1000, "test_size": 100}},
        "runtime": {"device": "auto", "amp": "auto", "compile": "auto"},
        "experiments": {
            "iters": {"table": "discrete", "datasets": ["cifar10"], "models": ["resnet20", "resnet32"],
                      "protocol": {"batch_size": 128, "iterations": 64000}},
            "epochs": {"table": "discrete", "datasets": ["cifar10"], "models": ["resnet20"],
                       "protocol": {"batch_size": 100, "epochs": 3, "val_fraction": 0.1}},
            "sizes": {"table": "measurements", "kind": "measure", "datasets": ["cifar10"], "models": ["resnet20"],
                      "protocol": {"batch_size": 128, "iterations": 1}},
        },
    }
    path = tmp / "plan.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _measurements(tmp: Path) -> Path:
    folder = tmp / "meas"
    folder.mkdir()
    rows = [{"model": "resnet20", "loop": "bf16+cudagraphs", "device": "GPU-X", "median_img_s": 20000.0},
            {"model": "resnet20", "loop": "bf16", "device": "GPU-X", "median_img_s": 1.0},  # other loop: unused
            {"model": "resnet20", "loop": "fp32", "device": "CPU x2 threads", "median_img_s": 500.0}]
    (folder / "a.json").write_text(json.dumps(rows))
    # a slower second measurement of the same loop wins (cost estimates take the slower)
    (folder / "b.json").write_text(json.dumps([{**rows[0], "median_img_s": 16000.0}]))
    (folder / "notes.json").write_text(json.dumps({"not": "a throughput list"}))
    return folder


def test_hours_are_images_over_measured_throughput_and_unmeasured_models_stay_unknown(tmp_path):
    from debench.config import load_config

    from debench.plan import measurement_runs

    config = load_config(_config(tmp_path))
    rows = plan(config, load_measurements(_measurements(tmp_path)))
    by = {(r["experiment"], r["model"]): r for r in rows}
    assert {r["experiment"] for r in rows} == {"iters", "epochs"} and measurement_runs(config) == 3
    r20 = by[("iters", "resnet20")]
    assert r20["runs"] == 3 and r20["images"] == 3 * 64000 * 128
    assert r20["machines"]["GPU-X"]["hours"] == pytest.approx(3 * 64000 * 128 / 16000 / 3600)
    assert r20["machines"]["GPU-X"]["source"] == "b.json"
    assert r20["machines"]["CPU x2 threads"]["hours"] == pytest.approx(3 * 64000 * 128 / 500 / 3600)
    ep = by[("epochs", "resnet20")]
    assert ep["images"] == 3 * 3 * 900  # synthetic train size less the validation share
    r32 = by[("iters", "resnet32")]
    assert r32["machines"]["GPU-X"]["hours"] is None and r32["machines"]["CPU x2 threads"]["hours"] is None
    text = format_plan(rows)
    assert "+3 unknown" in text and "unknown on at least one machine (1 models): resnet32" in text
    assert "GPU-X: 1 models measured (b.json), 0 scaled" in text


def _with_flops(tmp: Path) -> Path:
    """CPU calibration rows with FLOPs (debench calibrate's format) beside _measurements'."""
    folder = _measurements(tmp)
    cpu = [{"model": "resnet20", "loop": "fp32", "device": "CPU x2 threads", "median_img_s": 500.0,
            "flops_per_image": 1.0e8},
           {"model": "resnet32", "loop": "fp32", "device": "CPU x2 threads", "median_img_s": 200.0,
            "flops_per_image": 2.0e8},
           {"model": "resnet44", "loop": "fp32", "device": "CPU x2 threads", "median_img_s": 50.0,
            "flops_per_image": 4.0e8},
           {"model": "resnet56", "error": "RuntimeError: out of memory", "device": "CPU x2 threads"}]
    (folder / "session").mkdir()  # a GPU session's folder of raw output is read too
    (folder / "session" / "calibration_cpu.json").write_text(json.dumps(cpu))
    return folder


def test_unmeasured_models_are_scaled_by_flops_and_marked_with_the_cpu_error(tmp_path):
    from debench.config import load_config

    from debench.plan import scaling_error

    meas = load_measurements(_with_flops(tmp_path))
    err = scaling_error(meas)
    # predicted img/s: resnet32 500 x 1/2 = 250 (measured 200: predicted/measured time 0.8);
    # resnet44 500 x 1/4 = 125 (measured 50: 0.4)
    assert err["n"] == 2 and err["ratios"] == pytest.approx({"resnet32": 0.8, "resnet44": 0.4})
    assert err["median"] == pytest.approx(0.6) and err["worst"] == pytest.approx(0.4)
    assert err["worst_model"] == "resnet44" and err["factor"] == pytest.approx(2.5)
    rows = plan(load_config(_config(tmp_path)), meas)
    r32 = {(r["experiment"], r["model"]): r for r in rows}[("iters", "resnet32")]
    gpu, cpu = r32["machines"]["GPU-X"], r32["machines"]["CPU x2 threads"]
    assert gpu["how"] == "scaled" and gpu["hours"] == pytest.approx(3 * 64000 * 128 / (16000 / 2) / 3600)
    assert cpu["how"] == "measured" and cpu["hours"] == pytest.approx(3 * 64000 * 128 / 200 / 3600)
    text = format_plan(rows, err)
    assert "scaled x/2.5)" in text and "unknown on at least one machine (0 models): none" in text
    assert "worst 0.40 (resnet44) over 2 models" in text


def test_plan_takes_a_preset_name(tmp_path):
    (tmp_path / "config").mkdir()
    _config(tmp_path).rename(tmp_path / "config" / "plan.yaml")
    out = subprocess.run([sys.executable, "-m", "debench.cli", "plan", "plantest", "--measurements",
                          str(_measurements(tmp_path))], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "plan for config/plan.yaml (preset plantest): 9 training runs" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "debench.cli", "plan", "nopreset"], capture_output=True,
                         text=True, cwd=tmp_path)
    assert bad.returncode == 2 and "nopreset" in bad.stderr


def test_cli_prints_the_plan_and_names_a_missing_measurements_folder(tmp_path):
    cfg = _config(tmp_path)
    ok = subprocess.run([sys.executable, "-m", "debench.cli", "plan", "--configfile", str(cfg),
                         "--measurements", str(_measurements(tmp_path))], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "9 training runs, and 3 measurement runs" in ok.stdout and "total" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "debench.cli", "plan", "--configfile", str(cfg),
                          "--measurements", str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert bad.returncode == 2 and "nowhere" in bad.stderr


def test_a_bad_config_key_is_named(tmp_path):
    from debench.config import load_config

    path = _config(tmp_path)
    cfg = yaml.safe_load(path.read_text())
    cfg["experiments"]["iters"]["protocol"]["lr_typo"] = 0.1
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="lr_typo"):
        load_config(path)
    with pytest.raises(ConfigError, match="missing.yaml"):
        load_config(tmp_path / "missing.yaml")


def test_the_survey_config_plans(tmp_path):
    from debench.config import load_config

    rows = plan(load_config(ROOT / "config" / "config.yaml"), load_measurements(ROOT / "docs" / "measurements"))
    assert sum(r["runs"] for r in rows) > 100 and all(r["images"] for r in rows)


def test_a_superseded_measurement_is_withdrawn_and_the_slower_rule_no_longer_sees_it(tmp_path):
    folder = _measurements(tmp_path)
    key = ("GPU-X", "resnet20", "bf16+cudagraphs")
    # without the list the slower of a.json (20,000) and b.json (16,000) counts
    assert {(m.device, m.model, m.loop): m.img_s for m in load_measurements(folder)}[key] == 16000.0
    (folder / "superseded.json").write_text(json.dumps(
        [{"file": "b.json", "model": "resnet20", "loop": "bf16+cudagraphs", "reason": "2 warm-up steps"}]))
    assert {(m.device, m.model, m.loop): m.img_s for m in load_measurements(folder)}[key] == 20000.0
    # a whole file withdrawn (a calibration on a loaded machine): none of its rows counts
    (folder / "superseded.json").write_text(json.dumps(
        [{"file": "b.json", "model": "*", "loop": "*", "reason": "timed while other jobs shared the cores"}]))
    assert not [m for m in load_measurements(folder) if m.source == "b.json"]
    assert {(m.device, m.model, m.loop): m.img_s for m in load_measurements(folder)}[key] == 20000.0
    (folder / "superseded.json").write_text(json.dumps([{"file": "gone.json", "model": "resnet20",
                                                         "loop": "bf16", "reason": "x"}]))
    with pytest.raises(ConfigError, match="gone.json"):
        load_measurements(folder)
    (folder / "superseded.json").write_text(json.dumps([{"file": "b.json", "model": "resnet20", "loop": "bf16"}]))
    with pytest.raises(ConfigError, match="entry 0 lacks reason"):
        load_measurements(folder)


def test_the_readme_shows_the_plan_the_command_prints_now():
    """README.md's `$ debench plan` block equals the command's output for the survey config
    (scripts/readme_plan.py --write rewrites it)."""
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "readme_plan.py")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr


def test_a_row_calibrate_marked_unstable_is_not_a_throughput(tmp_path):
    folder = _measurements(tmp_path)
    (folder / "c.json").write_text(json.dumps([{"model": "resnet32", "loop": "fp32", "device": "CPU x2 threads",
                                                "median_img_s": 3.0, "unstable": "timed steps range 0.02 to 2.7 s"}]))
    assert ("CPU x2 threads", "resnet32") not in {(m.device, m.model) for m in load_measurements(folder)}
