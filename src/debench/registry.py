"""One registry and one factory for every model debench trains.

A model family registers each factory with :func:`register_model`; users reach models only
through :func:`create_model` and :func:`list_models`. Variants are data: the depth and width sit
in the registered name (``resnet56``, ``lm_resnet110``) and the metadata says which paper and
which numerical scheme the model stands for.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch.nn as nn

from debench.errors import ConfigError

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
        constant_depth_twin: for a stochastic-depth-style model, the constant-depth model its
            time saving is measured against; ``None`` derives it from the name (see
            :func:`constant_depth_twin`).
        baseline: the model a paper's relative claim measures this one against (LM-ResNet-20 against
            ResNet-20: same depth, forward Euler); the report gives the difference of their means with
            its CI when both ran under the same protocol (:mod:`debench.report.baselines`).
        module: the Python module that registered the factory (shows plugin models).
        precision: the precision ``runtime.amp: auto`` trains the model in where the authors'
            code decides it: ``fp32`` (their code trains without mixed precision; the SDE
            families, see :func:`debench.train.runtime.continuous_depth`), or ``None`` for the
            device rule of :func:`debench.train.runtime.resolve_precision`.
        precision_source: where ``precision`` was read (repository, file and commit).
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
    constant_depth_twin: str | None = None
    baseline: str | None = None
    module: str = ""
    precision: str | None = None
    precision_source: str = ""


PRECISIONS = (None, "fp32")
_REGISTRY: dict[str, ModelInfo] = {}


class UnknownModelError(KeyError):
    """A model name that is not registered; the message lists the closest names."""

    def __str__(self) -> str:
        return str(self.args[0])


class DuplicateModelError(ValueError):
    """A second factory registered under a taken name; names both modules (a plugin's and a built-in's)."""

    def __init__(self, name: str, first: str, second: str) -> None:
        self.name, self.first, self.second = name, first, second
        super().__init__(f"model {name!r} from module {second or '?'} is already registered by "
                         f"{_describe_module(first)}")


def _describe_module(module: str) -> str:
    return f"the built-in module {module}" if module.startswith("debench.") else f"module {module or '?'}"


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
    constant_depth_twin: str | None = None,
    baseline: str | None = None,
    precision: str | None = None,
    precision_source: str = "",
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
        constant_depth_twin: see :class:`ModelInfo`.
        baseline: see :class:`ModelInfo`.
        precision, precision_source: see :class:`ModelInfo`; a ``precision`` needs its source.
        **defaults: keyword arguments passed to the factory unless overridden.

    Returns:
        The decorator; it returns the factory unchanged.

    Raises:
        ValueError: if the name is taken, family/task/precision is unknown or a precision has no source.
    """
    if precision not in PRECISIONS or (precision and not precision_source):
        raise ValueError(f"model {name!r}: precision must be one of {PRECISIONS} with a precision_source, "
                         f"got {precision!r}")
    if family not in FAMILIES:
        raise ValueError(f"model {name!r}: family must be one of {FAMILIES}, got {family!r}")
    if task not in TASKS:
        raise ValueError(f"model {name!r}: task must be one of {TASKS}, got {task!r}")

    def decorate(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY and _REGISTRY[name].factory is not factory:
            raise DuplicateModelError(name, _REGISTRY[name].module, getattr(factory, "__module__", ""))
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
            constant_depth_twin=constant_depth_twin,
            baseline=baseline,
            module=getattr(factory, "__module__", ""),
            precision=precision,
            precision_source=precision_source,
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


# The naming rule of stochastic-depth-style variants: prefix or suffix on the constant-depth name.
_TWIN = re.compile(r"^(?:stochastic_depth_|shakedrop_|dropout_)?(.*?)(?:_sd)?$")


def constant_depth_twin(name: str) -> str | None:
    """The constant-depth model a stochastic-depth-style model's time saving is measured against.

    Args:
        name: a registered model name.

    Returns:
        The registered ``constant_depth_twin``, else the name without its ``stochastic_depth_``,
        ``shakedrop_`` or ``dropout_`` prefix or ``_sd`` suffix when that model is registered,
        else ``None``.

    Raises:
        KeyError: if ``name`` is not registered.
    """
    info = model_info(name)
    if info.constant_depth_twin:
        return info.constant_depth_twin
    twin = _TWIN.match(name).group(1)
    return twin if twin != name and twin in _REGISTRY else None


def time_comparison_group(name: str) -> list[str]:
    """``name``, its constant-depth twin and every model whose twin it is: runs timed against each other.

    Raises:
        KeyError: if ``name`` is not registered.
    """
    twin = constant_depth_twin(name)
    base = twin or name
    return sorted({name, base, *(n for n in list(_REGISTRY) if constant_depth_twin(n) == base)})


def merged_model_args(name: str, passed: dict[str, Any]) -> dict[str, Any]:
    """The factory's arguments as it actually receives them: signature defaults, registry extras, ``passed``.

    Args:
        name: a registered model name.
        passed: the keyword arguments handed to :func:`create_model`.

    Returns:
        A dict sorted by key; tuples become lists (as in JSON).

    Raises:
        KeyError: if ``name`` is not registered.
    """
    import inspect

    info = model_info(name)
    sig = {k: p.default for k, p in inspect.signature(info.factory).parameters.items()
           if p.default is not inspect.Parameter.empty}
    merged = {**sig, **info.defaults, **passed}
    return {k: _jsonable(merged[k]) for k in sorted(merged)}


def _jsonable(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if callable(v):  # a default function or class: its import path (a repr would carry an address)
        return f"{getattr(v, '__module__', '?')}.{getattr(v, '__qualname__', type(v).__name__)}"
    text = repr(v)
    return type(v).__name__ if " at 0x" in text else text


def model_meta(name: str, depth: int | None = None, compiled: str | bool = False) -> dict[str, Any]:
    """Registry metadata a run record carries for the report.

    Args:
        name: a registered model name.
        depth: the depth to record (``None``: the reference selectors' depth, else the number
            the name ends in before a dataset or width suffix: ``rk4_resnet20`` -> 20).
        compiled: ``False`` or the torch.compile mode the run used.

    Returns:
        ``reference`` (selector dicts), ``depth``, ``constant_depth_twin``, ``baseline``, ``compilable``,
        ``compiled`` and ``module``. (A pinned ``precision`` shows in the record's ``precision``
        block, which :func:`debench.train.runtime.resolve_precision` fills from it.)

    Raises:
        KeyError: if ``name`` is not registered.
    """
    info = model_info(name)
    if depth is None:
        depth = _depth_of(name, info.reference)
    return {"reference": [dict(r) for r in info.reference], "depth": depth,
            "constant_depth_twin": constant_depth_twin(name), "baseline": info.baseline, "compilable": info.compilable,
            "compiled": compiled, "module": info.module}


def _depth_of(name: str, reference: tuple[dict[str, str], ...]) -> int | None:
    depths = {str(r["depth"]) for r in reference if r.get("depth")}
    if len(depths) == 1 and next(iter(depths)).isdigit():
        return int(next(iter(depths)))
    m = re.search(r"[a-z](\d+)(?=_sd$|_mnist$|_cifar$|_2x|$)", name)
    return int(m.group(1)) if m else None


class PluginError(ConfigError):
    """A plugin module (config key ``plugins``) failed to import or to register its models.

    Attributes:
        module: the plugin's module name, as the config lists it.
        detail: what went wrong, one line, without the ``plugins`` prefix.
    """

    def __init__(self, module: str, detail: str) -> None:
        self.module, self.detail = module, detail
        super().__init__(f"config key 'plugins': {detail}")


def import_plugins(modules: list[str]) -> None:
    """Import user modules whose factories register themselves (config key ``plugins``).

    The built-in models register first, so a plugin that takes a built-in name is the one named
    as the duplicate.

    Raises:
        PluginError: one line naming the plugin module, for any exception its import raises (a
            missing module, a syntax error, a ``RuntimeError`` at import, a duplicate name).
    """
    import importlib

    _ensure_builtin_models()
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001  any failure of user code at import is the plugin's
            raise PluginError(module, _plugin_failure(module, exc)) from exc


def _plugin_failure(module: str, exc: Exception) -> str:
    """One line: what plugin ``module`` did wrong, and where in its own files."""
    import traceback

    text = " ".join(str(exc).split())
    if isinstance(exc, DuplicateModelError):
        where = _frame_in(module, exc)
        return (f"plugin module {module!r}{where} registers model {exc.name!r}, which "
                f"{_describe_module(exc.first)} already registers; rename the plugin's model")
    if isinstance(exc, ModuleNotFoundError) and exc.name and module.split(".")[0] == exc.name.split(".")[0]:
        return (f"plugin module {module!r} not found ({text}); is its folder on PYTHONPATH?")
    if isinstance(exc, SyntaxError):
        return (f"plugin module {module!r} has a syntax error ({exc.filename}, line {exc.lineno}): "
                f"{' '.join(str(exc.msg).split())}")
    frames = traceback.extract_tb(exc.__traceback__)
    where = _frame_in(module, exc) or (f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else "")
    return f"plugin module {module!r} failed at import{where}: {type(exc).__name__}: {text}"


def _frame_in(module: str, exc: Exception) -> str:
    """`` (<file>, line <n>)`` of the innermost frame of ``exc`` in the plugin's own files, or ''.

    The module is gone from ``sys.modules`` after a failed import, so its files are matched by
    name: ``<last part>.py``, or any file under a folder named after its top package.
    """
    import traceback

    parts = module.split(".")
    mine = [f for f in traceback.extract_tb(exc.__traceback__)
            if Path(f.filename).stem == parts[-1] or (len(parts) > 1 and parts[0] in Path(f.filename).parts)
            or Path(f.filename).parent.name == parts[0]]
    return f" ({mine[-1].filename}, line {mine[-1].lineno})" if mine else ""


def _natural_key(name: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))
