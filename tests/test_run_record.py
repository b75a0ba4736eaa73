"""The run record describes itself (schema 2), and its config hash covers every input that changes
a result's bits: a changed protocol default, data size or data content never resumes a checkpoint."""

from __future__ import annotations

import dataclasses
import json
import statistics

import pytest

import debench.train.loop as loop
from debench.data import prepare_dataset
from debench.train import checkpoint as ckpt
from debench.train.protocol import Protocol
from debench.train.record import SCHEMA_VERSION, flat_params, summarize
from debench.train.runtime import continuous_depth, resolve_compile, resolve_precision
from tests.conftest import ROOT, make_spec
from tests.nan_model import NaNAfter  # noqa: F401  (registers test_nan_after, a one-layer model)

TINY = {"model": "test_nan_after", "model_args": {"after": 10**9}, "protocol": {"epochs": 1}}


@pytest.fixture
def tiny_cache(tmp_path):
    out = tmp_path / "data" / "cifar10.npz"
    prepare_dataset("cifar10", "synthetic", out, train_size=128, test_size=64, seed=0)
    return out


@pytest.fixture
def loads(monkeypatch):
    """What each ``train`` got back from the checkpoint folder (None: started fresh)."""
    got: list = []
    real = ckpt.load_latest
    monkeypatch.setattr(ckpt, "load_latest", lambda *a, **k: got.append(real(*a, **k)) or got[-1])
    return got


def test_record_names_resolved_settings_meta_precision_and_data(tmp_path, tiny_cache):
    rec = loop.train(make_spec(tmp_path, tiny_cache, **{**TINY, "protocol": {"epochs": 3}}))
    assert rec["schema_version"] == SCHEMA_VERSION == 2
    # the spec's four keys (make_spec, epochs 3) and every default, written out: a record names all of them
    assert rec["protocol"] == {
        "batch_size": 64, "epochs": 3, "lr": 0.02, "eval_batch_size": 128,
        "optimizer": "sgd", "momentum": 0.9, "nesterov": False, "weight_decay": 1e-4, "iterations": None,
        "schedule": "step", "milestones": [], "gamma": 0.1, "warmup_iterations": 0, "warmup_lr": None,
        "crop_padding": 4, "flip": True, "input_norm": "channel", "val_fraction": 0.0, "select_by": "last",
        "grad_clip": None, "ema": None, "label_smoothing": 0.0, "eval_every": 1, "checkpoint_every": 1,
    }
    assert rec["model_args"] == {"after": 10**9, "in_channels": 3, "num_classes": 10}
    meta = rec["model_meta"]
    assert meta == {"reference": [], "depth": None, "constant_depth_twin": None, "baseline": None,
                    "compilable": False, "compiled": False, "module": "tests.nan_model"}
    assert rec["precision"] == {"train": "fp32", "eval": "fp32", "activation_memory": "fp32",
                                "peak_memory": "fp32", "nfe": "fp32", "time": "fp32"}
    sidecar = json.loads(tiny_cache.with_suffix(".json").read_text())
    assert rec["data"]["sha256"] == sidecar["sha256"] and rec["data"]["train_size"] == 128
    times = [r["epoch_time_s"] for r in _rows(tmp_path)]
    assert rec["epoch_time_median_s"] == pytest.approx(statistics.median(times[1:]))
    assert rec["resumed_from_epoch"] == 0 and rec["family"] == "discrete" and rec["metric"] == "test_error"


def test_record_meta_of_a_stochastic_depth_model_names_its_twin():
    from debench.registry import model_meta

    meta = model_meta("stochastic_depth_resnet110")
    assert meta["constant_depth_twin"] == "resnet110" and meta["depth"] == 110
    assert {"table_id": "HUANG16_T1", "model": "ResNet with stochastic depth", "depth": "110"} in meta["reference"]
    assert model_meta("rk4_resnet20")["depth"] == 20 and model_meta("odenet_mnist")["depth"] is None


def _rows(tmp_path):
    import csv

    with open(tmp_path / "run" / "epochs.csv") as f:
        return [{k: float(v) for k, v in r.items() if v} for r in csv.DictReader(f)]


def test_changed_protocol_default_never_resumes(tmp_path, tiny_cache, loads, monkeypatch):
    a = loop.train(make_spec(tmp_path, tiny_cache, **TINY))
    real = Protocol.from_dict.__func__

    def new_default(cls, values, where="protocol"):  # a release that changes weight_decay's default
        return dataclasses.replace(real(cls, values, where), weight_decay=5e-4)

    monkeypatch.setattr(Protocol, "from_dict", classmethod(new_default))
    b = loop.train(make_spec(tmp_path, tiny_cache, **TINY))
    assert b["protocol"]["weight_decay"] == 5e-4
    assert loads == [None, None] and a["config_hash"] != b["config_hash"]


@pytest.mark.parametrize("change", [{"train_size": 96, "seed": 0}, {"train_size": 128, "seed": 1}],
                         ids=["data size", "data content"])
def test_changed_data_never_resumes(tmp_path, tiny_cache, loads, change):
    a = loop.train(make_spec(tmp_path, tiny_cache, **TINY))
    prepare_dataset("cifar10", "synthetic", tiny_cache, test_size=64, **change)  # same path, new data
    b = loop.train(make_spec(tmp_path, tiny_cache, **TINY))
    assert loads == [None, None] and a["config_hash"] != b["config_hash"]
    assert a["data"]["sha256"] != b["data"]["sha256"]


def test_unchanged_settings_still_resume(tmp_path, tiny_cache, loads):
    a = loop.train(make_spec(tmp_path, tiny_cache, **TINY))
    b = loop.train(make_spec(tmp_path, tiny_cache, **TINY))
    assert loads[0] is None and loads[1]["config_hash"] == a["config_hash"] == b["config_hash"]


@pytest.mark.slow
def test_live_and_synced_runs_log_the_same_parameters(tmp_path, tiny_cache):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from debench.track.sync import _params

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    rec = loop.train(make_spec(tmp_path, tiny_cache, **TINY, tracking={"enabled": True, "uri": uri}))
    live = MlflowClient(uri).get_run(rec["mlflow_run_id"]).data.params
    synced = {k: str(v)[:6000] for k, v in _params(rec).items()}
    assert live == synced
    assert live["protocol.weight_decay"] == "0.0001" and live["precision.train"] == "fp32"
    assert flat_params(rec)["model_meta.reference"] == "[]"


# ---- precision per metric (issue 13, point 4) ---------------------------------------------------

@pytest.mark.parametrize("amp,device,continuous,train", [
    ("auto", "cuda", False, "bf16"),   # discrete nets may train in bf16 on a GPU
    ("auto", "cuda", True, "fp32"),    # adaptive solvers: bf16 rounding inflates NFE 1.2-2.2x
    ("bf16", "cuda", True, "bf16"),    # ... unless the config says otherwise
    ("auto", "cpu", False, "fp32"),
    ("off", "cuda", False, "fp32"),
])
def test_precision_per_metric(amp, device, continuous, train):
    p = resolve_precision(amp, device, continuous)
    assert p["train"] == p["eval"] == p["nfe"] == p["time"] == p["peak_memory"] == train
    assert p["activation_memory"] == "fp32"


def test_other_tasks_are_evaluated_in_fp32_and_say_so():
    p = resolve_precision("auto", "cuda", False, classify=False)  # score SDEs: likelihood and samples
    assert p["train"] == p["nfe"] == "bf16" and p["eval"] == p["activation_memory"] == "fp32"


def test_unknown_amp_is_an_error_naming_the_key():
    from debench.errors import ConfigError

    with pytest.raises(ConfigError, match="runtime.amp: must be one of"):
        resolve_precision("fp16", "cuda", False)


def test_continuous_depth_models_are_the_solver_ones():
    from debench.registry import model_info

    assert continuous_depth(model_info("odenet_mnist")) and continuous_depth(model_info("rnode_mnist"))
    assert not continuous_depth(model_info("resnet6_mnist")) and not continuous_depth(model_info("resnet110"))


def test_activation_probe_measures_fp32_under_autocast():
    import torch

    from debench.train.measure import activation_probe_bytes, saved_activation_bytes

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(16 * 6 * 6, 10))
    x = torch.randn(4, 3, 8, 8)
    fp32 = activation_probe_bytes(net, lambda m: m(x).sum())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_amp = activation_probe_bytes(net, lambda m: m(x).sum())
        bf16 = saved_activation_bytes(lambda: net(x).float().sum(), exclude=list(net.parameters()))
    assert under_amp == fp32 and bf16 != fp32  # the autocast was real; the probe stepped out of it


# ---- fair time comparisons (issue 13, point 5) --------------------------------------------------

def test_a_model_and_its_constant_depth_twin_get_the_same_compile_mode():
    for sd, twin in [("stochastic_depth_resnet110", "resnet110"), ("stochastic_depth_resnet20", "resnet20"),
                     ("shakedrop_resnet110", "resnet110")]:
        assert resolve_compile("auto", "cuda", sd, [twin]) == resolve_compile("auto", "cuda", twin, [sd]) is False
    # a ResNet that no experiment times against a stochastic twin keeps its CUDA graphs
    assert resolve_compile("auto", "cuda", "resnet110") == "reduce-overhead"
    assert resolve_compile("auto", "cuda", "resnet32") == "reduce-overhead"
    assert resolve_compile("auto", "cpu", "resnet32") is False
    assert resolve_compile(True, "cpu", "resnet110") == "default"


def test_run_specs_name_the_models_timed_against_each_other_in_their_experiment():
    """The survey config: ResNet-110 beside its stochastic-depth twin runs eager like it; the
    ResNet-110 of He et al.'s table, timed against nothing, keeps CUDA graphs."""
    from debench.config import load_config, run_spec

    config = load_config(ROOT / "config" / "config.yaml")
    kw = {"cache": "c", "metrics": "m", "checkpoints": "k", "tracking": {}}
    sd = run_spec(config, "stochastic_depth", "cifar10", "resnet110", 0, **kw)
    assert "stochastic_depth_resnet110" in sd["timed_with"]
    assert resolve_compile("auto", "cuda", "resnet110", sd["timed_with"]) is False
    he = run_spec(config, "resnet_he2016", "cifar10", "resnet110", 0, **kw)
    assert he["timed_with"] == []
    assert resolve_compile("auto", "cuda", "resnet110", he["timed_with"]) == "reduce-overhead"


def test_median_epoch_time_leaves_out_each_process_first_epoch():
    rows = [{"epoch": e, "epoch_time_s": t, "images_per_s": 1.0, "train_loss": 1.0}
            for e, t in enumerate([30.0, 1.0, 25.0, 2.0, 3.0], start=1)]
    s = summarize(rows, {"val": 0, "epoch": None}, Protocol.from_dict({"epochs": 5}), True, "failed",
                  warmup_epochs=[1, 3])  # compiled in epoch 1, resumed (and recompiled) in epoch 3
    assert s["epoch_time_median_s"] == 2.0 and s["epoch_time_s"] == pytest.approx(61.0 / 5)
    one = summarize(rows[:1], {"val": 0, "epoch": None}, Protocol.from_dict({"epochs": 1}), True, "failed", [1])
    assert one["epoch_time_median_s"] is None


def test_seeds_of_one_configuration_share_a_settings_hash_and_nothing_else_does():
    """The report averages over seeds within one settings_hash: it must be equal across seeds
    (the config hash, which keys checkpoints, is not) and differ for any changed setting."""
    from debench.registry import model_info, model_meta
    from debench.train.record import record_head

    runtime = {"device": "cpu", "device_type": "cpu", "threads": 1, "channels_last": True, "amp": "off",
               "compile": False, "precision": resolve_precision("off", "cpu", False)}

    def head(seed, lr=0.1):
        spec = {"experiment": "e", "model": "resnet20", "dataset": "cifar10", "seed": seed, "data_source": "npz"}
        return record_head(spec, model_info("resnet20"), Protocol.from_dict({"epochs": 1, "lr": lr}).as_dict(),
                           {"num_classes": 10}, model_meta("resnet20"), runtime, {"sha256": "abc"})

    a, b, c = head(0), head(1), head(0, lr=0.05)
    assert a["config_hash"] != b["config_hash"] and a["settings_hash"] == b["settings_hash"]
    assert c["settings_hash"] != a["settings_hash"]
