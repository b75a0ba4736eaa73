"""He et al. 2016, Section 4.2 (CIFAR-10), pinned: the protocol of the ResNet-20 campaign.

Each constant below is read from the paper's text ("Deep Residual Learning for Image
Recognition", arXiv 1512.03385v1, Section 4.2) or, where the paper says nothing, from the
community reference akamaster/pytorch_resnet_cifar10 (``trainer.py``, ``resnets.py``); the choices
the paper leaves open are listed in docs/measurements/cpu_campaign.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from debench.data.device import DeviceData, augment
from debench.registry import create_model
from debench.train.build import make_optimizer
from debench.train.protocol import Protocol, lr_at
from tests.conftest import ROOT

# Section 4.2: "We use a weight decay of 0.0001 and momentum of 0.9 [...] These models are
# trained with a mini-batch size of 128 [...] We start with a learning rate of 0.1, divide it by
# 10 at 32k and 48k iterations, and terminate training at 64k iterations [...] 4 pixels are padded
# on each side, and a 32x32 crop is randomly sampled from the padded image or its horizontal flip.
# [...] the per-pixel mean subtracted."
PAPER = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "batch_size": 128,
         "iterations": 64000, "milestones": [32000, 48000], "gamma": 0.1, "crop_padding": 4, "flip": True,
         "input_norm": "pixel_mean"}


def _experiment(path: str) -> dict:
    cfg = yaml.safe_load((ROOT / path).read_text())
    return cfg["experiments"]["resnet_he2016"]


@pytest.mark.parametrize("path", ["config/cpu_campaign.yaml", "config/config.yaml"])
def test_campaign_and_survey_configs_state_the_papers_protocol(path):
    exp = _experiment(path)
    assert exp["datasets"] == ["cifar10"] and "resnet20" in exp["models"]
    proto = exp["protocol"]
    assert {k: proto[k] for k in PAPER} == PAPER
    # the whole 50k train split is trained on (the 45k/5k split only chose the schedule) and
    # the error after the last iteration is reported: no validation split, no model selection
    assert proto.get("val_fraction", 0.0) == 0.0
    assert proto.get("select_by", "last") == "last"
    assert proto.get("nesterov", False) is False and proto.get("warmup_iterations", 0) == 0


def test_campaign_runs_fp32_on_the_cpu_with_three_seeds():
    cfg = yaml.safe_load((ROOT / "config/cpu_campaign.yaml").read_text())
    assert cfg["seeds"] == [0, 1, 2] and cfg["comparable"] is True
    assert cfg["runtime"]["device"] == "cpu" and cfg["runtime"]["amp"] == "off"
    assert cfg["data"]["source"] == "npz"


def test_learning_rate_is_divided_by_ten_at_32k_and_48k_iterations():
    p = Protocol.from_dict(PAPER)
    spe = 391  # ceil(50000 / 128)
    expected = {0: 0.1, 31999: 0.1, 32000: 0.01, 47999: 0.01, 48000: 0.001, 63999: 0.001}
    for step, lr in expected.items():
        assert lr_at(p, step, spe, 64000) == pytest.approx(lr, rel=1e-12), step


def test_64k_iterations_are_164_epochs_of_the_full_train_split():
    p = Protocol.from_dict(PAPER)
    steps_per_epoch = -(-50000 // p.batch_size)
    assert steps_per_epoch == 391
    assert -(-p.iterations // steps_per_epoch) == 164  # the last epoch stops after 267 of its steps
    assert p.iterations - 163 * steps_per_epoch == 267


def test_crop_is_a_window_of_the_4_pixel_zero_padded_image_or_its_flip():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(1, 256, size=(400, 32, 32, 3), dtype=np.uint8))  # no zero pixel
    out = augment(x, torch.Generator().manual_seed(1), padding=4, flip=True).numpy()
    padded = np.pad(x.numpy(), ((0, 0), (4, 4), (4, 4), (0, 0)))
    offsets, flips = set(), 0
    for i in range(len(x)):
        found = [(dy, dx, f) for dy in range(9) for dx in range(9) for f in (False, True)
                 if np.array_equal(out[i], (padded[i, dy:dy + 32, dx:dx + 32][:, ::-1] if f else
                                            padded[i, dy:dy + 32, dx:dx + 32]))]
        assert found, f"image {i} is no 32x32 window of the padded image or of its flip"
        offsets.add(found[0][:2])
        flips += found[0][2]
    assert len(offsets) >= 75  # the 81 offsets of [-4, 4]^2 are all reachable
    assert 150 <= flips <= 250  # horizontal flip with probability 1/2


def test_per_pixel_mean_is_the_mean_image_of_the_train_split():
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8),
              "y_train": rng.integers(0, 10, 64).astype(np.int64),
              "x_test": rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8),
              "y_test": rng.integers(0, 10, 8).astype(np.int64)}
    meta = {"kind": "image", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    data = DeviceData(arrays, meta, torch.device("cpu"), norm="pixel_mean")
    got = data.to_model_input(torch.from_numpy(arrays["x_test"])).numpy()
    mean_image = arrays["x_train"].astype(np.float64).mean(0) / 255.0  # H, W, C
    want = (arrays["x_test"] / 255.0 - mean_image).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, want, atol=1e-6)
    # no division: a pixel one grey level above the mean image sits at +1/255
    assert np.ptp(mean_image) > 0  # a per-pixel mean, not one value per channel


def test_channel_normalisation_stays_the_default():
    assert Protocol().input_norm == "channel"
    with pytest.raises(Exception, match="input_norm"):
        Protocol.from_dict({**PAPER, "input_norm": "per_pixel"})


def test_weight_decay_applies_to_every_parameter_batchnorm_included():
    # He et al. train with fb.resnet.torch's optimState (weightDecay on all parameters);
    # akamaster's trainer.py: torch.optim.SGD(model.parameters(), ..., weight_decay=1e-4)
    model = create_model("resnet20")
    opt = make_optimizer(model, Protocol.from_dict(PAPER), torch.device("cpu"))
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] == 1e-4 for p in g["params"]}
    bn = [p for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters()]
    assert bn and all(id(p) in decayed for p in bn)
    assert len(decayed) == len(list(model.parameters()))


def test_resnet20_is_option_a_with_0_27m_parameters():
    # Table 6: ResNet-20, 0.27M parameters; option A shortcuts (zero-padded identity) have none.
    # Convolutions 267,696 (3*16*9 + 6*16*16*9 + 16*32*9 + 5*32*32*9 + 32*64*9 + 5*64*64*9),
    # BatchNorm affine 2*(7*16 + 6*32 + 6*64) = 1,376, classifier 64*10 + 10 = 650.
    model = create_model("resnet20")
    n = sum(p.numel() for p in model.parameters())
    assert n == 267_696 + 1_376 + 650 == 269_722
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 19  # 1 + 3 stages x 3 blocks x 2: no 1x1 projection shortcut
    assert all(m.kernel_size == (3, 3) for m in convs)


def test_the_campaign_script_pins_the_code_it_runs():
    script = (ROOT / "scripts/cpu_campaign.sh").read_text()
    assert "git worktree add --detach" in script and "PYTHONPATH=\"$tree/src" in script
    assert "--rerun-incomplete" in script and "nice -n" in script
    assert Path(ROOT / "config/cpu_campaign.yaml").exists()


def test_the_lm_resnet_preset_trains_lm_resnet20_exactly_as_the_resnet20_campaign():
    """The relative claim (LM-ResNet-20 against ResNet-20) is read from runs trained alike: the LM
    preset differs from the ResNet preset only in its name, its experiment's name and its model."""
    base = yaml.safe_load((ROOT / "config/cpu_campaign.yaml").read_text())
    lm = yaml.safe_load((ROOT / "config/cpu_campaign_lm.yaml").read_text())
    assert (base.pop("preset"), lm.pop("preset")) == ("cpu_campaign", "cpu_campaign_lm")
    exp_base, exp_lm = base.pop("experiments")["resnet_he2016"], lm.pop("experiments")["lm_resnet_he2016"]
    assert (exp_base.pop("models"), exp_lm.pop("models")) == (["resnet20"], ["lm_resnet20"])
    assert lm == base and exp_lm == exp_base
    from debench.registry import model_meta

    assert model_meta("lm_resnet20")["baseline"] == "resnet20"  # the report's "Against the baseline" pair


def test_the_campaign_script_and_make_target_take_the_preset():
    script = (ROOT / "scripts/cpu_campaign.sh").read_text()
    assert 'preset=${CAMPAIGN_PRESET:-cpu_campaign}' in script and '--configfile "$tree/config/$preset.yaml"' in script
    make = (ROOT / "Makefile").read_text()
    assert "CAMPAIGN ?= cpu_campaign" in make and "CAMPAIGN_PRESET=$(CAMPAIGN)" in make
