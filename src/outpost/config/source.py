"""YAML loading that remembers where every value came from.

PyYAML's composer gives each node a start mark. The loader turns the node
tree into plain Python data and keeps a map from key path to ``(line,
column)``, so that a validation error can name ``file:line:column``. Only the
safe subset of YAML is accepted: no tags that build Python objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

KeyPath = tuple[str | int, ...]


class ConfigError(Exception):
    """One invalid configuration value, located in its file."""

    def __init__(
        self,
        message: str,
        *,
        file: Path | None = None,
        line: int | None = None,
        column: int | None = None,
        key_path: KeyPath = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        self.key_path = key_path

    def __str__(self) -> str:
        where = str(self.file) if self.file else "<config>"
        if self.line is not None:
            where += f":{self.line}:{self.column or 1}"
        if self.key_path:
            return f"{where}: {format_key_path(self.key_path)}: {self.message}"
        return f"{where}: {self.message}"


class ConfigErrors(Exception):
    """Every error found in one configuration, reported together."""

    def __init__(self, errors: list[ConfigError]) -> None:
        super().__init__("\n".join(str(error) for error in errors))
        self.errors = errors


def format_key_path(key_path: KeyPath) -> str:
    """Render ``("forwarding", "allow", 2, "path")`` as ``forwarding.allow[2].path``."""
    text = ""
    for part in key_path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


@dataclass
class LocatedDocument:
    """Plain data from one YAML file, with the position of every key."""

    file: Path
    data: Any
    positions: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)

    def locate(self, key_path: KeyPath) -> tuple[int, int] | None:
        """Return the position of the deepest known prefix of ``key_path``."""
        for end in range(len(key_path), -1, -1):
            position = self.positions.get(key_path[:end])
            if position is not None:
                return position
        return None

    def error(self, message: str, key_path: KeyPath = ()) -> ConfigError:
        """Build an error located at ``key_path`` in this document."""
        position = self.locate(key_path)
        line, column = position if position else (None, None)
        return ConfigError(
            message, file=self.file, line=line, column=column, key_path=key_path
        )


def load_yaml(file: Path) -> LocatedDocument:
    """Read one YAML file into plain data, recording key positions."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigErrors(
            [ConfigError(f"cannot read file: {exc}", file=file)]
        ) from exc

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigErrors([_yaml_error(file, exc)]) from exc

    document = LocatedDocument(file=file, data=None)
    errors: list[ConfigError] = []
    if node is not None:
        document.data = _to_python(node, (), document, errors)
    if errors:
        raise ConfigErrors(errors)
    return document


def _yaml_error(file: Path, exc: yaml.YAMLError) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is None:
        return ConfigError(f"invalid YAML: {problem}", file=file)
    return ConfigError(
        f"invalid YAML: {problem}",
        file=file,
        line=mark.line + 1,
        column=mark.column + 1,
    )


def _to_python(
    node: yaml.Node,
    key_path: KeyPath,
    document: LocatedDocument,
    errors: list[ConfigError],
) -> Any:
    document.positions[key_path] = (
        node.start_mark.line + 1,
        node.start_mark.column + 1,
    )

    if isinstance(node, yaml.MappingNode):
        return _mapping_to_python(node, key_path, document, errors)
    if isinstance(node, yaml.SequenceNode):
        return [
            _to_python(item, (*key_path, index), document, errors)
            for index, item in enumerate(node.value)
        ]

    # Scalars go through the safe constructor so that `true`, `5`, `1.5` and
    # `null` get their usual YAML types.
    constructor = yaml.SafeLoader("")
    try:
        return constructor.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        errors.append(document.error(f"invalid value: {exc}", key_path))
        return None
    finally:
        constructor.dispose()


def _mapping_to_python(
    node: yaml.MappingNode,
    key_path: KeyPath,
    document: LocatedDocument,
    errors: list[ConfigError],
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            errors.append(
                document.error("mapping keys must be plain strings", key_path)
            )
            continue
        key = str(key_node.value)
        child_path = (*key_path, key)
        if key in result:
            line = key_node.start_mark.line + 1
            column = key_node.start_mark.column + 1
            errors.append(
                ConfigError(
                    f"duplicate key {key!r}; each key may appear once",
                    file=document.file,
                    line=line,
                    column=column,
                    key_path=child_path,
                )
            )
            continue
        result[key] = _to_python(value_node, child_path, document, errors)
        # The key's own position is more useful than the value's for
        # "unknown key" errors, so it wins.
        document.positions[child_path] = (
            key_node.start_mark.line + 1,
            key_node.start_mark.column + 1,
        )
    return result
