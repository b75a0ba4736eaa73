"""Workflow configuration: validation beyond the schema, expansion into runs, run specs.

The Snakefile, ``debench plan`` and ``debench status`` read a config through one gate,
:func:`validate_config`: the JSON schema ``workflow/schemas/config.schema.yaml`` (its defaults
filled in), then :func:`check_config`, which checks what a schema cannot: plugins, registered
model names (with the closest names suggested), protocol keys and ranges, model arguments against
each factory's signature, and dataset/model compatibility. Every error is one line naming the
file, the key's path in it and its line, and for a typo the closest valid key.
"""

from __future__ import annotations

import copy
import difflib
import functools
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


def check_config(config: dict, locate=None, paper_check: bool = True) -> None:
    """Cross-field checks; raises :class:`ConfigError` naming the key (and line via ``locate``).

    Args:
        config: the config after the schema (with its defaults).
        locate: maps a key path to its line (an int, as :func:`yaml_locator` returns) or to
            ``(file, line)`` (as :func:`config_locator` returns), or ``None``.
        paper_check: also hold a comparable preset's paper-mode runs to the survey protocol
            (:func:`check_paper_protocols`).

    Raises:
        ConfigError: one line, ``[<file>: ]config key '<path>' (line <n>): <what is wrong>``.
    """
    from debench.data.cache import DATASETS
    from debench.registry import PluginError

    def fail(path: list, msg: str) -> None:
        raise ConfigError(key_message(path, msg, locate))

    try:
        import_plugins(config.get("plugins", []))
    except PluginError as exc:
        fail(["plugins", config["plugins"].index(exc.module)], exc.detail)

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
                Protocol.from_dict(protocol_for(config, name, m), where="protocol")
            except ValueError as exc:  # "protocol.<key>: <what is wrong>"
                key, _, msg = str(exc).partition(": ")
                fail(_protocol_key_path(config, name, m, key.rpartition(".")[2]), msg or str(exc))
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
    amp = config.get("runtime", {}).get("amp", "auto")
    if config.get("comparable") and amp in ("bf16", "tf32"):
        fail(["runtime", "amp"], f"{amp!r} trains in reduced precision, but this preset is comparable and the "
             "report compares only fp32 runs with the published numbers: set amp: \"off\", or comparable: false "
             "to run it as a variant")
    if paper_check:
        check_paper_protocols(config, locate)


#: the survey protocol: every paper-mode experiment as its paper trains it (tests pin it to the papers)
SURVEY_CONFIG = Path(__file__).resolve().parents[2] / "config" / "config.yaml"
#: protocol keys that change how often a run evaluates or saves, not what it trains or reports
BOOKKEEPING_KEYS = frozenset({"eval_batch_size", "eval_every", "checkpoint_every"})


def check_paper_protocols(config: dict, locate=None, survey_path: str | Path = SURVEY_CONFIG) -> None:
    """A comparable preset's paper-mode runs stand beside the published numbers, so each must train
    as the survey protocol trains the same experiment and model: every protocol key but
    :data:`BOOKKEEPING_KEYS`, and the model's arguments. A shortened or otherwise changed copy
    (``iterations: 40`` in a copy of ``config/cpu_campaign.yaml``, or a ``--config`` override) is
    refused here, naming the key, rather than given a verdict against a paper it did not follow;
    ``comparable: false`` runs it as a variant. Experiments, models and modes the survey config does
    not hold are not checked; nor are the ``measurements`` table's experiments, whose published
    quantities (parameter counts, activation memory, time ratios) are measured over a few steps and
    do not depend on the training budget; nor anything when the survey config is not beside the
    package (an installed, not a checked-out, debench).

    Raises:
        ConfigError: the first key that differs, with both values.
    """
    import dataclasses

    survey_path = Path(survey_path)
    if not config.get("comparable") or not survey_path.is_file():
        return
    survey = _survey_config(str(survey_path), survey_path.stat().st_mtime_ns)
    for name, exp in config["experiments"].items():
        ref = survey["experiments"].get(name)
        if (exp.get("mode", "paper") != "paper" or exp["table"] == "measurements" or ref is None
                or ref.get("mode", "paper") != "paper"):
            continue
        where = f"experiments.{name}"
        survey_models = resolve_models(ref["models"], where)
        for m in resolve_models(exp["models"], where):
            if m not in survey_models:
                continue
            ours = dataclasses.asdict(Protocol.from_dict(protocol_for(config, name, m)))
            theirs = dataclasses.asdict(Protocol.from_dict(protocol_for(survey, name, m)))
            for key in sorted(k for k in ours if k not in BOOKKEEPING_KEYS and ours[k] != theirs[k]):
                raise ConfigError(key_message(
                    _protocol_key_path(config, name, m, key),
                    f"{m} trains with {key} = {ours[key]!r}, the survey protocol with {theirs[key]!r} "
                    f"({_shown(str(survey_path))}); a comparable preset's paper-mode runs are compared "
                    "with the paper, so they must train as it does: set comparable: false to run this "
                    "as a variant", locate))
            args, ref_args = exp.get("model_args", {}).get(m, {}), ref.get("model_args", {}).get(m, {})
            if _built_with(m, args) != _built_with(m, ref_args):
                raise ConfigError(key_message(
                    ["experiments", name, "model_args", m] if args else ["experiments", name, "models"],
                    f"{m} is built with model_args {args}, the survey protocol with {ref_args} "
                    f"({_shown(str(survey_path))}): a different network from the paper's; set "
                    "comparable: false to run this as a variant", locate))


def _built_with(model: str, args: dict) -> dict:
    """The keyword arguments ``model``'s factory runs with: its signature's defaults, the
    registered defaults, then ``args`` (so ``{invertible: true}`` equals ``{}`` where true is the
    default)."""
    import inspect

    info = model_info(model)
    signature = {k: p.default for k, p in inspect.signature(info.factory).parameters.items()
                 if p.default is not inspect.Parameter.empty}
    return {**signature, **info.defaults, **args}


@functools.lru_cache(maxsize=4)
def _survey_config(path: str, mtime_ns: int) -> dict:
    """The survey config, schema-validated with its defaults (not held to itself); read once per
    process and version of the file (``mtime_ns``). Read only: callers must not change it."""
    import yaml

    survey = yaml.safe_load(Path(path).read_text())
    validate_config(survey, [path], paper_check=False)
    return survey


def _protocol_key_path(config: dict, exp_name: str, model: str, key: str) -> list:
    """Where protocol ``key`` of ``model`` in ``exp_name`` is written: the override, the experiment's
    protocol or ``defaults.protocol`` (the layer that wins in :func:`protocol_for`); a key set in
    none of them (a missing budget) is the fault of the experiment's ``protocol`` block."""
    exp = config["experiments"][exp_name]
    layers = ((["experiments", exp_name, "protocol_overrides", model], exp.get("protocol_overrides", {}).get(model, {})),
              (["experiments", exp_name, "protocol"], exp["protocol"]),
              (["defaults", "protocol"], config.get("defaults", {}).get("protocol", {})))
    for path, block in layers:
        if key in block:
            return path + [key]
    return ["experiments", exp_name, "protocol"]


def key_path(keys: list) -> str:
    """``['experiments', 'a', 'datasets', 0]`` -> ``experiments.a.datasets[0]``."""
    text = ""
    for k in keys:
        text += f"[{k}]" if isinstance(k, int) else (f".{k}" if text else str(k))
    return text


def key_message(keys: list, msg: str, locate=None) -> str:
    """The one line every config error is: ``[<file>: ]config key '<path>' (line <n>): <msg>``."""
    found = locate(keys) if locate else None
    file, line = found if isinstance(found, tuple) else (None, found)
    msg = " ".join(str(msg).split())
    return (f"{f'{file}: ' if file else ''}config key '{key_path(keys)}'"
            f"{f' (line {line})' if line else ''}: {msg}")


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


def expand_runs(config: dict, locate=None) -> list[dict[str, Any]]:
    """Every (experiment, dataset, model, seed) the configuration asks for, limited to the runs
    whose path matches the config's ``only`` patterns when it has any (:mod:`debench.subset`)."""
    runs = []
    for name, exp in config["experiments"].items():
        models = resolve_models(exp["models"], f"experiments.{name}.models")
        for ds in exp["datasets"]:
            for m in models:
                for seed in config["seeds"]:
                    runs.append({"experiment": name, "dataset": ds, "model": m, "seed": int(seed)})
    if config.get("only"):  # run a subset: debench.subset
        from debench.subset import select_runs

        return select_runs(runs, config["only"], locate)
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
        ConfigError: one line: the file is missing or unreadable (with the YAML error's line), or a
            key is invalid (the file, the key's path and line, the closest valid key).
    """
    import yaml

    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: {yaml_error(exc)}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys, got {type(config).__name__}")
    validate_config(config, [path])
    return config


def yaml_error(exc: Exception) -> str:
    """A YAML parse error as one line: ``line <n>, column <c>: <problem>``."""
    mark = getattr(exc, "problem_mark", None)
    problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    return f"not valid YAML: {where}{problem}"


def validate_config(config: dict, files: list = (), schema_path: str | Path | None = None,
                    paper_check: bool = True) -> None:
    """The one gate of the Snakefile, ``debench plan`` and ``debench status``: the JSON schema
    (its defaults filled into ``config`` in place), then :func:`check_config`.

    Args:
        config: the config as read (Snakemake's merged ``config`` dict).
        files: the config files it was read from, in order (the last one wins for a key's line).
        schema_path: the schema file (default: the packaged ``schemas/config.schema.yaml``).
        paper_check: see :func:`check_config`.

    Raises:
        ConfigError: one line naming the file, the key's path and line, and for an unknown key or
            value the closest valid one.
    """
    import yaml
    from jsonschema import Draft202012Validator, validators
    from jsonschema.exceptions import best_match

    from debench.resources import data_path

    schema = yaml.safe_load(Path(schema_path or data_path("schemas/config.schema.yaml")).read_text())
    base = validators.validator_for(schema, default=Draft202012Validator)

    def set_defaults(validator, properties, instance, schema):
        for key, sub in properties.items():
            if isinstance(instance, dict) and "default" in sub:
                instance.setdefault(key, copy.deepcopy(sub["default"]))
        yield from base.VALIDATORS["properties"](validator, properties, instance, schema)

    locate = config_locator([str(f) for f in files], config)
    errors = list(validators.extend(base, {"properties": set_defaults})(schema).iter_errors(config))
    if errors:
        # an unknown key first: a typo (seed for seeds) also leaves a required key missing
        unknown = [e for e in errors if e.validator == "additionalProperties"]
        error = min(unknown, key=lambda e: len(e.absolute_path)) if unknown else best_match(errors)
        keys, msg = _schema_error(error)
        raise ConfigError(key_message(keys, msg, locate))
    check_config(config, locate=locate, paper_check=paper_check)
    expand_runs(config, locate)  # an `only` pattern matching no run is an error before any job


def _schema_error(error) -> tuple[list, str]:
    """(key path, message) of a jsonschema error, with the closest valid key or value."""
    keys = list(error.absolute_path)
    kind, schema, instance = error.validator, error.schema, error.instance
    if kind == "additionalProperties" and isinstance(instance, dict):
        allowed = list(schema.get("properties", {}))
        extra = [k for k in instance if k not in allowed]
        bad = extra[0] if extra else "?"
        close = difflib.get_close_matches(str(bad), allowed, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys here: {', '.join(allowed)}"
        where = f"under '{key_path(keys)}'" if keys else "at the top level"
        return keys + [bad], f"unknown key {where}{hint}"
    if kind == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return keys + [missing], "required key is missing"
    if "propertyNames" in error.schema_path:  # a key's name (an experiment's) breaks the rule for names
        rule = schema.get("description") or error.message
        return keys + [instance], f"the name {instance!r} is not allowed: {rule} ({error.message})"
    if kind == "enum":
        options = [str(o) for o in error.validator_value]
        close = difflib.get_close_matches(str(instance), options, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return keys, f"{instance!r} is not one of {', '.join(options)}{hint}"
    if kind == "type":
        wanted = error.validator_value
        wanted = wanted if isinstance(wanted, str) else " or ".join(wanted)
        return keys, f"expected {wanted}, got {type(instance).__name__} {_short(instance)}"
    return keys, error.message.replace(repr(instance), _short(instance))  # a long value, shortened


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def config_locator(files: list[str], config: dict | None = None):
    """A function mapping a key path to ``(file, line)``: the last of ``files`` that holds the
    key (Snakemake merges later files over earlier ones), else the deepest key found; the file
    is shown relative to the working folder when it lies under it.

    With ``config`` (the merged config, before schema defaults), a top-level key whose value no
    file gives (``snakemake --config only=...``) is located as ``("--config", None)``.
    """
    import yaml

    located = [(_shown(f), yaml_locator(f, full=True)) for f in files]
    from_command_line: set[str] = set()
    if config is not None and files:
        contents = []
        for f in files:
            try:
                loaded = yaml.safe_load(Path(f).read_text())
            except (OSError, yaml.YAMLError):
                loaded = None
            contents.append(loaded if isinstance(loaded, dict) else {})
        for key, value in config.items():
            given = [c[key] for c in contents if key in c]
            if not given or given[-1] != value:  # a --config value, merged over the files
                from_command_line.add(key)

    def locate(keys: list):
        if keys and keys[0] in from_command_line:
            return "--config", None
        best = (None, None, -1)
        for shown, loc in reversed(located):
            line, depth = loc(keys)
            if depth == len(keys):
                return shown, line
            if line and depth > best[2]:
                best = (shown, line, depth)
        if best[0] is None and located:
            return located[-1][0], None
        return best[0], best[1]

    return locate


def _shown(path: str) -> str:
    import os

    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


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


def yaml_locator(path: str, full: bool = False):
    """A function mapping a key path to its 1-based line in the YAML file ``path`` (or None).

    Integer keys index sequences (``['plugins', 0]``). A key the file lacks maps to the line of
    its deepest ancestor the file has. With ``full``, the function returns ``(line, depth)``:
    ``depth`` is how many keys of the path were found.
    """
    import yaml

    try:
        with open(path) as f:
            root = yaml.compose(f)
    except Exception:
        return (lambda keys: (None, 0)) if full else (lambda keys: None)

    def locate(keys: list):
        node, line, depth = root, None, 0
        for k in keys:
            if isinstance(node, yaml.MappingNode):
                hit = next(((kn, vn) for kn, vn in node.value if kn.value == str(k)), None)
                if hit is None:
                    break
                node, line = hit[1], hit[0].start_mark.line + 1
            elif isinstance(node, yaml.SequenceNode) and isinstance(k, int) and 0 <= k < len(node.value):
                node = node.value[k]
                line = node.start_mark.line + 1
            else:
                break
            depth += 1
        return (line, depth) if full else line

    return locate
