"""One registry and one factory for every model debench trains.

A model family registers each factory with :func:`register_model`; users reach models only
through :func:`create_model` and :func:`list_models`. Variants are data: the depth and width sit
in the registered name (``resnet56``, ``lm_resnet110``) and the metadata says which paper and
which numerical scheme the model stands for.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable

import torch.nn as nn

FAMILIES = ("discrete", "continuous", "stochastic")
TASKS = ("classify", "density", "generate", "timeseries")


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one model without building it.

    Attributes:
        name: registered name, lower_snake with depth/width in it (``resnet110``).
        factory: callable returning an ``nn.Module``; keyword arguments override defaults.
        family: ``discrete``, ``continuous`` or ``stochastic`` (the survey's three families).
        paper: short citation of the paper the model comes from.
        scheme: the numerical scheme the architecture stands for (``forward Euler``).
        task: ``classify`` (logits), ``density`` (log-likelihood), ``generate`` or ``timeseries``.
        evals_per_forward: residual-function evaluations in one forward pass (depth x stages)
            for discrete models; ``None`` where it is adaptive (solver NFE is measured instead).
        reference: selectors into the published-results table (``model``, ``depth``,
            ``variant``, ``table_id`` columns); a row matches when every given column is equal.
        metric: the primary metric the report compares (``test_error``, ``bits_per_dim``,
            ``neg_elbo``, ``fid``); lower is better for every primary metric.
        compilable: ``runtime.compile: auto`` may compile it with CUDA graphs on a GPU (set only
            where that was measured to train correctly and faster; see docs/performance.md).
        defaults: default keyword arguments of the factory, recorded in each run's config.
    """

    name: str
    factory: Callable[..., nn.Module]
    family: str
    paper: str
    scheme: str
    task: str = "classify"
    evals_per_forward: int | None = None
    reference: tuple[dict[str, str], ...] = ()
    metric: str = "test_error"
    compilable: bool = False
    defaults: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, ModelInfo] = {}


class UnknownModelError(KeyError):
    """A model name that is not registered; the message lists the closest names."""

    def __str__(self) -> str:
        return str(self.args[0])


def register_model(
    name: str,
    *,
    family: str,
    paper: str,
    scheme: str,
    task: str = "classify",
    evals_per_forward: int | None = None,
    reference: list[dict[str, str]] | tuple[dict[str, str], ...] = (),
    metric: str = "test_error",
    compilable: bool = False,
    **defaults: Any,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that registers a model factory under ``name``.

    Args:
        name: unique registered name.
        family: one of :data:`FAMILIES`.
        paper: citation of the source paper.
        scheme: numerical scheme the model discretizes.
        task: one of :data:`TASKS`.
        evals_per_forward: residual-function evaluations per forward pass, if fixed.
        reference: selectors into ``published_results.csv`` (see :class:`ModelInfo`).
        metric: primary metric of the report (see :class:`ModelInfo`).
        compilable: see :class:`ModelInfo`.
        **defaults: keyword arguments passed to the factory unless overridden.

    Returns:
        The decorator; it returns the factory unchanged.

    Raises:
        ValueError: if the name is taken or family/task is unknown.
    """
    if family not in FAMILIES:
        raise ValueError(f"model {name!r}: family must be one of {FAMILIES}, got {family!r}")
    if task not in TASKS:
        raise ValueError(f"model {name!r}: task must be one of {TASKS}, got {task!r}")

    def decorate(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY and _REGISTRY[name].factory is not factory:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = ModelInfo(
            name=name,
            factory=factory,
            family=family,
            paper=paper,
            scheme=scheme,
            task=task,
            evals_per_forward=evals_per_forward,
            reference=tuple(dict(r) for r in reference),
            metric=metric,
            compilable=compilable,
            defaults=dict(defaults),
        )
        return factory

    return decorate


def _ensure_builtin_models() -> None:
    import debench.models  # noqa: F401  (registers the built-in families)


def list_models(pattern: str = "*", family: str | None = None, task: str | None = None) -> list[str]:
    """Registered model names matching a shell-style ``pattern``, sorted naturally by depth."""
    _ensure_builtin_models()
    names = [
        n
        for n, info in _REGISTRY.items()
        if fnmatch.fnmatchcase(n, pattern)
        and (family is None or info.family == family)
        and (task is None or info.task == task)
    ]
    return sorted(names, key=_natural_key)


def model_info(name: str) -> ModelInfo:
    """Metadata of a registered model.

    Raises:
        KeyError: naming the closest registered names when ``name`` is unknown.
    """
    _ensure_builtin_models()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `debench models`"
        raise UnknownModelError(f"unknown model {name!r}{hint}") from None


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model.

    Args:
        name: a name from :func:`list_models`.
        **kwargs: overrides of the factory's defaults (``num_classes``, ``in_channels``, ...).

    Returns:
        The model, in training mode, on the CPU.

    Raises:
        KeyError: if ``name`` is not registered (the message lists close names).
    """
    info = model_info(name)
    return info.factory(**{**info.defaults, **kwargs})


def import_plugins(modules: list[str]) -> None:
    """Import user modules whose factories register themselves (config key ``plugins``)."""
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ImportError(f"config key 'plugins': cannot import {module!r}: {exc}") from exc


def _natural_key(name: str) -> tuple:
    import re

    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))
