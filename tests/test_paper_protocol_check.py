"""A comparable preset's paper-mode runs are held to the survey protocol (config/config.yaml).

Before this check a copy of the CPU campaign's preset with `iterations: 40` trained, was merged
and stood in the report's discrete table beside He et al.'s 8.75% with a verdict, as if it had
followed the paper. Now the config is refused, naming the key; `comparable: false` runs it as a
variant."""

from __future__ import annotations

import re

import pytest
import yaml

from debench.config import BOOKKEEPING_KEYS, load_config, protocol_for
from debench.errors import ConfigError
from tests.conftest import ROOT

CAMPAIGN = ROOT / "config" / "cpu_campaign.yaml"


def campaign_copy(tmp_path, edit=lambda text: text):
    path = tmp_path / "campaign.yaml"
    path.write_text(edit(CAMPAIGN.read_text()))
    return path


def test_the_campaign_preset_trains_as_the_survey_protocol():
    config = load_config(CAMPAIGN)  # no error
    survey = load_config(ROOT / "config" / "config.yaml")
    ours, theirs = (protocol_for(c, "resnet_he2016", "resnet20") for c in (config, survey))
    # what may differ is bookkeeping only, and the campaign does differ there
    differ = {k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k)}
    assert differ and differ <= BOOKKEEPING_KEYS | {"select_by"}  # select_by: "last" is the default


def test_a_shortened_copy_is_refused_naming_the_key(tmp_path):
    path = campaign_copy(tmp_path, lambda t: t.replace("iterations: 64000", "iterations: 40"))
    line = next(i for i, s in enumerate(path.read_text().splitlines(), 1) if "iterations: 40" in s)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert f"config key 'experiments.resnet_he2016.protocol.iterations' (line {line})" in msg
    assert "iterations = 40, the survey protocol with 64000" in msg
    assert "comparable: false" in msg


def test_a_changed_default_is_located_in_defaults(tmp_path):
    path = campaign_copy(tmp_path, lambda t: t.replace("    eval_every: 1", "    eval_every: 1\n    label_smoothing: 0.1"))
    with pytest.raises(ConfigError, match=re.escape("'defaults.protocol.label_smoothing'")):
        load_config(path)


def momentum_preset(tmp_path, model_args: str):
    """A comparable preset holding the survey's momentum_resnet_cifar experiment with its protocol."""
    survey = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    exp = survey["experiments"]["momentum_resnet_cifar"]
    exp.update(models=["momentum_resnet20"], datasets=["cifar10"], model_args=yaml.safe_load(model_args))
    config = {"preset": "mom", "comparable": True, "seeds": [0], "data": {"source": "synthetic"},
              "experiments": {"momentum_resnet_cifar": exp}}
    path = tmp_path / "mom.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_a_different_network_is_refused(tmp_path):
    path = momentum_preset(tmp_path, "{momentum_resnet20: {invertible: true, gamma: 0.5}}")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert "config key 'experiments.momentum_resnet_cifar.model_args.momentum_resnet20'" in msg
    assert "a different network from the paper's" in msg and "'gamma': 0.5" in msg


def test_model_args_are_compared_as_the_factory_runs_them(tmp_path):
    # the survey writes {invertible: true}; the same arguments with the default gamma spelled out
    # build the same network
    load_config(momentum_preset(tmp_path, "{momentum_resnet20: {invertible: true, gamma: 0.9}}"))
    # and leaving invertible at the factory's default (false) does not
    with pytest.raises(ConfigError, match="a different network"):
        load_config(momentum_preset(tmp_path, "{}"))


def test_the_same_edit_runs_as_a_variant(tmp_path):
    path = campaign_copy(tmp_path, lambda t: t.replace("iterations: 64000", "iterations: 40")
                         .replace("comparable: true", "comparable: false"))
    config = load_config(path)
    assert protocol_for(config, "resnet_he2016", "resnet20")["iterations"] == 40


def test_bookkeeping_and_other_experiments_are_free(tmp_path):
    def edit(text):
        config = yaml.safe_load(text)
        config["defaults"]["protocol"].update(eval_batch_size=500, checkpoint_every=3, eval_every=2)
        config["experiments"]["my_resnet"] = dict(config["experiments"]["resnet_he2016"],
                                                  protocol={"iterations": 40, "batch_size": 64})
        return yaml.safe_dump(config)

    config = load_config(campaign_copy(tmp_path, edit))
    assert protocol_for(config, "my_resnet", "resnet20")["iterations"] == 40
