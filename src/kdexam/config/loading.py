"""Loading a config: a YAML file (safe loading only: :func:`kdexam.paths.load_yaml`), then dotted
overrides (``--set`` and flags), validated with an error that names the unknown key and the
closest valid one, or the invalid value by its config key; and saving the resolved config
(``config.yaml`` in every run directory)."""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from kdexam.errors import KdexamError
from kdexam.paths import atomic_write_text, load_yaml


M = TypeVar("M", bound=BaseModel)


def _submodel(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is not None:
        for arg in get_args(annotation):
            sub = _submodel(arg)
            if sub is not None:
                return sub
    return None


def field_path(model: type[BaseModel], loc: tuple) -> list:
    """The config keys and list indices of a pydantic error's location, without the tags pydantic adds
    for a union's branch or a constrained type (``student.layers.literal['lower',...]`` is ``student.layers``)."""
    path: list = []
    current: type[BaseModel] | None = model
    for part in loc:
        if isinstance(part, int):
            path.append(part)
        elif current is not None and part in current.model_fields:
            path.append(part)
            current = _submodel(current.model_fields[part].annotation)
        else:
            break
    return path


def check_keys(model: type[BaseModel], data: Any, where: str = "") -> None:
    """Raise a :class:`KdexamError` naming the first unknown key and the closest valid one."""
    if not isinstance(data, dict):
        return
    fields = model.model_fields
    for key, value in data.items():
        path = f"{where}{key}"
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.5)
            hint = f"; did you mean '{where}{close[0]}'?" if close else f"; valid keys here: {', '.join(fields)}."
            shown = f"'{path}'" if path.isprintable() else repr(path)  # a key with a newline stays on one line
            raise KdexamError(f"Unknown config key {shown}{hint}")
        sub = _submodel(fields[key].annotation)
        if sub is not None and sub.model_config.get("extra") == "allow":
            continue  # e.g. objective parameters: checked against the objective's own schema when built
        if sub is not None and isinstance(value, list):
            for i, item in enumerate(value):
                check_keys(sub, item, f"{path}[{i}].")
        elif sub is not None:
            check_keys(sub, value, f"{path}.")


def set_dotted(data: dict, dotted: str, value: Any) -> None:
    """Set ``a.b.c`` (``datasets.0.max_train``: an index into a list) in ``data``, in place; a key
    that would go inside a value that is not a mapping (or a list index out of range) is a sentence.
    An empty section (``train:`` with nothing under it, read as null) is an empty mapping."""
    keys = dotted.split(".")
    node: Any = data
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        if isinstance(node, list) and key.lstrip("-").isdigit() and -len(node) <= int(key) < len(node):
            if last:
                node[int(key)] = value
            else:
                node = node[int(key)]
            continue
        if not isinstance(node, dict):
            where = ".".join(keys[:i])
            what = f"a list of {len(node)}" if isinstance(node, list) else "not a mapping"
            raise KdexamError(f"'{dotted}' goes inside '{where}', which is {what}; set '{where}' as a whole"
                              f"{' or index it from 0' if isinstance(node, list) else ''}.")
        if last:
            node[key] = value
        else:
            if node.get(key) is None:
                node[key] = {}
            node = node[key]


def build_config(model: type[M], raw: dict | None = None, overrides: dict[str, Any] | None = None,
                 set_nulls: bool = False) -> M:
    """Validate ``raw`` (a YAML mapping) with ``overrides`` (dotted keys; ``None`` values are flags not
    given and skipped, unless ``set_nulls``: then ``--set key=null`` sets null)."""
    data = copy.deepcopy(dict(raw or {}))
    for key, value in list(data.items()):  # an empty section (``train:`` with its lines commented out) is {}
        field = model.model_fields.get(key) if isinstance(key, str) else None
        if value is None and field is not None and _submodel(field.annotation) is field.annotation:
            data[key] = {}
    for dotted, value in (overrides or {}).items():
        if value is not None or set_nulls:
            set_dotted(data, dotted, value)
    check_keys(model, data)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in field_path(model, err["loc"]))
        if not loc:  # a check across several settings: its message names them
            raise KdexamError(f"The config is invalid: {err['msg'].removeprefix('Value error, ')}.") from None
        raise KdexamError(f"Config value '{loc}' is invalid: {err['msg'].removeprefix('Value error, ')} (got {err.get('input')!r}).") from None


def load_config(model: type[M], path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                set_nulls: bool = False) -> M:
    """Load a YAML config file (safe load) and apply CLI overrides (see :func:`build_config`)."""
    raw: Any = {}
    if path is not None:
        p = Path(path)
        if p.is_dir():
            raise KdexamError(f"Config file '{p}' is a folder; pass the YAML file to --config.")
        if not p.is_file():
            raise KdexamError(f"Config file '{p}' does not exist; check the path given to --config.")
        try:
            raw = load_yaml(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            problem = f" ({e.problem})" if getattr(e, "problem", None) else ""
            raise KdexamError(f"Config file '{p}' is not valid YAML{where}{problem}; fix it.") from None
        except UnicodeDecodeError:
            raise KdexamError(f"Config file '{p}' is not UTF-8 text; save it as UTF-8.") from None
        if not isinstance(raw, dict):
            raise KdexamError(f"Config file '{p}' must hold a mapping of keys to values, not a {type(raw).__name__}.")
    return build_config(model, raw, overrides, set_nulls)


def save_config(cfg: BaseModel, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    atomic_write_text(path, yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
