"""The names a request used, so that a refusal which names one of them can be recognised. Pure.

A provider that does not know a field says so in its own words, but it names the field as the
request spelt it, or in its own case: `presence_penalty` comes back as `presencePenalty`
(xAI), `body.maxTokens` (Cerebras), `'store'` (Groq), `Unknown name "top_k"` (Google). Names are
compared in one normal form, lowercase letters and digits only, so every spelling of one name is
the same name. Model ids are compared as lowercase substrings.

Read only when an attempt was refused (never on the path of an answer), and bounded: the first
`MAX_ITEMS` messages, tools and content parts, `MAX_DEPTH` levels of nesting.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from proxy.failover.client_request import ClientRequest
from proxy.types import Offer

MAX_ITEMS = 64
MAX_DEPTH = 4
MAX_NAMES = 512
# The request's substance, named in nearly every complaint about its shape: never evidence on their own.
SUBSTANCE = frozenset({"model", "messages", "input", "prompt", "content", "role", "text", "type"})
ORDINARY_ROLES = frozenset({"user", "assistant"})
# Keys every tool definition has: a refusal that names them is about the tool, not about a name it lacks.
SCHEMA_WORDS = frozenset(
    {"type", "description", "properties", "required", "name", "parameters", "function", "items", "enum", "title"}
)
NOT_NAME = re.compile(r"[^a-z0-9]")


def normal_name(name: str) -> str:
    """`presencePenalty`, `presence_penalty` and `presence-penalty` are one name: `presencepenalty`."""
    return NOT_NAME.sub("", name.lower())


@dataclass(frozen=True, slots=True)
class RequestTerms:
    names: frozenset[str]  # normal forms of the fields, parameters, tools, roles and part types it used
    models: tuple[str, ...]  # lowercase model ids it was sent with or asked for
    parts: frozenset[str] = frozenset()  # content part types beyond text (`imageurl`, `inputaudio`, `file`)

    def names_model(self, text: str) -> bool:
        """Does `text` (lowercase) name one of the request's model ids?"""
        return any(model in text for model in self.models)


NO_TERMS = RequestTerms(frozenset(), ())


def request_terms(body: Mapping[str, Any] | None, models: Iterable[str]) -> RequestTerms:
    """The names `body` (a parsed JSON request; None for a form) used, and the model ids (the offer's
    and the canonical one; an id's last path segment too, `deepseek/deepseek-r1` -> `deepseek-r1`)."""
    names: set[str] = set()
    parts: set[str] = set()
    if body is not None:
        for key, value in body.items():
            if key not in SUBSTANCE:
                _add(names, key)
                _nested(names, key, value, 1)
        _messages(names, parts, body.get("messages"))
        _tools(names, body.get("tools"))
        _choice(names, body.get("tool_choice"))
    ids: dict[str, None] = {}
    for model in models:
        lowered = model.lower()
        for candidate in (lowered, lowered.rsplit("/", 1)[-1]):
            if len(candidate) >= 4:
                ids[candidate] = None
    return RequestTerms(frozenset(n for n in names if n), tuple(ids), frozenset(parts))


def terms_for(request: object, offer: Offer) -> RequestTerms:
    """The terms of a request as sent to `offer` (a form upload has no JSON body: its model ids only)."""
    body = request.body if isinstance(request, ClientRequest) else None
    asked = getattr(request, "model", "")
    return request_terms(body, (offer.provider_model_id, offer.model_id, asked if isinstance(asked, str) else ""))


def _add(names: set[str], name: str) -> None:
    if len(names) < MAX_NAMES:
        names.add(normal_name(name))


def _nested(names: set[str], parent: str, value: Any, depth: int) -> None:
    """The keys of a field's object value (`stream_options.include_usage`), also joined to the
    parent (`reasoning.effort` -> `reasoningeffort`), and the value of its `type` (`json_schema`)."""
    if depth > MAX_DEPTH:
        return
    if isinstance(value, dict):
        for key, item in list(value.items())[:MAX_ITEMS]:
            if key not in SCHEMA_WORDS:
                _add(names, key)
            if depth == 1:
                _add(names, parent + key)
            if key == "type" and depth == 1 and isinstance(item, str):  # `response_format.type`, not a schema's
                _add(names, item)
            _nested(names, key, item, depth + 1)
    elif isinstance(value, list):
        for item in value[:MAX_ITEMS]:
            _nested(names, parent, item, depth + 1)


def _messages(names: set[str], parts: set[str], messages: Any) -> None:
    """Fields a message carries beyond role and content (`reasoning_content`, `name`, `tool_calls`),
    roles other than user and assistant (`developer`, `system`, `tool`), and content part types
    (`image_url`, `input_audio`, `file`) with their own fields."""
    if not isinstance(messages, list):
        return
    for message in messages[:MAX_ITEMS]:
        if not isinstance(message, dict):
            continue
        for key in message:
            if key not in SUBSTANCE:
                _add(names, key)
        role = message.get("role")
        if isinstance(role, str) and role not in ORDINARY_ROLES:
            _add(names, role)
        content = message.get("content")
        if isinstance(content, list):
            for part in content[:MAX_ITEMS]:
                if isinstance(part, dict):
                    _part(names, parts, part)


def _part(names: set[str], parts: set[str], part: dict[str, Any]) -> None:
    kind = part.get("type")
    if isinstance(kind, str):
        _add(names, kind)
        if kind != "text":
            parts.add(normal_name(kind))
    for key in part:
        if key not in SUBSTANCE:
            _add(names, key)


def _tools(names: set[str], tools: Any) -> None:
    """Tool types and names, and every key of their definitions (a JSON-schema keyword such as
    `additionalProperties` that a provider does not know is named back in its refusal)."""
    if not isinstance(tools, list):
        return
    for tool in tools[:MAX_ITEMS]:
        if isinstance(tool, dict):
            kind = tool.get("type")
            if isinstance(kind, str):
                _add(names, kind)
            function = tool.get("function")
            if isinstance(function, dict) and isinstance(function.get("name"), str):
                _add(names, function["name"])
            _nested(names, "tools", tool, 1)


def _choice(names: set[str], choice: Any) -> None:
    if isinstance(choice, str):
        _add(names, choice)
