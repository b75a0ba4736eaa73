"""RNODE follows the authors' code (cfinlay/ffjord-rnode: train.py, example-scripts/mnist.sh,
lib/layers/odefunc.py, lib/layers/wrappers/cnf_regularization.py)."""

import math
import pathlib

import pytest
import torch
import torch.nn as nn
import yaml

from debench.models.continuous.cnf import CNF
from debench.models.continuous.solver import SolverConfig
from debench.registry import create_model, model_info

pytestmark = pytest.mark.usefixtures("one_thread")


class Linear(nn.Module):
    """f(t, z) = a z: z(t) = z0 exp(a t), d f / d z = a I."""

    def __init__(self, a: float):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a))

    def forward(self, t, z):
        return self.a * z


def test_kinetic_energy_carries_the_half_and_jacobian_norm_does_not():
    """quadratic_cost = 0.5 * mean(f^2); sqjacnorm = mean((eps^T df/dz)^2) (Rademacher eps^2 = 1).

    For f = a z over [0, T]: int 0.5 a^2 mean(z0^2) e^{2at} dt = 0.25 a mean(z0^2) (e^{2aT} - 1),
    and int a^2 dt = a^2 T.
    """
    a, T = 0.5, 1.0
    cfg = SolverConfig(method="rk4", step_size=0.01, t1=T)
    z0 = torch.randn(16, 3)
    kinetic = 0.25 * a * z0.pow(2).mean(1) * (math.exp(2 * a * T) - 1)
    only_ke = CNF(Linear(a), cfg, divergence="hutchinson", noise="rademacher", kinetic_energy=1.0).train()
    only_ke(z0, torch.zeros(16))
    assert only_ke.reg.item() == pytest.approx(kinetic.mean().item(), rel=1e-4)
    only_jf = CNF(Linear(a), cfg, divergence="hutchinson", noise="rademacher", jacobian_norm=1.0).train()
    only_jf(z0, torch.zeros(16))
    assert only_jf.reg.item() == pytest.approx(a * a * T, rel=1e-4)


@pytest.mark.parametrize("name,kwargs", [
    ("rnode_toy", dict(hidden=[8, 8])),
    ("rnode_mnist", dict(hidden=[8], n_scales=1, n_blocks=1, adjoint=False)),
])
def test_rnode_fields_start_with_zero_last_weights(name, kwargs):
    model = create_model(name, **kwargs)
    fields = [m for m in model.modules() if type(m).__name__ in ("MLPField", "ConvField")]
    assert fields
    for field in fields:
        last = dict(field.layers[-1].named_parameters())
        assert all(p.abs().sum() == 0 for n, p in last.items() if n.endswith("weight"))
        assert any(p.abs().sum() > 0 for n, p in field.layers[0].named_parameters() if n.endswith("weight"))
    ffjord = create_model(name.replace("rnode", "ffjord"), **kwargs)
    f = next(m for m in ffjord.modules() if type(m).__name__ in ("MLPField", "ConvField"))
    assert any(p.abs().sum() > 0 for n, p in f.layers[-1].named_parameters() if n.endswith("weight"))


def test_rnode_mnist_defaults_are_mnist_sh():
    d = model_info("rnode_mnist").defaults
    assert (d["kinetic_energy"], d["jacobian_norm"], d["method"], d["step_size"]) == (0.01, 0.01, "rk4", 0.25)
    assert (d["alpha"], d["zero_last"], d["eval_method"], d["eval_rtol"]) == (1e-5, True, "dopri5", 1e-5)


def test_flows_mnist_protocol_warms_up_linearly_over_1000_iterations():
    config = yaml.safe_load((pathlib.Path(__file__).parents[1] / "config" / "config.yaml").read_text())
    protocol = config["experiments"]["flows_mnist"]["protocol"]
    assert protocol["warmup_iterations"] == 1000 and protocol.get("warmup_lr") is None
    assert (protocol["optimizer"], protocol["lr"], protocol["batch_size"]) == ("adam", 1.0e-3, 200)
