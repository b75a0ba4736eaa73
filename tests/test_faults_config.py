"""Fault injection, bad input: every malformed config stops the run with a message naming the key.

Each case goes through the same two gates as the Snakefile: the JSON schema
(``workflow/schemas/config.schema.yaml`` via ``snakemake.utils.validate``), then
``debench.config.check_config`` with the YAML line locator. Two cases also go end to end through
``snakemake -n`` in a temporary project copy.
"""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from debench.config import check_config, yaml_locator
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


# (id, mutation, gate, message fragment, key path the message names, or None for schema errors)
CASES = [
    ("unknown top-level key", _top(epochz=3), "schema", "'epochz' was unexpected", None),
    ("unknown experiment key", _exp(modles=["resnet20"]), "schema", "'modles' was unexpected", None),
    ("seeds of the wrong type", _top(seeds="0,1"), "schema", "On instance['seeds']", None),
    ("negative seed", _top(seeds=[-1]), "schema", "On instance['seeds'][0]", None),
    ("mode typo", _exp(mode="papers"), "schema", "On instance['experiments']['disc']['mode']", None),
    ("zero tolerance", _top(report={"tolerances": {"test_error": 0}}), "schema",
     "On instance['report']['tolerances']['test_error']", None),
    ("negative tolerance", _top(report={"tolerances": {"test_error": -1.0}}), "schema",
     "On instance['report']['tolerances']['test_error']", None),
    ("tolerance of the wrong type", _top(report={"tolerances": {"test_error": "half"}}), "schema",
     "On instance['report']['tolerances']['test_error']", None),
    ("unknown data source", _top(data={"source": "s3"}), "schema", "On instance['data']['source']", None),
    ("unknown runtime device", _top(runtime={"device": "tpu"}), "schema", "On instance['runtime']['device']", None),
    ("preset escaping results/", _top(preset=".."), "schema", "On instance['preset']", None),
    ("experiment name with a path", lambda c: c["experiments"].update({"../../etc": c["experiments"]["disc"]}),
     "schema", "'../../etc' does not match", None),
    ("dataset name with a path", _exp(datasets=["../cifar10"]), "schema",
     "On instance['experiments']['disc']['datasets'][0]", None),
    ("model name with a path", _exp(models=["../resnet20"]), "schema",
     "On instance['experiments']['disc']['models'][0]", None),
    ("unknown model, closest names", _exp(models=["resnet21"]), "check",
     "unknown model 'resnet21'; closest registered: ", "experiments.disc.models"),
    ("unknown model pattern", _exp(models=["resnot*"]), "check", "unknown model 'resnot*'",
     "experiments.disc.models"),
    ("unknown dataset", _exp(datasets=["cifar11"]), "check", "unknown dataset 'cifar11'; did you mean cifar10",
     "experiments.disc.datasets"),
    ("epochs 0", _proto(epochs=0), "check", "must be > 0, got 0", "experiments.disc.protocol.epochs"),
    ("no budget", lambda c: c["experiments"]["disc"]["protocol"].pop("epochs"), "check",
     "set exactly one of 'epochs' and 'iterations'", "experiments.disc.protocol.epochs"),
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
     "must be > 0, got 0", "experiments.disc.protocol.lr"),
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
    from snakemake.utils import validate

    cfg, path = _write(tmp_path, lambda c: None)
    validate(cfg, schema=SCHEMA)
    check_config(cfg, locate=yaml_locator(str(path)))


@pytest.mark.parametrize("mutate,gate,fragment,key", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_config_names_the_key(tmp_path, mutate, gate, fragment, key):
    from snakemake.utils import validate

    cfg, path = _write(tmp_path, mutate)
    if gate == "schema":
        with pytest.raises(Exception) as err:
            validate(cfg, schema=SCHEMA)
        assert fragment in str(err.value), str(err.value)[:600]
        return
    if gate == "check":
        validate(cfg, schema=SCHEMA)  # the schema lets it through; the cross-field check must not
    with pytest.raises(ConfigError) as err:
        check_config(cfg, locate=yaml_locator(str(path)))
    msg = str(err.value)
    assert fragment in msg, msg
    assert msg.startswith(f"config key '{key}'"), msg
    line = re.search(r"\(line (\d+)\)", msg)
    assert line, msg
    text = path.read_text().splitlines()[int(line.group(1)) - 1]
    last = key.split(".")[-1]
    assert last in text or (last in ("epochs",) and "protocol" in text), (msg, text)


def test_every_shipped_config_passes_both_gates():
    from snakemake.utils import validate

    for name in ("config.yaml", "smoke.yaml"):
        path = ROOT / "config" / name
        cfg = yaml.safe_load(path.read_text())
        validate(cfg, schema=SCHEMA)
        check_config(cfg, locate=yaml_locator(str(path)))


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
