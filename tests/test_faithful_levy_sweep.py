"""The Lévy and jump sweeps hold everything but the noise at the Neural SDE's settings (issue 27, point 4).

``levy_sde_cifar_a2`` (alpha = 2, no jumps) must be ``neural_sde_cifar`` itself: sigma 0.5,
multiplicative noise, 11 Euler-Maruyama steps of 1/11 with the drift at k / 11 (the authors'
``sdeint_euler`` at dt = 0.1, xuanqing94/NeuralSDE@0036314), one evaluation path. The alpha sweep
(``levy_sde_cifar_a15``) and the jump sweep (``jump_sde_cifar``) differ from it in alpha or the
jump rate only.
"""

import pytest
import torch

from debench.registry import create_model, merged_model_args, model_info

pytestmark = pytest.mark.usefixtures("one_thread")

SWEEP = ("levy_sde_cifar_a15", "levy_sde_cifar_a2", "jump_sde_cifar")


def shared_settings(name: str) -> dict:
    args = merged_model_args(name, {})
    return {"sigma": args["sigma"], "width": args["width"], "eval_samples": args["eval_samples"],
            "drift_depth": args["drift_depth"], "perturb_sigmas": args["perturb_sigmas"]}


def test_sweep_settings_are_the_neural_sdes():
    base = merged_model_args("neural_sde_cifar", {})
    assert base["noise"] == "multiplicative" and base["method"] == "euler"
    steps = int(1 / base["dt"]) + 1  # the authors' n = int(t / h) + 1
    for name in SWEEP:
        args = merged_model_args(name, {})
        assert shared_settings(name) == shared_settings("neural_sde_cifar"), name
        assert args["steps"] == steps == 11 and args["t1"] == 1.0, name
        assert model_info(name).precision == model_info("neural_sde_cifar").precision == "fp32"
    varied = {name: {k: v for k, v in merged_model_args(name, {}).items()
                     if merged_model_args("levy_sde_cifar_a2", {}).get(k) != v} for name in SWEEP}
    assert varied == {"levy_sde_cifar_a15": {"alpha": 1.5}, "levy_sde_cifar_a2": {}, "jump_sde_cifar": {"jump_rate": 1.0}}


def copy_weights(src: torch.nn.Module, dst: torch.nn.Module) -> None:
    a, b = list(src.parameters()), list(dst.parameters())
    assert [p.shape for p in a] == [p.shape for p in b]
    with torch.no_grad():
        for p, q in zip(a, b):
            q.copy_(p)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_alpha_2_model_is_the_neural_sde_draw_for_draw(mode):
    """Same weights and seed: the alpha = 2 Lévy model and the Neural SDE give the same logits.
    The old Lévy settings (sigma 0.1, 10 steps, 10 evaluation paths) fail this."""
    torch.manual_seed(0)
    ref = create_model("neural_sde_cifar", width=8)
    levy = create_model("levy_sde_cifar_a2", width=8)
    copy_weights(ref, levy)
    getattr(ref, mode)(), getattr(levy, mode)()
    x = torch.randn(3, 3, 10, 10)
    torch.manual_seed(1)
    want = ref(x)
    torch.manual_seed(1)
    got = levy(x)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)
    for wrong in ({"sigma": 0.1}, {"steps": 10}):
        old = create_model("levy_sde_cifar_a2", width=8, **wrong)
        copy_weights(ref, old)
        getattr(old, mode)()
        torch.manual_seed(1)
        assert not torch.allclose(old(x), want, rtol=1e-4, atol=1e-5), wrong
