"""The Neural SDE classifier follows the authors' SdeClassifier (xuanqing94/NeuralSDE @ 0036314)."""

import math

import pytest
import torch

from debench.registry import create_model, model_info
from debench.models.stochastic.neural_sde import ConvDrift, ConvSDE, euler_maruyama
from debench.train.measure import count_parameters

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name,in_channels,params", [
    ("neural_sde_cifar", 3, 115_594), ("neural_sde_cifar_ode", 3, 115_594), ("neural_sde_mnist", 1, 114_442)])
def test_parameter_count_is_the_authors_sde_classifier(name, in_channels, params):
    """models/sde_model.py, SdeClassifier (no published count; the authors' layout by hand):
    stem Conv2d(in, 64, 3) unpadded: 9 * in * 64 + 64 = 1,792 (CIFAR) / 640 (MNIST);
    drift SDEfunc: 3 ConcatConv2d(64, 64) = 3 * (9 * 65 * 64 + 64) = 112,512, 4 GroupNorm(32, 64)
    = 512, so 113,024; head GroupNorm 128 + Linear(64, 10) 650 = 778.
    CIFAR 1,792 + 113,024 + 778 = 115,594; MNIST 640 + 113,024 + 778 = 114,442.
    The old layout (two stride-2 convs to 128 channels, 2-conv drift) had 464,906 on CIFAR.
    """
    assert count_parameters(create_model(name, in_channels=in_channels)) == params


def test_state_is_64_channels_on_the_unpadded_30x30_grid_with_a_3_conv_drift():
    model = create_model("neural_sde_cifar")
    assert model.stem(torch.zeros(1, 3, 32, 32)).shape == (1, 64, 30, 30)
    assert len(model.sde.drift.convs) == 3
    assert model_info("neural_sde_cifar").defaults["noise"] == "multiplicative"
    assert model_info("neural_sde_cifar").defaults["sigma"] == 0.5


def test_diffusions_are_the_authors_noise_types():
    torch.manual_seed(0)
    drift = ConvDrift(4, depth=1)
    y = torch.randn(2, 4 * 3 * 3)
    mult = ConvSDE(drift, (4, 3, 3), "multiplicative", 0.3)
    assert torch.allclose(mult.g(0.0, y), 0.3 * y)
    assert torch.allclose(ConvSDE(drift, (4, 3, 3), "additive", 0.3).g(0.0, y), torch.full_like(y, 0.3))
    f, g = ConvSDE(drift, (4, 3, 3), "dropout", 0.3).f_and_g(0.0, y)
    assert torch.allclose(g, 0.3 * f)
    with pytest.raises(ValueError, match="'sigma'"):
        ConvSDE(drift, (4, 3, 3), "additive", -0.1)


def test_euler_maruyama_is_the_authors_step_rule():
    """sdeint_euler (xuanqing94/NeuralSDE@0036314 sdeint/euler.py): n = int(1 / 0.1) + 1 = 11 steps
    of h = 1/11, drift time tt advanced by ``tt += h_real`` (k / 11), noise z * sqrt(h)."""
    torch.manual_seed(0)
    sde = ConvSDE(ConvDrift(4, depth=1), (4, 2, 2), "multiplicative", 0.2)
    y0 = torch.randn(3, 16)
    torch.manual_seed(1)
    got = euler_maruyama(sde, y0, 0.1)
    assert sde.nfe_drift.total == 11
    torch.manual_seed(1)
    y, h = y0, 1 / 11
    for k in range(11):
        y = y + h * sde.drift(k * h, y.view(-1, 4, 2, 2)).flatten(1) + 0.2 * y * torch.randn_like(y) * math.sqrt(h)
    assert torch.allclose(got, y, atol=1e-6)


class TimeLog(torch.nn.Module):
    """A drift that records the times it is called at (and returns a time-dependent field)."""

    def __init__(self):
        super().__init__()
        self.times = []

    def forward(self, t, h):
        self.times.append(float(t))
        return -h * (1.0 + float(t))


@pytest.mark.parametrize("sigma", [0.0, 0.5])
def test_drift_sees_the_authors_time_grid_k_over_11(sigma):
    """The authors advance ``tt += h_real``: times 0, 1/11, ..., 10/11. The first commit's
    ``tt += h`` grid (0, 0.1, ..., 1.0) is wrong and fails here."""
    drift = TimeLog()
    euler_maruyama(ConvSDE(drift, (1, 1, 1), "multiplicative", sigma), torch.ones(2, 1), 0.1)
    assert drift.times == pytest.approx([k / 11 for k in range(11)], abs=1e-12)
    assert drift.times[-1] < 1.0 - 0.05  # the first commit's grid ends at 1.0


def test_evaluation_draws_one_path_like_the_authors_test_one_epoch():
    """test_one_epoch (sde_classifier.py @ 0036314) calls the model once per batch under eval():
    one noise path. The ensemble is an option (eval_samples > 1), off in every registered model."""
    for name in ("neural_sde_cifar", "neural_sde_cifar_dropout", "neural_sde_mnist"):
        assert model_info(name).defaults["eval_samples"] == 1
    torch.manual_seed(0)
    model = create_model("neural_sde_cifar", width=8).eval()
    x = torch.randn(2, 3, 8, 8)
    model(x)
    one = model.debench_stats()["nfe_forward"]
    assert one == 11  # one path of 11 drift evaluations, not 10 paths (110)
    model.eval_samples = 3
    model(x)
    assert model.debench_stats()["nfe_forward"] == 33
