"""JSON Schema (draft 2020-12) of the provider and hosts files, for editors.

The schemas are generated from the same pydantic models that the loader
validates with, then widened where the loader accepts more than the models
declare: older key names (``pattern``, ``method``, ``can_trade``,
``user_env``), a bare string as an allow rule, lower-case methods and auth type
aliases. ``auth`` is a ``oneOf`` over every registered auth type, each branch
fixed by its ``type`` value, so a scheme registered later appears as soon as
the schema is generated again.

The schema is a help for editors, never the validator: the loader remains the
authority, and a file the schema accepts may still fail ``outpost check``
(an unset variable, a pattern with two ``**``). The reverse must not happen:
every file the loader accepts must pass the schema.
"""

from __future__ import annotations

import copy
import json
import typing
from typing import Any

from pydantic import AliasChoices, BaseModel

from outpost.config.models import (
    HTTP_METHODS,
    AllowRule,
    HostsFile,
    ProviderFile,
)

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
PROVIDER_SCHEMA_FILE = "provider.schema.json"
HOSTS_SCHEMA_FILE = "hosts.schema.json"

JsonObject = dict[str, Any]

# Hover text for editors: the keys a user types, since class docstrings are
# left out of the schema.
FIELD_DESCRIPTIONS: dict[str, dict[str, str]] = {
    "ProviderFile": {
        "name": "Provider name, matched case-insensitively: /p/<name>/... or "
        "X-Provider: <name>.",
        "base_url": "Upstream http(s) URL, may carry a path prefix such as "
        "https://slack.com/api.",
        "auth": "How the credential is injected; 'type' selects the scheme.",
        "description": "Free text shown by 'outpost providers'.",
        "docs_url": "Link to the vendor's API documentation.",
        "enabled": "false keeps the file loaded but the provider unreachable.",
        "default_headers": "Headers set on every upstream request, replacing "
        "the agent's value. Never put a secret here.",
        "strip_response_headers": "Response header names removed before the "
        "answer reaches the agent.",
        "forwarding": "Which paths are forwarded and how they are classified.",
        "timeouts": "Upstream timeouts in seconds.",
        "version": "Optional schema version of this file.",
    },
    "Forwarding": {
        "mode": "transparent forwards every path not denied; allowlist "
        "forwards only paths matching an allow rule, else 404.",
        "allow": "Allow rules, first match wins.",
        "deny": "Path patterns rejected for every method, checked first.",
        "treat_writes_as_sensitive": "Transparent mode: every method other "
        "than GET, HEAD and OPTIONS is sensitive.",
        "default_cache_ttl": "Transparent mode: cache TTL in seconds for GET.",
        "default_category": "Transparent mode: rate-limit category.",
        "rate_limits": "Map of category to token-bucket windows; replaces the "
        "default of 50 per second and 500 per minute.",
        "allow_path_parameters": "Forward paths that contain ';' parameters.",
    },
    "AllowRule": {
        "path": "Pattern: '*' one segment, '**' across segments, '{name}' "
        "equals '*'; the whole canonical path must match.",
        "methods": "HTTP methods this rule admits; omit or '*' for any.",
        "category": "Rate-limit category of matching requests.",
        "cache_ttl": "Seconds a 2xx GET or HEAD answer is cached.",
        "sensitive": "Only hosts with can_call_sensitive may make this call.",
    },
    "RateWindow": {
        "capacity": "Requests allowed per window.",
        "window_ms": "Window length in milliseconds.",
    },
    "HostEntry": {
        "id": "Caller id, unique in the file; shown in the access log.",
        "cidrs": "Source networks of this caller, for example 10.0.1.0/24.",
        "auth_token_env": "Variable holding the pre-shared key the caller "
        "sends in X-Outpost-Auth.",
        "can_call_sensitive": "Allow calls marked sensitive (payments, "
        "trades, deletes).",
        "providers": "Provider names this caller may use; omit for all.",
        "description": "Free text.",
    },
}


def provider_schema() -> JsonObject:
    """Return the JSON Schema of one provider file."""
    # Importing the package registers every built-in auth scheme.
    import outpost.auth  # noqa: F401
    from outpost.auth.base import AUTH_TYPE_ALIASES, AUTH_TYPES

    schema = _model_schema(ProviderFile)
    defs: JsonObject = schema.setdefault("$defs", {})

    branches = []
    for type_name in sorted(AUTH_TYPES):
        aliases = sorted(
            alias for alias, target in AUTH_TYPE_ALIASES.items() if target == type_name
        )
        def_name = f"auth_{type_name}"
        defs[def_name] = _auth_schema(AUTH_TYPES[type_name].config_model, defs)
        defs[def_name]["properties"]["type"] = {"enum": [type_name, *aliases]}
        defs[def_name]["title"] = f"auth type {type_name}"
        branches.append({"$ref": f"#/$defs/{def_name}"})
    schema["properties"]["auth"] = {
        "description": FIELD_DESCRIPTIONS["ProviderFile"]["auth"],
        "oneOf": branches,
    }

    _widen_allow_rule(defs)
    schema["properties"]["name"]["pattern"] = "^[A-Za-z0-9][A-Za-z0-9_-]*$"
    schema["properties"]["base_url"]["pattern"] = "^[Hh][Tt][Tt][Pp][Ss]?://"
    return _with_header(schema, "Outpost provider file")


def hosts_schema() -> JsonObject:
    """Return the JSON Schema of the hosts file."""
    schema = _model_schema(HostsFile)
    return _with_header(schema, "Outpost hosts file")


def render(schema: JsonObject) -> str:
    """Serialise a schema the way ``outpost schema`` writes it."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def _with_header(schema: JsonObject, title: str) -> JsonObject:
    header: JsonObject = {"$schema": SCHEMA_DIALECT, "title": title}
    schema.pop("title", None)
    return {**header, **schema}


def _model_schema(model: type[BaseModel]) -> JsonObject:
    schema = model.model_json_schema(ref_template="#/$defs/{model}")
    defs = schema.get("$defs", {})
    # Class docstrings describe code, not keys, and rewording one must not
    # make the committed schema stale.
    for node in (schema, *defs.values()):
        node.pop("description", None)
    for cls in _reachable_models(model):
        node = schema if cls is model else defs.get(cls.__name__)
        if node is not None:
            _describe_fields(cls, node)
            _add_alias_keys(cls, node)
    return schema


def _auth_schema(config_model: type[BaseModel], defs: JsonObject) -> JsonObject:
    schema = _model_schema(config_model)
    for name, node in schema.pop("$defs", {}).items():
        existing = defs.get(name)
        if existing is not None and existing != node:
            raise ValueError(
                f"two auth config models define different schemas named {name!r}; "
                "rename one of the classes"
            )
        defs[name] = node
    schema.pop("title", None)
    required = schema.setdefault("required", [])
    if "type" not in required:
        required.insert(0, "type")
    return schema


def _reachable_models(model: type[BaseModel]) -> list[type[BaseModel]]:
    """Return ``model`` and every model its fields refer to, depth first."""
    found: list[type[BaseModel]] = []
    pending: list[Any] = [model]
    while pending:
        annotation = pending.pop()
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation in found:
                continue
            found.append(annotation)
            pending.extend(info.annotation for info in annotation.model_fields.values())
            continue
        pending.extend(typing.get_args(annotation))
    return found


def _describe_fields(model: type[BaseModel], node: JsonObject) -> None:
    descriptions = FIELD_DESCRIPTIONS.get(model.__name__, {})
    for name, text in descriptions.items():
        properties = node.get("properties", {})
        if name in properties:
            properties[name]["description"] = text
            properties[name].pop("title", None)


def _add_alias_keys(model: type[BaseModel], node: JsonObject) -> None:
    """Allow each older key name wherever its current name is allowed."""
    properties = node.get("properties", {})
    for name, info in model.model_fields.items():
        alias = info.validation_alias
        if not isinstance(alias, AliasChoices):
            continue
        names = list(dict.fromkeys([name, *map(str, alias.choices)]))
        present = next((key for key in names if key in properties), None)
        if present is None:
            continue
        others = [key for key in names if key != present]
        for other in others:
            alias_node = copy.deepcopy(properties[present])
            alias_node["description"] = f"Older name of '{present}'."
            alias_node["deprecated"] = True
            properties[other] = alias_node
        required = node.get("required", [])
        if others and present in required:
            required.remove(present)
            if not required:
                node.pop("required")
            node.setdefault("allOf", []).append(
                {"anyOf": [{"required": [key]} for key in (present, *others)]}
            )


def _widen_allow_rule(defs: JsonObject) -> None:
    """Accept the short forms that :class:`AllowRule` normalises before use."""
    rule = defs[AllowRule.__name__]
    methods = sorted(HTTP_METHODS) + sorted(m.lower() for m in HTTP_METHODS) + ["*"]
    method = {"enum": methods}
    method_list = {"anyOf": [method, {"type": "array", "items": method}]}
    properties = rule["properties"]
    properties["methods"] = {
        **method_list,
        "description": FIELD_DESCRIPTIONS["AllowRule"]["methods"],
    }
    properties["method"] = {
        **method_list,
        "description": "Older single-method spelling of 'methods'.",
        "deprecated": True,
    }
    rule["not"] = {"required": ["method", "methods"]}
    defs[AllowRule.__name__] = {
        "anyOf": [
            {"type": "string", "description": "A pattern admitting any method."},
            rule,
        ]
    }
