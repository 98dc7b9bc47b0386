"""Questions for an auth block, derived from the auth type's ``config_model``.

Each field of the model becomes one question chosen by its annotation, so a
newly registered scheme is asked about without changes here. A literal
secret (a field named ``value`` or typed ``SecretStr``) is never asked: the
wizard writes variable names only, and the secret stays in the environment.
Fields whose name contains the word ``env`` are asked as variable names.
Optional fields are asked only when the user chooses to change them, and an
answer equal to the default is left out of the file.
"""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, SecretBytes, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from rich.console import Console

from outpost.auth.base import AuthModule
from outpost.cli.prompts import (
    Parser,
    ask_choice,
    ask_confirm,
    ask_parsed,
    ask_text,
    clean_message,
    optional,
    parse_env_name,
    parse_int,
)

SECRET_LITERAL_FIELDS = frozenset({"value"})


def ask_auth(
    auth_class: type[AuthModule], provider: str, console: Console
) -> dict[str, Any]:
    """Ask for every field of ``auth_class``'s config until the block validates.

    After a failed validation every field is asked, optional ones included,
    because the fix is often an optional key (``signature_header`` or
    ``signature_param``, say).
    """
    model = auth_class.config_model
    ask_all = False
    while True:
        answers: dict[str, Any] = {"type": auth_class.type_name}
        answers.update(ask_model_fields(model, provider, {"type"}, ask_all))
        try:
            model.model_validate(answers)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                where = ".".join(str(part) for part in error["loc"]) or "auth"
                message = clean_message(error["msg"])
                console.print(f"auth {where}: {message}", style="red", markup=False)
            console.print("Answer the auth questions again, optional ones included.")
            ask_all = True
            continue
        return answers


def ask_model_fields(
    model: type[BaseModel],
    provider: str,
    skip: set[str] | None = None,
    ask_all: bool = False,
    section: str = "auth",
) -> dict[str, Any]:
    """Ask required and variable fields, then optional ones on request."""
    fields = {
        name: info
        for name, info in model.model_fields.items()
        if name not in (skip or set()) and not _is_secret_literal(name, info)
    }
    has_literal = any(
        _is_secret_literal(name, info) for name, info in model.model_fields.items()
    )
    answers: dict[str, Any] = {}

    main = [n for n, i in fields.items() if _is_main(n, i, has_literal)]
    for name in main:
        required = _is_required(name, fields[name], has_literal)
        value = ask_field(name, fields[name], provider, required)
        if value is not None:
            answers[name] = value

    extra = [name for name in fields if name not in main]
    if not extra:
        return answers
    question = f"Change optional {section} settings ({', '.join(extra)})?"
    if ask_all or ask_confirm(question, False):
        for name in extra:
            value = ask_field(name, fields[name], provider, required=False)
            if value is not None and value != _default(fields[name]):
                answers[name] = value
    return answers


def ask_field(name: str, info: FieldInfo, provider: str, required: bool) -> Any:
    """Ask one field by its annotation; return None when left empty."""
    annotation = _as_text_type(_unwrap_optional(info.annotation))
    default = _default(info)
    label = _label(name, info, required, default)

    if _is_variable(name):
        return _ask_variable(label, name, provider, required)
    if annotation is bool:
        return ask_confirm(label, bool(default) if default is not None else False)
    if typing.get_origin(annotation) is Literal:
        values = [str(item) for item in typing.get_args(annotation)]
        return ask_choice(label, [(value, value, "") for value in values])
    if annotation in (int, float):
        return _ask_number(label, annotation is int, default, required)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if not required and not ask_confirm(f"Set {name}?", False):
            return None
        return ask_model_fields(annotation, provider, section=name)
    origin = typing.get_origin(annotation)
    if origin is list:
        return _ask_list(label, annotation, default, required)
    if origin is dict and typing.get_args(annotation)[1:] in ((), (Any,)):
        return _ask_yaml(label, required, mapping=True)
    if origin is dict:
        return _ask_mapping(name, annotation, provider, required)
    if annotation is str and required:
        return ask_parsed(label, _parse_required_text)
    if annotation is str:
        # Not stripped, because a prefix such as "Bearer " ends in a space.
        text = ask_text(label, "" if default is None else str(default))
        return None if text == "" and not default else text
    return _ask_yaml(label, required)


def _ask_variable(label: str, field: str, provider: str, required: bool) -> Any:
    message = f"{label} (variable NAME, never the secret)"
    if required:
        suggestion = _suggest_variable(provider, field)
        return ask_parsed(message, parse_env_name, suggestion)
    return ask_parsed(message, optional(parse_env_name))


def _ask_number(label: str, whole: bool, default: Any, required: bool) -> Any:
    parse_number: Parser[float] = parse_int(0) if whole else _parse_float
    shown = "" if default is None else str(default)
    if required:
        return ask_parsed(label, parse_number, shown)
    return ask_parsed(label, optional(parse_number), shown)


def _is_secret_literal(name: str, info: FieldInfo) -> bool:
    annotation = _unwrap_optional(info.annotation)
    return name in SECRET_LITERAL_FIELDS or annotation in (SecretStr, SecretBytes)


def _is_variable(name: str) -> bool:
    return "env" in name.split("_")


def _is_required(name: str, info: FieldInfo, has_literal: bool) -> bool:
    # ``env`` is optional in models that also accept a literal ``value``; the
    # wizard never writes a literal, so there the variable is required.
    return info.is_required() or (name == "env" and has_literal)


def _is_main(name: str, info: FieldInfo, has_literal: bool) -> bool:
    return _is_required(name, info, has_literal) or _is_variable(name)


def _default(info: FieldInfo) -> Any:
    if info.default is not PydanticUndefined:
        return info.default
    if info.default_factory is not None:
        return info.default_factory()  # type: ignore[call-arg]
    return None


def _label(name: str, info: FieldInfo, required: bool, default: Any) -> str:
    # The key comes first, because it is what the user will see in the file.
    text = f"{name} ({info.description})" if info.description else name
    if not required and default in (None, "", [], {}):
        text += " (optional, Enter to skip)"
    return text


def _suggest_variable(provider: str, field: str) -> str:
    stem = provider.upper().replace("-", "_")
    words = [word for word in field.split("_") if word != "env"]
    suffix = "_".join(words).upper() or "TOKEN"
    return f"{stem}_{suffix}"


def _unwrap_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation


def _as_text_type(annotation: Any) -> Any:
    # A path, or a union that accepts a string (``int | str`` ids, a scope
    # given as text or list), is asked as plain text.
    if annotation is Path:
        return str
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    if union and str in typing.get_args(annotation):
        return str
    return annotation


def _parse_float(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None


def _parse_required_text(text: str) -> str:
    if not text.strip():
        raise ValueError("a value is required")
    return text.strip()


def _ask_list(label: str, annotation: Any, default: Any, required: bool) -> Any:
    (item_type,) = typing.get_args(annotation) or (str,)
    shown = ", ".join(str(item) for item in default) if default else ""

    def parse(text: str) -> list[Any] | None:
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items:
            if required:
                raise ValueError("enter at least one item, separated by commas")
            return None
        if item_type is int:
            return [parse_int(0)(item) for item in items]
        return items

    return ask_parsed(f"{label} (comma-separated)", parse, shown)


def _ask_mapping(name: str, annotation: Any, provider: str, required: bool) -> Any:
    _, value_type = typing.get_args(annotation) or (str, Any)
    result: dict[str, Any] = {}
    while True:
        key = ask_parsed(
            f"{name}: next key (Enter to finish)", optional(_parse_required_text)
        )
        if key is None:
            if required and not result:
                print(f"{name} needs at least one entry", file=sys.stderr)
                continue
            return result or None
        if isinstance(value_type, type) and issubclass(value_type, BaseModel):
            result[key] = ask_model_fields(value_type, provider, section=key)
        elif value_type is str:
            result[key] = ask_parsed(f"{name}: value of {key}", _parse_required_text)
        else:
            result[key] = _ask_yaml(f"{name}: value of {key}", True)


def _ask_yaml(label: str, required: bool, mapping: bool = False) -> Any:
    def parse(text: str) -> Any:
        if not text.strip():
            if required:
                raise ValueError("a value is required")
            return None
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"not valid YAML: {exc.__class__.__name__}") from None
        if mapping and not isinstance(value, dict):
            raise ValueError("expected a mapping such as {key: value}")
        return value

    return ask_parsed(f"{label} (YAML, e.g. {{key: value}})", parse)
