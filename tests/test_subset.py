"""``only``: run a subset of a config's runs by patterns over run paths."""

from __future__ import annotations

import pytest

from debench.errors import ConfigError
from debench.subset import patterns, run_path, select_runs
from tests.conftest import ROOT

RUNS = [{"experiment": e, "dataset": d, "model": m, "seed": s}
        for e, d, m in (("resnet_he2016", "cifar10", "resnet20"), ("resnet_he2016", "cifar10", "resnet56"),
                        ("lm_resnet", "cifar100", "lm_resnet20"))
        for s in (0, 1, 2)]


def _paths(only):
    return [run_path(r) for r in select_runs(RUNS, only)]


def test_patterns_select_by_experiment_model_and_seed():
    assert _paths(None) == [run_path(r) for r in RUNS] and _paths([]) == _paths(None)
    assert _paths("resnet_he2016/*/resnet20/*") == [f"resnet_he2016/cifar10/resnet20/seed{s}" for s in range(3)]
    assert _paths("lm_resnet") == [f"lm_resnet/cifar100/lm_resnet20/seed{s}" for s in range(3)]  # leading parts
    assert _paths(["*/*/*/seed0"]) == ["resnet_he2016/cifar10/resnet20/seed0", "resnet_he2016/cifar10/resnet56/seed0",
                                      "lm_resnet/cifar100/lm_resnet20/seed0"]
    # a union, in the config's order, each run once
    assert _paths(["*/*/resnet56/seed1", "resnet_he2016/*/*/seed1"]) == [
        "resnet_he2016/cifar10/resnet20/seed1", "resnet_he2016/cifar10/resnet56/seed1"]


def test_a_pattern_matching_nothing_is_an_error_naming_the_closest_runs():
    with pytest.raises(ConfigError, match=r"'resnet_he2016/cifar10/resnet2/seed0' matches none.*closest run paths: "
                                          r"resnet_he2016/cifar10/resnet20/seed0"):
        select_runs(RUNS, "resnet_he2016/cifar10/resnet2/seed0")
    with pytest.raises(ConfigError, match="has 5 parts"):
        patterns("a/b/c/d/e")
    with pytest.raises(ConfigError, match=r"only\[1\]"):
        patterns(["resnet_he2016", 3])


def _readme_subset_commands() -> list[str]:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = text.split("### Run a subset", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.startswith(".venv/bin/snakemake")]


@pytest.mark.slow
def test_an_only_given_on_the_command_line_is_named_so_not_as_the_config_file(tmp_path):
    import yaml

    from debench.config import validate_config

    path = tmp_path / "config.yaml"
    path.write_text((ROOT / "config" / "smoke.yaml").read_text())
    config = yaml.safe_load(path.read_text())
    with pytest.raises(ConfigError) as err:  # as `snakemake --config only=nothing/here` merges it
        validate_config({**config, "only": "nothing/here"}, [str(path)])
    assert str(err.value).startswith("--config: config key 'only'"), err.value
    with pytest.raises(ConfigError) as err:  # the same key written in the file: its file and line
        path.write_text(path.read_text() + "only: nothing/here\n")
        validate_config(yaml.safe_load(path.read_text()), [str(path)])
    assert str(err.value).startswith(f"{path}: config key 'only' (line "), err.value


def test_the_readmes_subset_commands_select_what_they_say(tmp_path):
    """Each README command, as written, under -n on the survey config: its train jobs are exactly the runs it names."""
    import re
    import shlex
    import subprocess

    from tests.test_workflow import SNAKEMAKE, project_copy

    project = project_copy(tmp_path)
    cmds = _readme_subset_commands()
    assert len(cmds) == 3
    expected = [
        {"resnet_he2016/cifar10/resnet20/seed0"},
        {f"resnet_he2016/cifar10/resnet20/seed{s}" for s in (0, 1, 2)},
        None,  # checked below: all of lm_resnet, and seed 0 of every experiment
    ]
    for cmd, want in zip(cmds, expected):
        args = shlex.split(cmd)[1:]
        out = subprocess.run(SNAKEMAKE + args + ["-n"], cwd=project, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, (cmd, out.stderr[-2000:])
        log = out.stdout + out.stderr
        trained = set(re.findall(r"results/survey/runs/(\w+/\w+/\w+/seed\d+)/metrics\.json", log))
        if want is not None:
            assert trained == want, (cmd, sorted(trained))
        else:
            assert all(p.startswith("lm_resnet/") or p.endswith("/seed0") for p in trained)
            assert {p for p in trained if p.startswith("lm_resnet/")} >= {"lm_resnet/cifar10/lm_resnet20/seed1"}
            assert "resnet_he2016/cifar10/resnet56/seed0" in trained
            assert "resnet_he2016/cifar10/resnet56/seed1" not in trained
    bad = subprocess.run(SNAKEMAKE + ["-n", "--cores", "1", "--config", "only=resnet_he2016/*/resnet2"], cwd=project,
                         capture_output=True, text=True, timeout=300)
    err = [line for line in (bad.stdout + bad.stderr).splitlines() if "error" in line.lower()]
    assert bad.returncode != 0 and len(err) == 1 and "--config: config key 'only'" in err[0]  # not config.yaml
    assert "'resnet_he2016/*/resnet2/*' matches none" in err[0] and "closest run paths: resnet_he2016/" in err[0]


def test_no_debench_module_shadows_a_standard_library_module():
    """A process whose path holds src/debench (tests/test_gpu_slots.py runs gpu_slots.py so) must
    still import the standard library: a `debench/select.py` broke `import subprocess` there."""
    import sys
    from pathlib import Path

    pkg = Path(__file__).resolve().parents[1] / "src" / "debench"
    clashes = sorted(p.stem for p in pkg.glob("*.py") if p.stem in sys.stdlib_module_names)
    assert clashes == []
