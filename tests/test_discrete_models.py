"""Registry-wide checks of the discrete family and parameter counts against their sources."""

import pytest
import torch

from debench.registry import create_model, list_models, model_info
from debench.train.measure import count_parameters

# the discrete package's own models (the MNIST MLP baselines are tested in tests/test_measurement.py)
OWN = [n for n in list_models(family="discrete") if model_info(n).module.startswith("debench.models.discrete")] \
    + list_models("lm_resnet*_sd")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", OWN)
def test_forward_backward_shape_no_nan(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, in_channels=3)
    out = model(torch.randn(2, 3, 16, 16))  # 16x16 keeps the loop fast; every model is size-agnostic
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    out.logsumexp(1).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    dropped = name.startswith("fractalnet") or name.endswith("_sd")  # drop-path / stochastic depth
    assert all(torch.isfinite(g).all() for g in grads if g is not None)
    assert dropped or all(g is not None for g in grads)
    info = model_info(name)
    assert info.paper and info.scheme and info.evals_per_forward > 0


def test_grayscale_input():
    assert create_model("lm_resnet20", in_channels=1)(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_lm_resnet_is_resnet_plus_one_k_per_block_but_the_first(depth):
    blocks = 3 * ((depth - 2) // 6)
    resnet = count_parameters(create_model(f"resnet{depth}"))
    assert count_parameters(create_model(f"lm_resnet{depth}")) == resnet + blocks - 1
    for k in [p for n, p in create_model(f"lm_resnet{depth}").named_parameters() if n.endswith(".k")]:
        assert -0.1 <= k.item() <= 0.0


@pytest.mark.parametrize("name", ["momentum_resnet20", "momentum_resnet110", "rk2_resnet56", "rk4_resnet20",
                                  "polynet_resnet56"])
def test_same_parameters_as_resnet(name):
    depth = int("".join(c for c in name.split("_")[-1] if c.isdigit()))
    assert count_parameters(create_model(name)) == count_parameters(create_model(f"resnet{depth}"))


def test_momentum_resnet18_is_cifar_resnet18():
    # 3x3 stem to 64, [2, 2, 2, 2] basic blocks at 64-512, 1x1 projections: 11,173,962 weights
    assert count_parameters(create_model("momentum_resnet18")) == 11_173_962


@pytest.mark.parametrize("name,classes,published", [
    ("parabolic_cnn", 10, 502_570), ("hamiltonian_cnn", 10, 264_106), ("second_order_cnn", 10, 502_570),
    ("parabolic_cnn", 100, 652_484), ("hamiltonian_cnn", 100, 362_180), ("second_order_cnn", 100, 652_484),
])
def test_pde_cnn_counts_equal_ruthotto_haber_table1(name, classes, published):
    assert count_parameters(create_model(name, num_classes=classes)) == published


def revnet_params(units, filters, bottleneck, classes=10):
    """Weights implied by revnet-public's cifar_configs.py (convs without bias, BN scale+shift)."""
    def fn(ci, co, preact):
        if bottleneck:
            m = co // 4
            return (2 * ci if preact else 0) + ci * m + 2 * m + 9 * m * m + 2 * m + m * co
        return (2 * ci if preact else 0) + 9 * ci * co + 2 * co + 9 * co * co

    total = 27 * filters[0] + 2 * filters[0]
    cin = filters[0]
    for s, (n, cout) in enumerate(zip(units, filters[1:])):
        for j in range(n):
            ci = (cin if j == 0 else cout) // 2
            total += fn(ci, cout // 2, preact=s > 0 or j > 0) + fn(cout // 2, cout // 2, True)
            if bottleneck and j == 0:
                total += 2 * ci * (cout // 2)
        cin = cout
    return total + 2 * cin + cin * classes + classes


@pytest.mark.parametrize("depth,units,filters,bottleneck", [
    (38, (3, 3, 3), (32, 32, 64, 112), False),
    (110, (9, 9, 9), (32, 32, 64, 128), False),
    (164, (9, 9, 9), (32, 128, 256, 512), True),
])
def test_revnet_counts_follow_official_config(depth, units, filters, bottleneck):
    expected = revnet_params(units, filters, bottleneck)
    got = count_parameters(create_model(f"revnet{depth}"))
    print(f"revnet{depth}: {got:,d} parameters")
    assert got == expected


@pytest.mark.parametrize("kind", ["hamiltonian", "midpoint", "leapfrog"])
def test_chang_counts(kind):
    # the authors' layout; derived by hand in tests/test_faithful_chang.py
    from tests.test_faithful_chang import authors_count

    for depth in (38, 74, 110):
        assert count_parameters(create_model(f"{kind}{depth}")) == authors_count(kind, depth)


def test_reference_selectors_match_published_rows():
    import csv
    import pathlib

    table = pathlib.Path(__file__).resolve().parents[1] / "config" / "reference" / "published_results.csv"
    rows = list(csv.DictReader(table.open()))
    selectors = [(n, s) for n in OWN for s in model_info(n).reference]
    assert selectors
    for name, sel in selectors:
        assert any(all(r[k] == v for k, v in sel.items()) for r in rows), (name, sel)
