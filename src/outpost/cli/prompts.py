"""Terminal questions for the interactive wizard, each validated in place.

Every question re-asks until its answer parses: a parser raises ValueError
with the message shown under the prompt, and the same parser turns the
accepted text into the value, so validation and conversion never disagree.
Ctrl-C raises KeyboardInterrupt to the caller, which decides what to print.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import questionary
from pydantic import BaseModel, ValidationError

T = TypeVar("T")
Parser = Callable[[str], T]

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def ask_parsed(message: str, parse: Parser[T], default: str = "") -> T:
    """Ask for text until ``parse`` accepts it; return the parsed value."""

    def validate(text: str) -> bool | str:
        try:
            parse(text)
        except ValueError as exc:
            return str(exc)
        return True

    answer = questionary.text(message, default=default, validate=validate).unsafe_ask()
    return parse(str(answer))


def ask_text(message: str, default: str = "") -> str:
    """Ask for free text; any answer, even empty, is accepted."""
    return str(questionary.text(message, default=default).unsafe_ask())


def ask_confirm(message: str, default: bool) -> bool:
    """Ask a yes/no question."""
    return bool(questionary.confirm(message, default=default).unsafe_ask())


def ask_choice(message: str, choices: Sequence[tuple[str, str, str]]) -> str:
    """Ask to pick one of ``(value, title, description)``; typing filters."""
    options = [
        questionary.Choice(title=title, value=value, description=description or None)
        for value, title, description in choices
    ]
    answer = questionary.select(
        message,
        choices=options,
        use_search_filter=True,
        use_jk_keys=False,
        instruction="(arrow keys or type to filter, Enter to pick)",
    ).unsafe_ask()
    return str(answer)


def parse_int(minimum: int) -> Parser[int]:
    """Return a parser for a whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise ValueError(f"{value} is too small; enter {minimum} or more")
        return value

    return parse


def parse_seconds(text: str) -> float:
    """Parse a non-negative number of seconds; whole numbers stay int."""
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{text!r} must be a finite number of seconds, 0 or more")
    return int(value) if value.is_integer() else value


def parse_env_name(text: str) -> str:
    """Parse an environment variable name such as ``GITHUB_TOKEN``."""
    name = text.strip()
    if not ENV_NAME.fullmatch(name):
        raise ValueError(
            f"{text!r} is not a variable name; use letters, digits and '_', "
            "for example GITHUB_TOKEN (the name, never the secret itself)"
        )
    return name


def optional(parse: Parser[T]) -> Parser[T | None]:
    """Return ``parse`` that also accepts an empty answer as None."""

    def parse_optional(text: str) -> T | None:
        return None if not text.strip() else parse(text)

    return parse_optional


def parse_with_model(model: type[BaseModel], key: str) -> Parser[Any]:
    """Return a parser that runs ``model``'s validators for field ``key`` alone.

    The value comes back normalised the way the loader stores it, for
    example a provider name in lower case.
    """

    def parse(text: str) -> Any:
        try:
            validated = model.__pydantic_validator__.validate_assignment(
                model.model_construct(), key, text.strip()
            )
        except ValidationError as exc:
            raise ValueError(clean_message(exc.errors()[0]["msg"])) from None
        return getattr(validated, key)

    return parse


def clean_message(message: str) -> str:
    """Drop pydantic's ``Value error, `` prefix from a validation message."""
    return message.removeprefix("Value error, ")
