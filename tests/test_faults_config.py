"""Fault injection, bad input: every malformed config stops the run with a message naming the key.

Each case goes through the gate of the Snakefile, ``debench plan`` and ``debench status``:
``debench.config.validate_config`` (the JSON schema ``workflow/schemas/config.schema.yaml`` with
its defaults, then ``check_config`` with the YAML line locator). Two cases also go end to end
through ``snakemake -n`` in a temporary project copy; ``tests/test_config_errors.py`` runs the
issue-28 cases under every reader.
"""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from debench.config import check_config, validate_config, yaml_locator
from debench.errors import ConfigError
from tests.conftest import ROOT

pytestmark = pytest.mark.faults
SCHEMA = str(ROOT / "workflow" / "schemas" / "config.schema.yaml")

BASE = {
    "preset": "faults", "comparable": False, "seeds": [0],
    "data": {"source": "synthetic", "synthetic": {"train_size": 64, "test_size": 32}},
    "report": {"tolerances": {"test_error": 0.5}},
    "experiments": {
        "disc": {"table": "discrete", "datasets": ["cifar10"], "models": ["resnet20"],
                 "protocol": {"epochs": 1, "lr": 0.1, "batch_size": 32}},
    },
}


def _exp(**kv):
    def mutate(c):
        c["experiments"]["disc"].update(kv)
    return mutate


def _proto(**kv):
    def mutate(c):
        c["experiments"]["disc"]["protocol"].update(kv)
    return mutate


def _top(**kv):
    def mutate(c):
        c.update(kv)
    return mutate


# (id, mutation, gate, message fragment, the key's true path in the file). "schema": the JSON
# schema refuses it; "check": the schema lets it through and check_config must not; "check-only":
# check_config alone (a config that skipped the schema).
CASES = [
    ("unknown top-level key", _top(epochz=3), "schema", "unknown key at the top level; valid keys here: preset,",
     "epochz"),
    ("top-level typo with hint", lambda c: c.update(seed=c.pop("seeds")), "schema",
     "unknown key at the top level; did you mean 'seeds'?", "seed"),
    ("unknown experiment key", _exp(modles=["resnet20"]), "schema",
     "unknown key under 'experiments.disc'; did you mean 'models'?", "experiments.disc.modles"),
    ("seeds of the wrong type", _top(seeds="0,1"), "schema", "expected array, got str '0,1'", "seeds"),
    ("negative seed", _top(seeds=[-1]), "schema", "-1 is less than the minimum of 0", "seeds[0]"),
    ("mode typo", _exp(mode="papers"), "schema", "'papers' is not one of paper, common; did you mean 'paper'?",
     "experiments.disc.mode"),
    ("zero tolerance", _top(report={"tolerances": {"test_error": 0}}), "schema",
     "0 is less than or equal to the minimum of 0", "report.tolerances.test_error"),
    ("negative tolerance", _top(report={"tolerances": {"test_error": -1.0}}), "schema",
     "-1.0 is less than or equal to the minimum of 0", "report.tolerances.test_error"),
    ("tolerance of the wrong type", _top(report={"tolerances": {"test_error": "half"}}), "schema",
     "'half' does not match", "report.tolerances.test_error"),
    ("unknown data source", _top(data={"source": "s3"}), "schema", "'s3' is not one of torchvision, npz, synthetic",
     "data.source"),
    ("unknown runtime device", _top(runtime={"device": "tpu"}), "schema", "'tpu' does not match", "runtime.device"),
    ("preset escaping results/", _top(preset=".."), "schema", "'..' does not match", "preset"),
    ("experiment name with a path", lambda c: c["experiments"].update({"../../etc": c["experiments"]["disc"]}),
     "schema", "the name '../../etc' is not allowed: an experiment name is a folder name", "experiments.../../etc"),
    ("dataset name with a path", _exp(datasets=["../cifar10"]), "schema", "'../cifar10' does not match",
     "experiments.disc.datasets[0]"),
    ("model name with a path", _exp(models=["../resnet20"]), "schema", "'../resnet20' does not match",
     "experiments.disc.models[0]"),
    ("unknown model, closest names", _exp(models=["resnet21"]), "check",
     "unknown model 'resnet21'; closest registered: ", "experiments.disc.models"),
    ("unknown model pattern", _exp(models=["resnot*"]), "check", "unknown model 'resnot*'",
     "experiments.disc.models"),
    ("unknown dataset", _exp(datasets=["cifar11"]), "check", "unknown dataset 'cifar11'; did you mean cifar10",
     "experiments.disc.datasets"),
    ("epochs 0", _proto(epochs=0), "check", "must be > 0, got 0", "experiments.disc.protocol.epochs"),
    ("no budget", lambda c: c["experiments"]["disc"]["protocol"].pop("epochs"), "check",
     "set exactly one of 'epochs' and 'iterations'", "experiments.disc.protocol"),
    ("negative lr", _proto(lr=-0.1), "check", "must be > 0, got -0.1", "experiments.disc.protocol.lr"),
    ("lr as text", _proto(lr="fast"), "check", "expected float, got str 'fast'", "experiments.disc.protocol.lr"),
    ("batch size as float", _proto(batch_size=32.5), "check", "expected int, got float",
     "experiments.disc.protocol.batch_size"),
    ("epochs as bool", _proto(epochs=True), "check", "expected int, got bool", "experiments.disc.protocol.epochs"),
    ("flip as text", _proto(flip="yes"), "check", "expected bool, got str", "experiments.disc.protocol.flip"),
    ("null batch size", _proto(batch_size=None), "check", "must not be null", "experiments.disc.protocol.batch_size"),
    ("milestones as text", _proto(milestones="32000"), "check", "expected a list of integers",
     "experiments.disc.protocol.milestones"),
    ("unknown protocol key", _proto(learning_rate=0.1), "check", "unknown protocol key",
     "experiments.disc.protocol.learning_rate"),
    ("protocol key typo with hint", _proto(momentun=0.9), "check", "did you mean 'momentum'?",
     "experiments.disc.protocol.momentun"),
    ("unknown optimizer", _proto(optimizer="lbfgs"), "check", "must be sgd, adam or adamw",
     "experiments.disc.protocol.optimizer"),
    ("ema out of range", _proto(ema=1.5), "check", "must be in (0, 1)", "experiments.disc.protocol.ema"),
    ("val_fraction out of range", _proto(val_fraction=1.0), "check", "must be in [0, 1)",
     "experiments.disc.protocol.val_fraction"),
    ("per-model override of a bad value", _exp(protocol_overrides={"resnet20": {"lr": 0}}), "check",
     "must be > 0, got 0", "experiments.disc.protocol_overrides.resnet20.lr"),
    ("defaults.protocol typo, at its own line", _top(defaults={"protocol": {"eval_batch_size": 64, "iteratons": 8}}),
     "check", "unknown protocol key (did you mean 'iterations'?)", "defaults.protocol.iteratons"),
    ("defaults.protocol bad value", _top(defaults={"protocol": {"eval_batch_size": 0}}), "check",
     "must be > 0, got 0", "defaults.protocol.eval_batch_size"),
    ("override for a model not in the experiment", _exp(protocol_overrides={"resnet56": {"lr": 0.1}}), "check",
     "model 'resnet56' is not in this experiment's models", "experiments.disc.protocol_overrides.resnet56"),
    ("solver option on a discrete model", _exp(model_args={"resnet20": {"adjoint": True}}), "check",
     "resnet20 has no argument 'adjoint' (solver options apply to continuous models only)",
     "experiments.disc.model_args.resnet20.adjoint"),
    ("argument a model does not take", _exp(models=["stochastic_depth_resnet20"],
                                            model_args={"stochastic_depth_resnet20": {"p_first": 0.5}}),
     "check", "has no argument 'p_first'; it accepts p_last",
     "experiments.disc.model_args.stochastic_depth_resnet20.p_first"),
    ("survival probability above 1", _exp(models=["stochastic_depth_resnet20"],
                                          model_args={"stochastic_depth_resnet20": {"p_last": 1.5}}),
     "check", "must be a survival probability in (0, 1], got 1.5",
     "experiments.disc.model_args.stochastic_depth_resnet20.p_last"),
    ("survival probability 0", _exp(models=["stochastic_depth_resnet20"],
                                    model_args={"stochastic_depth_resnet20": {"p_last": 0}}),
     "check", "must be a survival probability in (0, 1], got 0",
     "experiments.disc.model_args.stochastic_depth_resnet20.p_last"),
    ("negative solver tolerance", _exp(models=["odenet_mnist"], datasets=["mnist"],
                                       model_args={"odenet_mnist": {"rtol": -1e-3}}),
     "check", "must be > 0, got -0.001", "experiments.disc.model_args.odenet_mnist.rtol"),
    ("zero step cap", _exp(models=["odenet_mnist"], datasets=["mnist"],
                           model_args={"odenet_mnist": {"max_num_steps": 0}}),
     "check", "must be >= 1, got 0", "experiments.disc.model_args.odenet_mnist.max_num_steps"),
    ("10-way head on CIFAR-100", _exp(datasets=["cifar100"], model_args={"resnet20": {"num_classes": 10}}),
     "check", "num_classes is set from the dataset (e.g. cifar100 has 100 classes)",
     "experiments.disc.model_args.resnet20.num_classes"),
    ("pattern catching an MNIST model in a CIFAR experiment", _exp(models=["resnet[0-9]*"]), "check",
     "pattern 'resnet[0-9]*' matches resnet6_mnist, which was built for mnist (name token 'mnist'), not cifar10",
     "experiments.disc.models"),
    ("pattern catching a density model in a classifier table", _exp(models=["*_mnist"], datasets=["mnist"]),
     "check", "pattern '*_mnist' matches ffjord_mnist, which has task 'density' but table 'discrete'",
     "experiments.disc.models"),
    ("named CIFAR model on MNIST", _exp(models=["odenet_cifar"], datasets=["mnist"]), "check",
     "odenet_cifar was built for cifar10/cifar100 (name token 'cifar'), not mnist", "experiments.disc.datasets"),
    ("image classifier on 2-D points", _exp(datasets=["eight_gaussians"]), "check",
     "resnet20 classifies images but eight_gaussians is not an image dataset", "experiments.disc.datasets"),
    ("invalid experiment name without the schema", lambda c: c["experiments"].update(
        {"a/b": c["experiments"].pop("disc")}), "check-only", "must match", "experiments.a/b"),
]


def _write(tmp: Path, mutate) -> tuple[dict, Path]:
    cfg = copy.deepcopy(BASE)
    mutate(cfg)
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return yaml.safe_load(path.read_text()), path


def test_base_config_passes(tmp_path):
    cfg, path = _write(tmp_path, lambda c: None)
    validate_config(cfg, [path])
    assert cfg["runtime"]["device"] == "auto"  # the schema's defaults are filled in


@pytest.mark.parametrize("mutate,gate,fragment,key", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_config_names_the_key(tmp_path, mutate, gate, fragment, key):
    """One line: the file, the key's true path, its line (whose text holds the key), what is wrong."""
    cfg, path = _write(tmp_path, mutate)
    with pytest.raises(ConfigError) as err:
        if gate == "check-only":
            check_config(cfg, locate=yaml_locator(str(path)))
        else:
            validate_config(cfg, [path])
    msg = str(err.value)
    assert "\n" not in msg, msg
    assert fragment in msg, msg
    prefix = "" if gate == "check-only" else f"{path}: "
    assert msg.startswith(f"{prefix}config key '{key}' (line "), msg
    if gate == "check":  # the schema alone lets it through
        from snakemake.utils import validate

        validate(copy.deepcopy(cfg), schema=SCHEMA)
    line = int(re.search(r"\(line (\d+)\)", msg).group(1))
    text = path.read_text().splitlines()[line - 1]
    last = re.sub(r"\[\d+\]$", "", key).split(".")[-1]
    if key.endswith("]"):  # a list item: its own line (block style) holds a '-'
        assert text.lstrip().startswith("-"), (msg, text)
    else:
        assert f"{last}:" in text, (msg, text)


def test_every_shipped_config_passes_the_gate_as_snakemake_validate_did():
    """debench's gate fills in exactly the defaults snakemake.utils.validate filled in."""
    from snakemake.utils import validate

    for name in ("config.yaml", "smoke.yaml", "measure.yaml"):
        path = ROOT / "config" / name
        cfg = yaml.safe_load(path.read_text())
        ours, theirs = copy.deepcopy(cfg), copy.deepcopy(cfg)
        validate_config(ours, [path])
        validate(theirs, schema=SCHEMA)
        assert ours == theirs, name


# ---- end to end: snakemake -n refuses the config before any job starts ------------------------

def _snakemake_n(tmp: Path, config_text: str) -> subprocess.CompletedProcess:
    from tests.test_workflow import SNAKEMAKE, project_copy

    project = project_copy(tmp)
    (project / "config" / "bad.yaml").write_text(config_text)
    out = subprocess.run(SNAKEMAKE + ["-n", "--cores", "1", "--configfile", "config/bad.yaml"], cwd=project,
                         capture_output=True, text=True, timeout=300)
    out.project = project
    return out


@pytest.mark.e2e
def test_snakemake_dry_run_refuses_solver_option_on_resnet(tmp_path):
    cfg = copy.deepcopy(BASE)
    cfg["experiments"]["disc"]["model_args"] = {"resnet20": {"adjoint": True}}
    out = _snakemake_n(tmp_path, yaml.safe_dump(cfg, sort_keys=False))
    msg = out.stdout + out.stderr
    assert out.returncode != 0
    assert "config key 'experiments.disc.model_args.resnet20.adjoint'" in msg, msg[-3000:]
    assert "solver options apply to continuous models only" in msg and re.search(r"\(line \d+\)", msg)
    assert not (out.project / "results").exists()


@pytest.mark.e2e
def test_config_values_are_never_evaluated_as_code(tmp_path):
    """A YAML tag that would run code in an unsafe loader, and Python source as values."""
    marker = tmp_path / "pwned"
    cfg = copy.deepcopy(BASE)
    cfg["experiments"]["disc"]["protocol"]["optimizer"] = f"__import__('os').system('touch {marker}')"
    text = yaml.safe_dump(cfg, sort_keys=False)
    text += f"plugins: !!python/object/apply:os.system ['touch {marker}']\n"
    out = _snakemake_n(tmp_path, text)
    assert out.returncode != 0
    assert not marker.exists()
    with pytest.raises(ConfigError, match="must be sgd, adam or adamw"):
        check_config(cfg)
    assert not marker.exists()
