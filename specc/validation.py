"""Turn pydantic's validation errors into located, readable diagnostics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from specc.errors import Diagnostic, SourcePos, did_you_mean


def _value_text(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def diagnostics_from(
    exc: ValidationError,
    model: type[BaseModel],
    data: dict,
    value_pos: Callable[[tuple], SourcePos],
    key_pos: Callable[[tuple], SourcePos],
    path: str,
    label: str = "",
    what: str = "",
) -> list[Diagnostic]:
    """One diagnostic per offending field (a union's many branch errors are folded into one).

    `value_pos(loc)` / `key_pos(loc)` give the position of a field's value / key, `path` is the
    key path of the validated mapping (`layers[5]`), `what` names it in messages (`conv`).
    """
    fields = model.model_fields
    grouped: dict[tuple, list[Any]] = {}
    for err in exc.errors():
        loc = tuple(err["loc"])
        # Union errors add the branch name to loc (`kernel.int`, `kernel.tuple[...]`): fold them.
        top = loc[:1]
        if loc and loc[0] in fields and fields[loc[0]].annotation is not None:
            nested = _is_nested_model(fields[loc[0]].annotation)
            top = loc[:2] if nested and len(loc) > 1 else loc[:1]
        grouped.setdefault(top, []).append(err)
    out: list[Diagnostic] = []
    for loc, errs in grouped.items():
        first = errs[0]
        field_path = path + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
        field_path = field_path.lstrip(".")
        name = str(loc[-1]) if loc else ""
        if first["type"] == "extra_forbidden":
            choices = [f for f in _fields_at(model, loc[:-1])]
            owner = f" for {what}" if what else ""
            for err in errs:
                key = err["loc"][-1]
                out.append(
                    Diagnostic(
                        key_pos(tuple(err["loc"])),
                        path,
                        f"unknown key '{key}'{owner}{did_you_mean(key, choices)}",
                        label,
                    )
                )
            continue
        desc = _description(model, loc)
        expected = f" — expected {desc}" if desc else ""
        if first["type"] == "missing":
            out.append(Diagnostic(value_pos(loc[:-1]), path, f"missing required '{name}'{expected}", label))
            continue
        value = _lookup(data, loc)
        if len(errs) == 1 and first["type"] not in ("int_type", "bool_type", "literal_error", "string_type"):
            msg = first["msg"][0].lower() + first["msg"][1:]
            text = f"{name} = {_value_text(value)}: {msg}{expected}"
        else:
            text = f"{name} = {_value_text(value)} is not valid{expected}"
        out.append(Diagnostic(value_pos(loc), field_path if len(loc) > 1 else path, text, label))
    return out


def _is_nested_model(annotation) -> bool:
    try:
        return isinstance(annotation, type) and issubclass(annotation, BaseModel)
    except TypeError:
        return False


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    current: Any = model  # a BaseModel class (`_is_nested_model` checked each step)
    for part in loc:
        f = current.model_fields.get(part) if isinstance(part, str) else None
        if f is None or not _is_nested_model(f.annotation):
            return list(current.model_fields)
        current = f.annotation
    return list(current.model_fields)


def _description(model: type[BaseModel], loc: tuple) -> str:
    current: Any = model  # a BaseModel class (`_is_nested_model` checked each step)
    for part in loc:
        if not isinstance(part, str) or part not in current.model_fields:
            return ""
        f = current.model_fields[part]
        if _is_nested_model(f.annotation):
            current = f.annotation
            continue
        return f.description or ""
    return ""


def _lookup(data, loc: tuple):
    current = data
    for part in loc:
        try:
            current = current[part]
        except (KeyError, IndexError, TypeError):
            return None
    return current
