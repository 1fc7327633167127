"""Turn pydantic's validation errors into located, readable diagnostics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, Tag, ValidationError

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
    branches: dict[tuple, tuple[str, type[BaseModel]]] = {}  # a tagged union's mapping: its tag, its model
    for err in exc.errors():
        loc, branch = _untagged(model, tuple(err["loc"]))
        err = {**err, "loc": loc}
        # Union errors add the branch name to loc (`kernel.int`, `kernel.tuple[...]`): fold them.
        top = loc[:1]
        if branch is not None:
            top = loc[:2]
            branches[top] = branch
        elif loc and loc[0] in fields and fields[loc[0]].annotation is not None:
            nested = _is_nested_model(fields[loc[0]].annotation)
            top = loc[:2] if nested and len(loc) > 1 else loc[:1]
        grouped.setdefault(top, []).append(err)
    out: list[Diagnostic] = []
    for loc, errs in grouped.items():
        first = errs[0]
        branch = branches.get(loc)
        field_path = path + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
        field_path = field_path.lstrip(".")
        name = str(loc[-1]) if loc else ""
        if first["type"] == "extra_forbidden":
            choices = [f for f in _fields_at(model, loc[:-1])] if branch is None else list(branch[1].model_fields)
            owner = f" for {branch[0] if branch else what}" if branch or what else ""
            owner_path = field_path.rsplit(".", 1)[0] if branch else path  # `layers[1].activation`
            for err in errs:
                key = err["loc"][-1]
                out.append(
                    Diagnostic(
                        key_pos(tuple(err["loc"])),
                        owner_path,
                        f"unknown key '{key}'{owner}{did_you_mean(key, choices)}",
                        label,
                    )
                )
            continue
        owner_model = branch[1] if branch else model
        desc = _description(owner_model, loc[-1:] if branch else loc)
        expected = f" — expected {desc}" if desc else ""
        if first["type"] == "missing":
            out.append(Diagnostic(value_pos(loc[:-1]), path, f"missing required '{name}'{expected}", label))
            continue
        value = _lookup(data, loc)
        shown = _value_text(value)
        if value is _ABSENT:  # a default that a check across fields refused (hardtanh's max_val)
            default = owner_model.model_fields[name].default if name in owner_model.model_fields else None
            shown = f"{_value_text(default)} (the default)"
        if len(errs) == 1 and first["type"] not in _NOT_VALID:
            msg = first["msg"][0].lower() + first["msg"][1:]
            text = f"{name} = {shown}: {msg}{expected}"
        else:
            text = f"{name} = {shown} is not valid{expected}"
        out.append(Diagnostic(value_pos(loc), field_path if len(loc) > 1 else path, text, label))
    return out


# Error types whose pydantic message adds nothing to "is not valid — expected ...".
_NOT_VALID = ("int_type", "bool_type", "literal_error", "string_type", "union_tag_invalid", "union_tag_not_found")
_ABSENT = object()  # `_lookup` of a key the data does not have


def _tagged_branches(annotation) -> dict[str, Any]:
    """The members of a tagged union (`Annotated[X, Tag("x")]`), by tag; empty for other types."""
    branches: dict[str, Any] = {}
    for arg in get_args(annotation) if get_origin(annotation) is Union else ():
        if get_origin(arg) is Annotated:
            inner, *meta = get_args(arg)
            branches.update({m.tag: inner for m in meta if isinstance(m, Tag)})
    return branches


def _untagged(model: type[BaseModel], loc: tuple) -> tuple[tuple, tuple[str, type[BaseModel]] | None]:
    """pydantic names the branch of a tagged union in loc (`activation.elu.alpha`,
    `activation.name`): the loc without it, and (tag, model) when the branch is a model (a
    mapping such as `{type: elu, alpha: 0.5}`, which owns the rest of loc)."""
    if len(loc) < 2 or not isinstance(loc[0], str) or loc[0] not in model.model_fields:
        return loc, None
    branches = _tagged_branches(model.model_fields[loc[0]].annotation)
    if not isinstance(loc[1], str) or loc[1] not in branches:
        return loc, None
    inner = branches[loc[1]]
    return (loc[0], *loc[2:]), ((loc[1], inner) if _is_nested_model(inner) and len(loc) > 2 else None)


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
            return _ABSENT if isinstance(current, dict) else None
    return current
