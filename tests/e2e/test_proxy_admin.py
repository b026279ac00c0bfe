"""Admin views, metrics and logs: what an operator sees, and that no secret is ever in it."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import pytest

from proxy.mock.testing import refused_url
from tests.harness import CapturedLogs, ProxyServer, gateway_config

SECRETS = {
    "A_API_KEY": "sk-live-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "B_API_KEY": "sk-live-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
    "C_API_KEY": "sk-live-cccccccccccccccccccccccccccccc",
    "FAILOVER_ADMIN_TOKEN": "admin-token-zzzzzzzzzzzzzzzz",
    "FAILOVER_API_KEYS": "client-key-yyyyyyyyyyyyyyyyy",
}
ADMIN = {"authorization": f"Bearer {SECRETS['FAILOVER_ADMIN_TOKEN']}"}
CLIENT = {"authorization": f"Bearer {SECRETS['FAILOVER_API_KEYS']}"}
MESSAGES: Any = [{"role": "user", "content": "hi"}]


@pytest.fixture
def operated(mock_provider: Any, proxy_server: Any) -> tuple[dict[str, Any], ProxyServer]:
    mocks = {"a": mock_provider("a", fault="status", status=500), "b": mock_provider("b")}
    providers = [("a", mocks["a"].url), ("b", mocks["b"].url), ("c", refused_url())]
    config = gateway_config(providers, {"gpt-4": ["a", "b", "c"], "gpt-3.5-turbo": ["b"]}, env=SECRETS)
    return mocks, proxy_server(config)


def test_admin_is_refused_without_a_configured_token(mock_provider: Any, proxy_server: Any) -> None:
    mock = mock_provider("a")
    proxy = proxy_server(gateway_config([("a", mock.url)]))
    for path in ("/admin/failover/status", "/admin/failover/model/gpt-4", "/admin/providers"):
        response = httpx.get(proxy.base + path)
        assert response.status_code == 403
        assert "FAILOVER_ADMIN_TOKEN" in response.json()["error"]["message"]


def test_admin_wants_the_right_token(operated: Any) -> None:
    _, proxy = operated
    assert httpx.get(f"{proxy.base}/admin/providers").status_code == 401
    assert httpx.get(f"{proxy.base}/admin/providers", headers={"authorization": "Bearer nope"}).status_code == 401
    assert httpx.get(f"{proxy.base}/admin/providers", headers=ADMIN).status_code == 200


def test_admin_failover_status_and_model_views(operated: Any) -> None:
    _, proxy = operated
    status = httpx.get(f"{proxy.base}/admin/failover/status", headers=ADMIN).json()
    by_model = {m["model"]: m for m in status["models"]}
    assert by_model["gpt-4"]["providers_count"] == 3
    assert by_model["gpt-4"]["primary"] == "a"
    assert by_model["gpt-4"]["fallback"] == ["b", "c"]
    assert by_model["gpt-4"]["has_failover"] is True
    assert by_model["gpt-3.5-turbo"]["has_failover"] is False
    assert status["models_with_failover"] == 1
    view = httpx.get(f"{proxy.base}/admin/failover/model/gpt-4", headers=ADMIN).json()
    assert view["model"] == "gpt-4"
    assert [o["provider"] for o in view["failover_order"]] == ["a", "b", "c"]
    assert {"priority", "health", "circuit", "response_time_ms", "pricing_prompt"} <= set(view["failover_order"][0])
    assert view["recommendation"]
    missing = httpx.get(f"{proxy.base}/admin/failover/model/nope", headers=ADMIN)
    assert missing.status_code == 404


def test_admin_view_follows_what_the_proxy_saw(operated: Any) -> None:
    _, proxy = operated
    sdk = openai.OpenAI(base_url=proxy.url, api_key=SECRETS["FAILOVER_API_KEYS"], max_retries=0)
    for _ in range(6):
        sdk.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])
    view = httpx.get(f"{proxy.base}/admin/failover/model/gpt-4", headers=ADMIN).json()
    order = view["failover_order"]
    assert order[0]["provider"] == "b"
    a = next(o for o in order if o["provider"] == "a")
    assert a["health"] == "unhealthy"  # passive health: it failed every time this instance asked
    assert a["catalog_health"] == "unknown"


def test_metrics_count_requests_attempts_and_failovers(operated: Any) -> None:
    _, proxy = operated
    httpx.post(f"{proxy.url}/chat/completions", json={"model": "gpt-4", "messages": []}, headers=CLIENT)
    httpx.post(f"{proxy.url}/chat/completions", json={"model": "unknown-x"}, headers=CLIENT)
    text = httpx.get(f"{proxy.base}/metrics").text
    assert 'gatewayz_requests_total{model="gpt-4",outcome="ok",route="/v1/chat/completions"} 1.0' in text
    assert 'gatewayz_requests_total{model="other",outcome="model_not_found",route="/v1/chat/completions"} 1.0' in text
    assert 'gatewayz_upstream_attempts_total{model="gpt-4",provider="a",result="500"} 1.0' in text
    assert 'gatewayz_upstream_attempts_total{model="gpt-4",provider="b",result="ok"} 1.0' in text
    assert 'gatewayz_failovers_total{from_provider="a",model="gpt-4",reason="500"} 1.0' in text
    for name in ("gatewayz_upstream_ttfb_seconds_bucket", "gatewayz_request_duration_seconds_bucket",
                 "gatewayz_overhead_seconds_bucket"):
        assert name in text
    assert "unknown-x" not in text


def test_a_provider_style_model_id_is_labelled_by_its_canonical_id_on_every_metric(operated: Any) -> None:
    _, proxy = operated
    sdk = openai.OpenAI(base_url=proxy.url, api_key=SECRETS["FAILOVER_API_KEYS"], max_retries=0)
    answer = sdk.chat.completions.create(model="b/gpt-4", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content  # a failed over (500), b answered
    text = httpx.get(f"{proxy.base}/metrics").text
    assert 'gatewayz_requests_total{model="gpt-4",outcome="ok",route="/v1/chat/completions"} 1.0' in text
    assert 'gatewayz_upstream_attempts_total{model="gpt-4",provider="a",result="500"} 1.0' in text
    assert 'gatewayz_upstream_attempts_total{model="gpt-4",provider="b",result="ok"} 1.0' in text
    assert 'gatewayz_failovers_total{from_provider="a",model="gpt-4",reason="500"} 1.0' in text
    assert 'model="other"' not in text and "b/gpt-4" not in text


def test_no_secret_in_logs_answers_metrics_or_admin_views(operated: Any) -> None:
    mocks, proxy = operated
    outputs: list[str] = []
    with CapturedLogs().installed() as logs:
        sdk = openai.OpenAI(base_url=proxy.url, api_key=SECRETS["FAILOVER_API_KEYS"], max_retries=0)
        for stream in (False, True):
            raw = sdk.chat.completions.with_raw_response.create(
                model="gpt-4", messages=[{"role": "user", "content": "hi"}], stream=stream
            )
            outputs += [str(raw.headers), raw.text if not stream else ""]
        mocks["b"].set_faults(fault="status", status=503)
        failed = httpx.post(f"{proxy.url}/chat/completions", json={"model": "gpt-4"}, headers=CLIENT)
        assert failed.status_code == 503
        outputs += [failed.text, str(failed.headers)]
        outputs.append(httpx.post(f"{proxy.url}/chat/completions", json={"model": "gpt-4"}).text)
        outputs.append(httpx.get(f"{proxy.base}/metrics").text)
        for path in ("/admin/failover/status", "/admin/failover/model/gpt-4", "/admin/providers"):
            outputs.append(httpx.get(proxy.base + path, headers=ADMIN).text)
        outputs.append(repr(proxy.config))
    outputs += logs.lines
    assert any('"provider":"b"' in line for line in logs.lines)  # the access log did run
    everything = "\n".join(outputs)
    for name, secret in SECRETS.items():
        assert secret not in everything, f"{name} leaked"
    assert "hi" not in "".join(logs.lines)  # no prompt text in logs


def test_no_key_goes_to_another_provider(operated: Any) -> None:
    mocks, proxy = operated
    httpx.post(f"{proxy.url}/chat/completions", json={"model": "gpt-4", "messages": []}, headers=CLIENT)
    for slug, mock in mocks.items():
        for request in mock.stats()["recent"]:
            auth = request["headers"].get("authorization")
            assert auth == f"Bearer {SECRETS[slug.upper() + '_API_KEY']}"


def test_admin_providers_shows_a_provider_circuit_half_open_once_its_cooldown_has_passed(
    mock_provider: Any, proxy_server: Any
) -> None:
    cooldown_s = 2.0
    settings = {"circuit_failure_threshold": 1, "circuit_cooldown_s": cooldown_s}
    config = gateway_config([("c", refused_url())], env=SECRETS, proxy=settings)
    proxy = proxy_server(config)
    body = {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}
    failed = httpx.post(f"{proxy.base}/v1/chat/completions", json=body, headers=CLIENT, timeout=30)
    opened_at = time.monotonic()
    assert failed.status_code >= 500  # the provider refused the connection: its circuit opens

    def provider_c() -> dict[str, Any]:
        listed = httpx.get(f"{proxy.base}/admin/providers", headers=ADMIN).json()["providers"]
        return next(p for p in listed if p["slug"] == "c")

    assert provider_c()["circuit"] == "open" and provider_c()["circuit_open"] is True
    deadline = opened_at + cooldown_s + 15
    while (seen := provider_c())["circuit"] == "open" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert time.monotonic() - opened_at >= cooldown_s
    assert seen["circuit"] == "half_open" and seen["circuit_open"] is False
    status = httpx.get(f"{proxy.base}/admin/failover/model/gpt-4", headers=ADMIN).json()
    assert status["failover_order"][0]["circuit"] == "half_open"  # the offer view gives the same answer


def test_admin_view_resolves_ids_as_the_proxy_does_and_rounds_latencies(operated: Any) -> None:
    _, proxy = operated
    sdk = openai.OpenAI(base_url=proxy.url, api_key=SECRETS["FAILOVER_API_KEYS"], max_retries=0)
    for asked in ("GPT-4", "B/gpt-4"):  # the proxy serves both as gpt-4 (b/gpt-4 is b's own id)
        assert sdk.chat.completions.with_raw_response.create(model=asked, messages=MESSAGES).http_response.is_success
        view = httpx.get(f"{proxy.base}/admin/failover/model/{asked}", headers=ADMIN)
        assert view.status_code == 200 and view.json()["model"] == "gpt-4"
    b = next(o for o in view.json()["failover_order"] if o["provider"] == "b")
    assert isinstance(b["response_time_ms"], float)
    assert b["response_time_ms"] == round(b["response_time_ms"], 1)  # 52.9, never 52.99999999999727


def test_models_list_obeys_the_client_keys(operated: Any) -> None:
    _, proxy = operated
    wrong = openai.OpenAI(base_url=proxy.url, api_key="not-a-client-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        wrong.models.list()
    assert caught.value.status_code == 401
    assert caught.value.response.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{proxy.url}/models").status_code == 401
    right = openai.OpenAI(base_url=proxy.url, api_key=SECRETS["FAILOVER_API_KEYS"], max_retries=0)
    assert sorted(m.id for m in right.models.list()) == ["gpt-3.5-turbo", "gpt-4"]


def test_access_lines_of_client_errors_carry_the_asked_model(operated: Any) -> None:
    _, proxy = operated
    with CapturedLogs().installed() as logs:
        unknown = httpx.post(f"{proxy.url}/chat/completions", headers=CLIENT, json={"model": "gpt-5", "messages": []})
        bad = httpx.post(f"{proxy.url}/chat/completions", headers=CLIENT, json={"model": "gpt-4", "stream": "yes"})
        no_json = httpx.post(f"{proxy.url}/chat/completions", headers=CLIENT, content=b"{not json")
    assert (unknown.status_code, bad.status_code, no_json.status_code) == (404, 400, 400)
    lines = [json.loads(line) for line in logs.lines if line.startswith('{"request_id"')]
    assert [(line["status"], line["model"]) for line in lines] == [(404, "gpt-5"), (400, "gpt-4"), (400, "")]
