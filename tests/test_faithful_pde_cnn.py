"""PDE-CNNs carry the training terms of Ruthotto & Haber's Meganet scripts.

XtractOpen/Meganet.m, examples/2018-jmiv/runCIFAR10.m: alpha = [2e-4; 2e-4; 2e-4] (weight decay
of the classifier, of the kernels, smoothness in time), opt.P = clamp to [-1, 1], and
augmentation randomCrop(..., 4), which pads by 4/2 = 2 pixels (augmentation/randomCrop.m).
"""

import pathlib

import pytest
import torch
import yaml

from debench.registry import create_model, model_info
from debench.train.measure import count_parameters

pytestmark = pytest.mark.usefixtures("one_thread")
KINDS = ["parabolic_cnn", "hamiltonian_cnn", "second_order_cnn"]
SMALL = dict(widths=[4, 8, 8, 8])


@pytest.mark.parametrize("name", KINDS)
def test_defaults_are_the_authors_alphas_and_box(name):
    defaults = model_info(name).defaults
    assert (defaults["weight_decay"], defaults["smoothness"], defaults["box"]) == (2e-4, 2e-4, 1.0)


@pytest.mark.parametrize("name,published", [("parabolic_cnn", 502_570), ("hamiltonian_cnn", 264_106)])
def test_counts_still_equal_table1(name, published):
    """Ruthotto & Haber, Table 1 (CIFAR-10): the penalty and constraint add no parameters."""
    assert count_parameters(create_model(name)) == published


@pytest.mark.parametrize("name", KINDS)
def test_regularization_loss_is_meganets_tikhonov_plus_smoothed_l1_in_time(name):
    torch.manual_seed(0)
    model = create_model(name, **SMALL)
    got = model.regularization_loss()
    per_step = 2 if name.startswith("hamiltonian") else 1
    kernels = [model.opening[0].weight, model.head.weight, model.head.bias]
    smooth = torch.zeros(())
    for m in model.units:
        if isinstance(m, torch.nn.Conv2d):
            kernels.append(m.weight)
        if hasattr(m, "layers"):
            kernels += [layer.weight for layer in m.layers]
            steps = [torch.cat([torch.cat([layer.weight.flatten(), layer.norm.weight, layer.norm.bias])
                                for layer in m.layers[j:j + per_step]]) for j in range(0, len(m.layers), per_step)]
            smooth = smooth + sum(torch.sqrt((b - a) ** 2 + 1e-3).sum() for a, b in zip(steps, steps[1:]))
    expected = 0.5 * 2e-4 * sum(k.pow(2).sum() for k in kernels) + 2e-4 * smooth
    assert torch.allclose(got, expected, rtol=1e-5)
    got.backward()
    assert model.units[0].layers[0].weight.grad.abs().sum() > 0


def test_penalties_switch_off_and_reject_negative_weights():
    model = create_model("parabolic_cnn", weight_decay=0.0, smoothness=0.0, **SMALL)
    assert model.regularization_loss().item() == 0.0
    with pytest.raises(ValueError, match="'smoothness'"):
        create_model("parabolic_cnn", smoothness=-1.0)
    with pytest.raises(ValueError, match="'box'"):
        create_model("parabolic_cnn", box=0.0)


@pytest.mark.parametrize("name", KINDS)
def test_box_constraint_projects_every_parameter_onto_minus_one_one(name):
    model = create_model(name, **SMALL)
    with torch.no_grad():
        model.units[0].layers[0].weight.fill_(3.0)
        model.head.bias.fill_(-2.0)
    model.eval()(torch.randn(1, 3, 16, 16))
    assert all(p.abs().max() <= 1.0 for p in model.parameters())
    free = create_model(name, box=None, **SMALL)
    with torch.no_grad():
        free.head.bias.fill_(-2.0)
    free(torch.randn(1, 3, 16, 16))
    assert free.head.bias.min() == -2.0


def test_config_pde_cnn_protocol_pads_by_two_and_leaves_decay_to_the_model():
    config = yaml.safe_load((pathlib.Path(__file__).parents[1] / "config" / "config.yaml").read_text())
    for name in ("pde_cnn_cifar10", "pde_cnn_cifar100"):
        protocol = config["experiments"][name]["protocol"]
        # weight decay lives in the model's masked Tikhonov term; the trainer's would decay norms too
        assert protocol["crop_padding"] == 2 and protocol["weight_decay"] == 0.0
        args = config["experiments"][name].get("model_args", {})
        assert all(a.get("box", 1.0) == 1.0 and a.get("smoothness", 2e-4) == 2e-4 for a in args.values())


def test_tv_norm_is_meganets_tvnormlayer():
    """Meganet@4f9fdbc layers/tvNormLayer.m: ``Y./sqrt(sum(Y.^2,3)+eps)``, eps 1e-4, then scale and
    shift. A pixel with features (3, 4) becomes (3, 4) / sqrt(25 + 1e-4); a centred, averaged norm
    gives about (-1, 1) instead. Features (1e-2, 0): 1e-2 / sqrt(1e-4 + 1e-4) = 0.70711 (eps 1e-3
    would give 0.30151)."""
    from debench.models.discrete.layers import TVNorm

    norm = TVNorm(2)
    x = torch.tensor([[3.0, 4.0], [1e-2, 0.0]]).T.reshape(1, 2, 1, 2)  # two pixels, two channels
    y = norm(x)
    assert torch.allclose(y[0, :, 0, 0], torch.tensor([3.0, 4.0]) / (25 + 1e-4) ** 0.5)
    assert y[0, 0, 0, 1].item() == pytest.approx(1e-2 / (2e-4) ** 0.5, rel=1e-5)
    assert y[0, 0, 0, 1].item() == pytest.approx(0.70711, abs=1e-5)
    with torch.no_grad():
        norm.weight.fill_(2.0), norm.bias.fill_(0.5)
    assert torch.allclose(norm(x), 2.0 * y + 0.5)
    norms = [m for m in create_model("parabolic_cnn").modules() if isinstance(m, TVNorm)]
    assert len(norms) == 9 and all(n.eps == 1e-4 for n in norms)  # 3 blocks x 3 steps
