"""The access line is put together from cached JSON string literals: it must stay byte for byte what
orjson writes for the same fields, whatever the client's model name holds."""

from __future__ import annotations

import orjson
import pytest

from proxy.http.handler import Exchange, _log_line
from proxy.types import Attempt

MODELS = ["gpt-4", 'say "hi"', "back\\slash", "tab\there", "new\nline", "\x01\x1f control", "ünïcödé 模型",
          "\u2028\u2029 separators", "emoji 🚀", "", "a" * 256, "</script>"]


def _reference(ex: Exchange, elapsed: float) -> str:
    return orjson.dumps(
        {
            "request_id": ex.request_id,
            "route": ex.route,
            "model": ex.model,
            "provider": ex.provider or None,
            "attempts": len(ex.attempts),
            "tried": [f"{a.provider}:{a.outcome}" for a in ex.attempts],
            "status": ex.status,
            "outcome": ex.outcome,
            "latency_ms": round(elapsed * 1000, 2),
        }
    ).decode()


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("elapsed", [0.0, 0.000004, 0.00035, 0.123456, 1.5, 20.0, 12345.678])
def test_access_line_is_what_orjson_writes(model: str, elapsed: float) -> None:
    ex = Exchange(route="/v1/chat/completions", request_id="3f2a9c1e" * 4, started=0.0, model=model,
                  status=200, outcome="ok", provider="openrouter")
    ex.attempts = [Attempt("groq", "m", "503", 1.0), Attempt("openrouter", "m", "ok", 2.0)]
    line = _log_line(ex, elapsed)
    assert line == _reference(ex, elapsed)
    assert orjson.loads(line)["model"] == model


def test_access_line_without_a_provider_or_attempts() -> None:
    ex = Exchange(route="/v1/embeddings", request_id="req-1.a_b", started=0.0, model='x"y', status=400,
                  outcome="bad_request")
    assert _log_line(ex, 0.01) == _reference(ex, 0.01)
    assert orjson.loads(_log_line(ex, 0.01))["provider"] is None
