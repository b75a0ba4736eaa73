"""Where and how a run computes: device, threads, layout, precision per metric, compile mode.

Everything here is a pure function of the config's ``runtime`` block, the device and the
registry, so the choices that change a result's bits can be tested on a CPU and hashed.

Precision (issue 13, point 4). The papers report fp32 figures: MemCNN's table and the
ResNet/RevNet memory ratio (Gomez et al. 2017) and the adaptive-solver NFE of Chen et al. 2018.
So activation memory is always probed in fp32 whatever the training precision, and models whose
depth is decided by an adaptive solver train in fp32 under ``amp: auto`` (bf16 rounding makes the
error estimate larger and the solver take 1.2-2.2x the steps). The SDE families (issue 27,
point 3) train in fp32 under ``amp: auto`` too: none of their authors' codes uses mixed precision
(Neural SDE: xuanqing94/NeuralSDE ``sde_classifier.py``; latent SDE: google-research/torchsde
``examples/latent_sde_lorenz.py``; score SDEs: yang-song/score_sde_pytorch ``run_lib.py``; DDPM:
hojonathanho/diffusion, whose ``run_cifar.py`` asserts float32 inputs and has no bfloat16), and
the Lévy/jump models are the Neural SDE's alpha and jump sweeps, compared with it at its
precision. Each such model pins ``precision="fp32"`` with its source in the registry
(:class:`debench.registry.ModelInfo`); the run record's ``precision`` block names the result.
Everything else may train in bf16 on CUDA; the record names the precision of each metric.

fp32 means IEEE fp32. On Ampere and later GPUs PyTorch runs fp32 convolutions (and cuDNN RNNs)
in TF32 by default, a 10-bit mantissa, which the papers' pre-Ampere GPUs never did: so an ``off``
(fp32) run sets cuDNN and cuBLAS to IEEE fp32 (:func:`apply_math_mode`), and TF32 is a named
setting of its own, ``amp: tf32``, recorded as ``tf32``. The report compares only fp32 runs with
published numbers (:func:`debench.report.aggregate._verdict`).
"""

from __future__ import annotations

from typing import Any

import torch

from debench.errors import ConfigError

AMP_CHOICES = ("auto", "bf16", "tf32", "off")
# dtype name each amp setting measures in (the record's ``precision`` values)
PRECISION_OF = {"bf16": "bf16", "tf32": "tf32", "off": "fp32"}
# the fp32 math flags of torch's new TF32 API (torch >= 2.9): cuDNN convolutions, cuDNN RNNs, cuBLAS
_FP32_MATH_BACKENDS = (("cudnn", "conv"), ("cudnn", "rnn"), ("cuda", "matmul"))


def continuous_depth(info: Any) -> bool:
    """True for the models ``amp: auto`` trains in fp32 (the ``adaptive`` flag of :func:`resolve_precision`).

    These are the continuous-depth models of family ``continuous`` without a fixed
    ``evals_per_forward``, whose depth (NFE) a solver decides, adaptive at least at evaluation
    (RNODE trains with rk4 and evaluates with dopri5), and the continuous-time SDE models whose
    registry metadata pins ``precision="fp32"`` from their authors' code (module docstring).

    Args:
        info: the model's :class:`debench.registry.ModelInfo`.

    Returns:
        Whether ``amp: auto`` keeps the model in fp32.
    """
    if getattr(info, "precision", None) == "fp32":
        return True
    return info.family == "continuous" and info.evals_per_forward is None


def resolve_precision(amp: str, device_type: str, adaptive: bool, classify: bool = True) -> dict[str, str]:
    """The precision each metric of a run is measured in.

    Args:
        amp: ``runtime.amp``: ``auto``, ``bf16``, ``tf32`` or ``off``.
        device_type: ``cuda`` or ``cpu``.
        adaptive: the model is continuous-depth (:func:`continuous_depth`).
        classify: the model's task is ``classify``; the trainer evaluates other tasks (their
            ``evaluate_metrics``: likelihoods, samples) outside autocast, in fp32.

    Returns:
        ``{"train", "eval", "activation_memory", "peak_memory", "nfe", "time"}`` ->
        ``bf16``/``tf32``/``fp32`` (``nfe``: the training-step counters ``nfe_forward``/``nfe_backward``).
        ``auto`` is bf16 on CUDA except for continuous-depth and SDE models (fp32), fp32 on the CPU;
        ``tf32`` is TF32 on CUDA and fp32 on the CPU (no TF32 there); ``activation_memory`` is fp32
        always.

    Raises:
        ConfigError: for an unknown ``amp`` value.
    """
    if amp not in AMP_CHOICES:
        raise ConfigError(f"runtime.amp: must be one of {AMP_CHOICES}, got {amp!r}")
    if amp == "auto":
        amp = "bf16" if device_type == "cuda" and not adaptive else "off"
    if amp == "tf32" and device_type != "cuda":
        amp = "off"
    p = PRECISION_OF[amp]
    return {"train": p, "eval": p if classify else "fp32", "activation_memory": "fp32", "peak_memory": p,
            "nfe": p, "time": p}


def apply_math_mode(precision: dict[str, str]) -> str:
    """Set the fp32 math of cuDNN and cuBLAS for a run of resolved ``precision``; returns it.

    ``tf32`` training lets cuDNN convolutions and RNNs and cuBLAS matmuls round fp32 inputs to
    TF32; anything else (``fp32`` and ``bf16``, whose autocast leaves some ops in fp32) sets them
    to IEEE fp32, whatever torch's default (TF32 for cuDNN convolutions). The flags only act on
    CUDA; they are set on every device so a run's math never depends on what ran before it in the
    process (a fork-server child inherits its parent's flags).

    Args:
        precision: :func:`resolve_precision`'s result.

    Returns:
        ``"tf32"`` or ``"ieee"``, the mode set.
    """
    mode = "tf32" if precision["train"] == "tf32" else "ieee"
    for backend, op in _FP32_MATH_BACKENDS:
        flags = getattr(getattr(torch.backends, backend), op)
        if hasattr(flags, "fp32_precision"):
            flags.fp32_precision = mode
        elif (backend, op) == ("cudnn", "conv"):  # torch before the new API: one cuDNN flag
            torch.backends.cudnn.allow_tf32 = mode == "tf32"
        elif (backend, op) == ("cuda", "matmul"):
            torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
    return mode


def resolve_compile(setting: Any, device_type: str, name: str, timed_with: list[str] | None = None) -> str | bool:
    """The ``torch.compile`` mode of model ``name``, or ``False`` for eager.

    ``auto`` compiles with CUDA graphs (``reduce-overhead``) on a GPU the models registered as
    ``compilable``, unless the run's experiment times this model against a model that cannot be
    compiled (a stochastic-depth model and its constant-depth twin, ``timed_with``): a time saving
    is measured between two models run under the same mode (issue 13, point 5). The same ResNet in
    an experiment that times nothing against it keeps its CUDA graphs.

    Args:
        setting: ``runtime.compile``: ``auto``, ``false``/None, ``true`` or a torch.compile mode.
        device_type: ``cuda`` or ``cpu``.
        name: the registered model name.
        timed_with: the other models of the run's experiment in ``name``'s time-comparison group
            (:func:`debench.registry.time_comparison_group`; the run spec's ``timed_with``).

    Returns:
        ``False`` or a mode name (``True`` means ``"default"``).
    """
    from debench.registry import model_info

    if setting == "auto":
        ok = device_type == "cuda" and all(model_info(n).compilable for n in [name, *(timed_with or [])])
        setting = "reduce-overhead" if ok else False
    if setting in (False, None):
        return False
    return "default" if setting is True else str(setting)


def resolve_runtime(r: dict[str, Any], name: str, adaptive: bool = False, classify: bool = True,
                    timed_with: list[str] | None = None) -> dict[str, Any]:
    """Concrete device, threads, precision and layout from the config's ``runtime`` block.

    Args:
        r: the ``runtime`` block (``device``, ``threads``, ``channels_last``, ``amp``, ``compile``).
        name: the registered model name (compile mode and its twin).
        adaptive, classify: see :func:`resolve_precision`.
        timed_with: see :func:`resolve_compile`.

    Returns:
        ``device``, ``device_type``, ``threads``, ``channels_last``, ``amp`` (``bf16``/``off``,
        the training autocast; ``tf32`` runs without autocast), ``compile`` and ``precision``
        (per metric; :func:`apply_math_mode` sets the fp32 math it names).

    Raises:
        RuntimeError: when ``device: cuda`` is asked for on a machine without CUDA.
        ConfigError: for an unknown ``amp`` value.
    """
    want = r.get("device", "auto")
    device = torch.device("cuda" if want == "auto" and torch.cuda.is_available() else
                          ("cpu" if want == "auto" else want))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("runtime.device is 'cuda' but CUDA is not available here; use 'auto' or 'cpu'")
    precision = resolve_precision(r.get("amp", "auto"), device.type, adaptive, classify)
    return {"device": str(device), "device_type": device.type,
            "threads": int(r.get("threads") or torch.get_num_threads()),
            "channels_last": bool(r.get("channels_last", True)),
            "amp": "bf16" if precision["train"] == "bf16" else "off",
            "compile": resolve_compile(r.get("compile", "auto"), device.type, name, timed_with),
            "precision": precision}
