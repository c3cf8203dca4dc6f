"""Frozen keyword-only configs built from dicts, YAML files and ``--set key=value`` overrides.

Every config class is a ``@configclass`` (frozen, keyword-only dataclass). ``from_dict`` rejects
unknown keys by name and coerces strings coming from the command line to the field's type, so
``--set lr=0.01`` and ``lr: 0.01`` in YAML give the same config.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from unlearnbench.core.errors import ConfigError

C = TypeVar("C")


def configclass(cls: type[C]) -> type[C]:
    """Make ``cls`` a frozen, keyword-only dataclass (the one shape every config has)."""
    return dataclasses.dataclass(frozen=True, kw_only=True)(cls)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and value.lower() in ("none", "null") and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"Bad value {value!r} for {key!r}.")
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"Bad value {value!r} for {key!r}: choose one of {', '.join(map(str, args))}.")
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"Bad value {value!r} for {key!r}: expected a list.")
        inner = args[0] if args else Any
        return tuple(_coerce(v, inner, key) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        # YAML 1.2: only true and false are booleans; "yes", "on" or 1 meaning true is a YAML 1.1
        # surprise (and "no" for Norway a famous one), so they are refused, not guessed.
        if isinstance(value, str) and value.strip().lower() == "true":
            return True
        if isinstance(value, str) and value.strip().lower() == "false":
            return False
        raise ConfigError(f"Bad value {value!r} for {key!r}: expected true or false.")
    if tp in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"Bad value {value!r} for {key!r}: expected a number.")
        try:
            if tp is int:
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
                return int(value) if not isinstance(value, str) else int(value, 10)
            number = float(parse_fraction(value) if isinstance(value, str) else value)
        except (TypeError, ValueError, ZeroDivisionError):
            raise ConfigError(f"Bad value {value!r} for {key!r}: expected {tp.__name__}.") from None
        # No config field means anything by NaN or infinity; letting one through turns into a
        # diverged run (lr=nan) or a meaningless number minutes later.
        if not math.isfinite(number):
            raise ConfigError(f"Bad value {value!r} for {key!r}: expected a finite number.")
        return number
    if tp is str:
        if isinstance(value, (str, int, float)):
            return str(value)
        raise ConfigError(f"Bad value {value!r} for {key!r}: expected text.")
    return value


def parse_fraction(text: str) -> float:
    """Accept ``8/255`` as well as ``0.03`` for float fields (eps values are written that way).

    The one number parser of every config field and CLI radius (``parse_eps`` uses it too);
    raises ValueError or ZeroDivisionError on bad text.
    """
    text = text.strip()
    if "/" in text:
        num, den = text.split("/", 1)
        return float(num) / float(den)
    return float(text)


def check(condition: bool, message: str) -> None:
    """Config validation in ``__post_init__``: raise ConfigError(message) unless ``condition``."""
    if not condition:
        raise ConfigError(message)


def check_training(cfg: Any, min_epochs: int = 1) -> None:
    """Checks shared by every config with training fields (only the fields a config has).

    Model training (``TrainConfig``) and the iterative unlearning methods repeat the same optimiser
    fields; one set of rules keeps ``weight_decay=-1`` from reaching ``torch.optim`` (whose
    ValueError would otherwise surface as a traceback) in every one of them.
    """
    if hasattr(cfg, "epochs"):
        check(cfg.epochs >= min_epochs, f"epochs must be at least {min_epochs}.")
    if hasattr(cfg, "batch_size"):
        check(cfg.batch_size >= 1, "batch_size must be at least 1.")
    if hasattr(cfg, "lr"):
        check(cfg.lr > 0, "lr must be positive.")
    if hasattr(cfg, "momentum"):
        check(0 <= cfg.momentum < 1, "momentum must be in [0, 1).")
    if hasattr(cfg, "weight_decay"):
        check(cfg.weight_decay >= 0, "weight_decay must be non-negative.")
    if getattr(cfg, "adv_eps", None) is not None:
        check(cfg.adv_eps > 0, "adv_eps must be positive.")
    if hasattr(cfg, "adv_steps"):
        check(cfg.adv_steps >= 1, "adv_steps must be at least 1.")


def from_dict(cls: type[C], data: Mapping[str, Any] | None = None, **overrides: Any) -> C:
    """Build ``cls`` from ``data`` (+ overrides), rejecting unknown keys and coercing types."""
    merged = {**(dict(data) if data else {}), **overrides}
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(merged) - set(fields))
    if unknown:
        raise ConfigError(
            f"Unknown config key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
            f"for {cls.__name__}; valid keys: {', '.join(sorted(fields))}."
        )
    from unlearnbench.core.boundary import check_named

    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints.get(k, Any), k) for k, v in merged.items()}
    for k, v in kwargs.items():
        check_named(k, v)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"Invalid {cls.__name__}: {exc}") from None


# ----------------------------------------------------------------------------- strict YAML


class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader on the YAML 1.2 core schema, refusing duplicate keys.

    PyYAML implements YAML 1.1, where ``010`` is the octal 8, ``1:10`` the base-60 70, ``yes``/``no``
    /``on``/``off`` booleans, ``2024-01-01`` a date and ``<<`` a merge. On the 1.2 core schema these
    are ``10`` and strings; ``1e3`` becomes the float it looks like; ``0o10`` and ``0x1F`` stay
    available for whoever means them. A key given twice is an error, never "the last one wins".
    """


StrictLoader.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in (
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", list("-+0123456789")),
    ("tag:yaml.org,2002:float", r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
     r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", list("-+0123456789.")),
):
    StrictLoader.add_implicit_resolver(_tag, re.compile(_pattern), _first)


def _construct_int(loader: StrictLoader, node: yaml.Node) -> int:
    text = loader.construct_scalar(node)
    if text.startswith(("0o", "0x")):
        return int(text[2:], 8 if text[1] == "o" else 16)
    return int(text, 10)  # "010" is ten: leading zeros are not octal in YAML 1.2


def _construct_float(loader: StrictLoader, node: yaml.Node) -> float:
    text = loader.construct_scalar(node).lower()
    if text.lstrip("+-") == ".inf":
        return -math.inf if text.startswith("-") else math.inf
    if text == ".nan":
        return math.nan
    return float(text)


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping names one key twice: refused even where invalid YAML would fall back to text."""


def _construct_mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, f"a mapping key must be a plain value, not {type(key).__name__}", key_node.start_mark
            ) from None
        if first is not None:
            raise DuplicateKeyError(
                None, None, f"key {key!r} appears twice (first on line {first.start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


StrictLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
StrictLoader.add_constructor("tag:yaml.org,2002:float", _construct_float)
StrictLoader.construct_mapping = _construct_mapping  # type: ignore[method-assign]


def _yaml_problem(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark
        return f"{exc.problem}" + (f", line {mark.line + 1} column {mark.column + 1}" if mark is not None else "")
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def parse_yaml(text: str, where: str) -> Any:
    """Parse ``text`` on the YAML 1.2 core schema (see :class:`StrictLoader`); ConfigError naming ``where``."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - StrictLoader is a SafeLoader
    except (yaml.YAMLError, RecursionError, ValueError, OverflowError) as exc:
        raise ConfigError(f"{where} is not valid YAML ({_yaml_problem(exc)}).") from None


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Parse ``["lr=0.01", "milestones=5,8"]`` into a dict; values are YAML 1.2 scalars (``010`` is 10).

    Text that is not valid YAML stays text (``--set name=a: b``); a key given twice is refused.
    """
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"Bad --set {item!r}: write it as key=value.")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"Bad --set {item!r}: the key is empty.")
        if key in out:
            raise ConfigError(f"--set {key}=… is given twice; keep one.")
        try:
            value = yaml.load(raw, Loader=StrictLoader) if raw.strip() else ""  # noqa: S506 - a SafeLoader
        except (DuplicateKeyError, RecursionError) as exc:
            raise ConfigError(f"--set {key} is not valid YAML ({_yaml_problem(exc)}).") from None
        except (yaml.YAMLError, ValueError, OverflowError):
            value = raw
        out[key] = value
    return out


def load_yaml(path: str | Path, what: str = "Config file") -> dict[str, Any]:
    """A YAML mapping from ``path``: UTF-8 text (``core.boundary.read_text``), strict YAML 1.2."""
    from unlearnbench.core.boundary import read_text

    path = Path(path)
    text = read_text(path, what)
    data = parse_yaml(text, f"{what} {str(path)!r}")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {str(path)!r} must hold a mapping of key: value.")
    return data


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def flatten(data: Mapping[str, Any] | Any, prefix: str = "") -> dict[str, str]:
    """Flatten a config (or nested dict) into ``{"a.b": "value"}`` strings for MLflow params,
    written as ``--set`` takes them (``null``, ``true``, ``0.5,0.75``), never as Python reprs."""
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        data = dataclasses.asdict(data)
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)) and any(isinstance(v, (Mapping, list, tuple)) for v in value):
            # A list of records (a study's methods with their configs): JSON, never a Python repr.
            out[name] = json.dumps(_jsonable(value), sort_keys=True)
        elif isinstance(value, (list, tuple)):
            out[name] = ",".join(map(_scalar, value))
        else:
            out[name] = _scalar(value)
    return out


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
