"""Under ``amp: auto`` the SDE families train in fp32, as their authors' code does (issue 27, point 3).

Sources (none uses mixed precision): Neural SDE, xuanqing94/NeuralSDE@0036314 ``sde_classifier.py``;
latent SDE, google-research/torchsde@44ed410 ``examples/latent_sde_lorenz.py``; score SDEs,
yang-song/score_sde_pytorch@cb1f359 (no autocast/GradScaler); DDPM, hojonathanho/diffusion@1e0dceb
``scripts/run_cifar.py`` (asserts float32, no bfloat16). The Lévy/jump models are the Neural SDE's
sweeps and share its precision. The registry pins ``precision="fp32"`` with that source; the run
record's ``precision`` block must name it.
"""

import pytest

from debench.plan import training_loop
from debench.registry import list_models, model_info, model_meta, register_model
from debench.train.protocol import Protocol
from debench.train.record import record_head
from debench.train.runtime import continuous_depth, resolve_precision

SDE_MODELS = ["latent_sde", "neural_sde_cifar", "neural_sde_cifar_dropout", "neural_sde_cifar_ode",
              "neural_sde_mnist", "levy_sde_cifar_a15", "levy_sde_cifar_a2", "jump_sde_cifar",
              "score_sde_ve_cifar", "score_sde_vp_cifar", "score_sde_subvp_cifar", "score_sde_toy", "ddpm_cifar"]
SOURCES = {"latent_sde": "torchsde", "neural_sde": "NeuralSDE", "levy": "NeuralSDE", "jump": "NeuralSDE",
           "score_sde": "score_sde_pytorch", "ddpm": "hojonathanho/diffusion"}


def cuda_head(name: str) -> dict:
    """The record head a run of ``name`` would write on a GPU under ``amp: auto``."""
    info = model_info(name)
    precision = resolve_precision("auto", "cuda", continuous_depth(info), info.task == "classify")
    runtime = {"device": "cuda", "device_type": "cuda", "threads": 1, "channels_last": True,
               "amp": "bf16" if precision["train"] == "bf16" else "off", "compile": False, "precision": precision}
    spec = {"experiment": "e", "model": name, "dataset": "cifar10", "seed": 0, "data_source": "npz"}
    return record_head(spec, info, Protocol.from_dict({"epochs": 1}).as_dict(), {}, model_meta(name), runtime,
                       {"sha256": "abc"})


def test_every_sde_model_is_listed():
    sde = {n for n in list_models(family="stochastic")
           if any(k in n for k in ("sde", "ddpm"))}
    assert sde == set(SDE_MODELS)


@pytest.mark.parametrize("name", SDE_MODELS)
def test_record_names_fp32_for_sde_models_under_auto_on_cuda(name):
    head = cuda_head(name)
    assert head["precision"]["train"] == head["precision"]["nfe"] == head["precision"]["time"] == "fp32"
    assert head["runtime"]["amp"] == "off"
    info = model_info(name)
    assert info.precision == "fp32"
    assert SOURCES[next(k for k in SOURCES if name.startswith(k))] in info.precision_source
    assert training_loop({"amp": "auto", "compile": False}, "cuda", name) == "fp32"
    # an explicit bf16 still wins: the pin is the default of ``auto``, not a ban
    assert resolve_precision("bf16", "cuda", continuous_depth(model_info(name)))["train"] == "bf16"


@pytest.mark.parametrize("name", ["resnet110", "shake_shake26_2x32d", "stochastic_depth_resnet110", "revnet38"])
def test_discrete_models_still_train_in_bf16_under_auto_on_cuda(name):
    """The pin is per family: a rule that put every model in fp32 (or none) fails here or above."""
    head = cuda_head(name)
    assert head["precision"]["train"] == "bf16" and model_info(name).precision is None


def test_a_pinned_precision_needs_its_source():
    with pytest.raises(ValueError, match="precision_source"):
        register_model("_no_source", family="stochastic", paper="p", scheme="s", precision="fp32")
    with pytest.raises(ValueError, match="precision"):
        register_model("_bad", family="stochastic", paper="p", scheme="s", precision="fp16", precision_source="x")
