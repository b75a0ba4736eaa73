"""Workflow configuration: validation beyond the schema, expansion into runs, run specs.

The Snakefile validates the config against ``workflow/schemas/config.schema.yaml`` and then calls
:func:`check_config`, which checks what a schema cannot: registered model names (with the
closest names suggested), protocol keys and ranges, model arguments against each factory's
signature, and dataset/model compatibility. Every message names the key.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

from debench.errors import ConfigError
from debench.fit import fits_dataset, fits_table
from debench.registry import import_plugins, list_models, model_info
from debench.train.protocol import Protocol


def resolve_models(patterns: list[str], where: str) -> list[str]:
    names: list[str] = []
    known = list_models()
    for pat in patterns:
        hits = list_models(pat) if any(c in pat for c in "*?[") else ([pat] if pat in known else [])
        if not hits:
            close = difflib.get_close_matches(pat, known, n=3, cutoff=0.5)
            hint = f"; closest registered: {', '.join(close)}" if close else "; see `debench models`"
            raise ConfigError(f"{where}: unknown model {pat!r}{hint}")
        names += [h for h in hits if h not in names]
    return names


def protocol_for(config: dict, exp_name: str, model: str) -> dict[str, Any]:
    exp = config["experiments"][exp_name]
    merged = {**config.get("defaults", {}).get("protocol", {}), **exp["protocol"],
              **exp.get("protocol_overrides", {}).get(model, {})}
    return merged


def check_config(config: dict, locate=None) -> None:
    """Cross-field checks; raises :class:`ConfigError` naming the key (and line via ``locate``)."""
    from debench.data.cache import DATASETS

    import_plugins(config.get("plugins", []))

    def fail(path: list, msg: str) -> None:
        where = ".".join(map(str, path))
        line = locate(path) if locate else None
        raise ConfigError(f"config key '{where}'{f' (line {line})' if line else ''}: {msg}")

    for name, exp in config["experiments"].items():
        base = ["experiments", name]
        if not _NAME.match(str(name)):
            fail(base, f"experiment name {name!r} must match {_NAME.pattern} (it becomes a folder name)")
        try:
            models = resolve_models(exp["models"], ".".join(base + ["models"]))
        except ConfigError as exc:
            fail(base + ["models"], str(exc).split(": ", 1)[1])
        for ds in exp["datasets"]:
            if ds not in DATASETS:
                close = difflib.get_close_matches(ds, list(DATASETS), n=3)
                fail(base + ["datasets"], f"unknown dataset {ds!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))
        origin = {}  # model -> the entry of `models` that brought it in
        for pat in exp["models"]:
            for m in resolve_models([pat], ".".join(base + ["models"])):
                origin.setdefault(m, pat)
        for key in ("protocol_overrides", "model_args"):
            for m in exp.get(key, {}):
                if m not in models:
                    fail(base + [key, m], f"model {m!r} is not in this experiment's models {models}")
        for m in models:
            try:
                Protocol.from_dict(protocol_for(config, name, m), where=".".join(base + ["protocol"]))
            except ValueError as exc:
                key = str(exc).split(":")[0].split(".")[-1]
                fail(base + ["protocol", key], str(exc).split(": ", 1)[1])
            _check_model_args(m, exp.get("model_args", {}).get(m, {}), base + ["model_args", m], fail)
            # a pattern's catch is the pattern's fault; a named model's misfit is the datasets'
            pat = origin[m] if origin[m] != m else None
            who = f"pattern {pat!r} matches {m}, which" if pat else m
            hint = "; narrow the pattern or list the models by name" if pat else ""
            misfit = fits_table(m, exp["table"])
            if misfit:
                fail(base + (["models"] if pat else ["table"]), f"{who} {misfit}{hint}")
            for ds in exp["datasets"]:
                misfit = fits_dataset(m, ds)
                if misfit:
                    fail(base + (["models"] if pat else ["datasets"]), f"{who} {misfit}{hint}")


_NAME = re.compile(r"^[A-Za-z0-9_]+$")
# Model arguments the trainer derives from the dataset; setting them would mismatch the data
# (a 10-way head on CIFAR-100).
_FROM_DATASET = ("num_classes", "in_channels", "image_size", "data_shape")
# Ranges of model arguments shared by several families: (low, high, low inclusive, text).
_RANGES = {
    "p_last": (0.0, 1.0, False, "a survival probability in (0, 1]"),
    "rtol": (0.0, math.inf, False, "> 0"), "atol": (0.0, math.inf, False, "> 0"),
    "step_size": (0.0, math.inf, False, "> 0"), "max_num_steps": (1, math.inf, True, ">= 1"),
}


def _check_model_args(model: str, args: dict, path: list, fail) -> None:
    import inspect

    for key, value in args.items():
        if key in _FROM_DATASET:
            fail(path + [key], f"{key} is set from the dataset (e.g. cifar100 has 100 classes); remove it")
        if key in _RANGES and value is not None:
            lo, hi, inclusive, text = _RANGES[key]
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and \
                (value >= lo if inclusive else value > lo) and value <= hi
            if not ok:
                fail(path + [key], f"must be {text}, got {value!r}")
    sig = inspect.signature(model_info(model).factory)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return
    for key in args:
        if key not in sig.parameters:
            fam = model_info(model).family
            extra = " (solver options apply to continuous models only)" if key in (
                "adjoint", "method", "rtol", "atol", "seminorm") and fam == "discrete" else ""
            accepted = sorted(set(sig.parameters) - set(_FROM_DATASET))
            fail(path + [key], f"{model} has no argument {key!r}{extra}; it accepts "
                 f"{', '.join(accepted) if accepted else 'no model arguments'}")


def expand_runs(config: dict) -> list[dict[str, Any]]:
    """Every (experiment, dataset, model, seed) the configuration asks for."""
    runs = []
    for name, exp in config["experiments"].items():
        models = resolve_models(exp["models"], f"experiments.{name}.models")
        for ds in exp["datasets"]:
            for m in models:
                for seed in config["seeds"]:
                    runs.append({"experiment": name, "dataset": ds, "model": m, "seed": int(seed)})
    return runs


def run_spec(config: dict, experiment: str, dataset: str, model: str, seed: int, *, cache: str,
             metrics: str, checkpoints: str, tracking: dict[str, Any]) -> dict[str, Any]:
    """The JSON spec ``debench train`` receives for one run (deterministic for a config)."""
    from debench.registry import time_comparison_group

    exp = config["experiments"][experiment]
    timed = set(time_comparison_group(model)) - {model}
    return {
        "experiment": experiment, "preset": config["preset"], "table": exp["table"],
        "mode": exp.get("mode", "paper"), "comparable": bool(config.get("comparable", False)),
        "model": model, "dataset": dataset, "seed": int(seed),
        "protocol": protocol_for(config, experiment, model),
        "model_args": exp.get("model_args", {}).get(model, {}),
        "runtime": config.get("runtime", {}), "data_source": config.get("data", {}).get("source"),
        "data": {"cache": cache}, "tracking": tracking, "plugins": config.get("plugins", []),
        "paths": {"metrics": metrics, "checkpoints": checkpoints},
        # the models this run's time is compared with in its experiment: they share a compile mode
        "timed_with": [m for m in resolve_models(exp["models"], f"experiments.{experiment}.models") if m in timed],
    }


def load_config(path: Path) -> dict:
    """A config file as the workflow sees it: schema-validated with defaults, then checked.

    Raises:
        ConfigError: the file is missing or unreadable, or a key is invalid (named).
    """
    import yaml
    from jsonschema import Draft7Validator, ValidationError, validators

    from debench.resources import data_path

    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the config: {exc}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys")
    schema = yaml.safe_load(data_path("schemas/config.schema.yaml").read_text())  # packaged (a wheel too)

    def set_defaults(validator, properties, instance, schema):
        for key, sub in properties.items():
            if isinstance(instance, dict) and "default" in sub:
                instance.setdefault(key, sub["default"])
        yield from Draft7Validator.VALIDATORS["properties"](validator, properties, instance, schema)

    try:
        validators.extend(Draft7Validator, {"properties": set_defaults})(schema).validate(config)
    except ValidationError as exc:
        where = ".".join(str(k) for k in exc.absolute_path) or "(top level)"
        raise ConfigError(f"{path}: {where}: {exc.message}") from None
    check_config(config, locate=yaml_locator(str(path)))
    return config
# Spec keys that decide a run's numbers or how its row is read. The train rule hands them to
# Snakemake as a parameter of the wildcards alone, which Snakemake records with each output and
# compares on every run (it skips parameters computed from input or output): editing any of them
# reruns exactly the runs it changes. Paths, the tracking URI and plugins change no result.
IDENTITY_KEYS = ("experiment", "preset", "table", "mode", "comparable", "model", "dataset", "seed",
                 "protocol", "model_args", "runtime", "data_source", "timed_with")
# how and where a job runs changes no number: packing jobs onto a GPU or forking them from a
# preloaded server must not retrain them
RUNTIME_NOT_IDENTITY = ("jobs_per_gpu", "fork_server")


def run_identity(config: dict, experiment: str, dataset: str, model: str, seed: int) -> dict[str, Any]:
    """What makes one run's result what it is: the spec's result keys and the data settings.

    Args:
        config: the validated workflow config.
        experiment, dataset, model, seed: the run.

    Returns:
        A JSON-serializable dict; equal for two configs exactly when the run's result must be equal.
    """
    spec = run_spec(config, experiment, dataset, model, seed, cache="", metrics="", checkpoints="",
                    tracking={})
    identity = {k: spec[k] for k in IDENTITY_KEYS}
    identity["runtime"] = {k: v for k, v in spec["runtime"].items() if k not in RUNTIME_NOT_IDENTITY}
    data = config.get("data", {})
    source = data.get("source")
    identity["data"] = {"source": source, "synthetic": data.get("synthetic") if source == "synthetic" else None,
                        "npz_dir": data.get("npz_dir") if source == "npz" else None}
    return identity


def data_dir(config: dict) -> str:
    """The dataset cache folder: ``<cache_dir>/<source>``, plus a hash of the data settings.

    Settings that change the cached arrays (the synthetic sizes and seed, the npz folder) are
    part of the path, so a changed setting means a new cache and the runs that read it, while a
    cache rewritten in place never reruns a finished run (the train rule marks it ``ancient``).

    Args:
        config: the validated workflow config.

    Returns:
        A relative or absolute folder, e.g. ``resources/data/synthetic-3f2a9c1e``.
    """
    data = config["data"]
    source = data["source"]
    settings = {"synthetic": data.get("synthetic"), "npz": data.get("npz_dir")}.get(source)
    if not settings:
        return f"{data['cache_dir']}/{source}"
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return f"{data['cache_dir']}/{source}-{digest}"


def yaml_locator(path: str):
    """A function mapping a key path to its 1-based line in the YAML file ``path`` (or None)."""
    import yaml

    try:
        with open(path) as f:
            root = yaml.compose(f)
    except Exception:
        return lambda keys: None

    def locate(keys: list) -> int | None:
        node, line = root, None
        for k in keys:
            if not isinstance(node, yaml.MappingNode):
                break
            for knode, vnode in node.value:
                if knode.value == str(k):
                    node, line = vnode, knode.start_mark.line + 1
                    break
            else:
                break
        return line

    return locate
