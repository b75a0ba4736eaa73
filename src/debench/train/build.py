"""Model and optimizer of a run, built from the registry, the dataset metadata and the protocol."""

from __future__ import annotations

import inspect
from typing import Any

import torch

from debench.errors import ConfigError
from debench.registry import model_info
from debench.train.protocol import Protocol


def factory_kwargs(name: str, meta: dict[str, Any], model_args: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``create_model(name, ...)``: the dataset's shape, then ``model_args``.

    Args:
        name: registered model name.
        meta: the dataset cache's sidecar (``kind``, ``shape``, ``num_classes``).
        model_args: the config's ``model_args``.

    Returns:
        The keyword arguments the factory accepts.

    Raises:
        ConfigError: naming the model_args the factory does not accept.
    """
    info = model_info(name)
    offered = {"num_classes": meta["num_classes"]}
    if meta.get("kind", "image") == "image":
        offered.update(in_channels=meta["shape"][-1], image_size=meta["shape"][0])
    else:
        offered["data_shape"] = tuple(meta["shape"])
    sig = inspect.signature(info.factory)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    kwargs = {k: v for k, v in offered.items() if takes_any or k in sig.parameters}
    unknown = [k for k in model_args if not takes_any and k not in sig.parameters]
    if unknown:
        raise ConfigError(f"model_args for {name!r}: unknown argument(s) {unknown}; "
                          f"{name} accepts {sorted(sig.parameters)}")
    return {**kwargs, **model_args}


def make_optimizer(model: torch.nn.Module, p: Protocol, device: torch.device) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov), Adam or AdamW over the trainable parameters.

    Adam and AdamW are fused on CUDA. SGD uses the multi-tensor (foreach) kernels everywhere:
    fused SGD with momentum needs every parameter to have a gradient from the first step on (it
    raises ``TypeError: expected Tensor ... got NoneType`` when a parameter without a momentum
    buffer first gets a gradient later), and stochastic depth, ShakeDrop's and FractalNet's drop-path
    leave whole blocks without a gradient in some steps (seen on an H200, 2026-12-04).
    """
    params = [q for q in model.parameters() if q.requires_grad]
    if p.optimizer == "sgd":
        return torch.optim.SGD(params, lr=p.lr, momentum=p.momentum, nesterov=p.nesterov,
                               weight_decay=p.weight_decay, foreach=True)
    fused = {"fused": True} if device.type == "cuda" else {"foreach": True}
    cls = torch.optim.Adam if p.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=p.lr, betas=(p.momentum, 0.999), weight_decay=p.weight_decay, **fused)
