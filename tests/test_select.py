"""``only``: run a subset of a config's runs by patterns over run paths."""

from __future__ import annotations

import pytest

from debench.errors import ConfigError
from debench.select import patterns, run_path, select_runs

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
