"""The proxy's ask for a stream's usage, and a provider's refusal of it. Pure.

Every stream is priced: a chat or text completion stream whose client did not ask for usage is sent
with `stream_options.include_usage` set (the client's other `stream_options` kept), and what that
adds to the stream is kept from the client (`proxy.upstream.usage_stream`). A Messages client served
by a chat offer is asked for it by its translation (`proxy.dialects.messages_request`).

Some OpenAI-compatible servers refuse the field. Recorded answers (each the body its source quotes):

    Azure OpenAI        400 {"error": {"message": "Unrecognized request argument supplied: stream_options. ..."}}
                        https://github.com/Pythagora-io/gpt-pilot/issues/1022
    Azure AI Foundry    400 {"detail": "Extra parameters ['stream_options'] are not allowed when
                        extra-parameters is not set or set to be 'error'. ..."}
                        https://github.com/CherryHQ/cherry-studio/issues/9214
    Azure "on your data"  400 "Validation error at #/stream_options: Extra inputs are not permitted"
                        https://github.com/openai/openai-python/issues/2296
    pydantic servers    422 {"detail": [{"type": "extra_forbidden", "loc": ["body", "stream_options"], ...}]}

`refuses_usage_ask` reads such an answer: a 400 or 422 whose error text names `stream_options` or
`include_usage` (in any spelling: `streamOptions`), given that the request carried the proxy's ask
(so a refusal naming the field it added is about that field). The attempt loop then asks the same
offer again at once without it (an offer's limit, not a failure: nothing is recorded against the
offer), and the runtime state remembers the offer (`RuntimeState.refused_usage_ask`) so that later
requests do not pay the round trip; their usage is estimated from the relayed text.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from proxy.failover.judge.error_text import read_error
from proxy.failover.judge.request_terms import normal_name

ASK_NAMES = ("streamoptions", "includeusage")
REFUSAL_STATUSES = frozenset({400, 422})


class UsageAsk(StrEnum):
    """What the proxy did about a stream's usage at the offer that served it."""

    NONE = ""  # nothing: the client asked itself, or the answer is not such a stream
    ASKED = "asked"  # the proxy asked (the client did not), and the offer took the ask
    REFUSED = "refused"  # the offer refuses the ask: asked without it, usage to be estimated


def client_asked_usage(body: Mapping[str, Any]) -> bool:
    """Did the client ask for the stream's usage itself (`stream_options.include_usage: true`)?"""
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def refuses_usage_ask(status: int, body: bytes) -> bool:
    """Is this error answer, to a request that carried the ask, a refusal of `stream_options`?"""
    if status not in REFUSAL_STATUSES:
        return False
    text = read_error(body)
    said = normal_name(" ".join((text.message, *text.fields)))
    return any(name in said for name in ASK_NAMES)
