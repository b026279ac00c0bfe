"""The attempt loop and the model chain, against a fake upstream client: no sockets, milliseconds.

Each test serves one request through `serve_request` (or, for a stored response's follow-up, the
pinned offer alone), accounts for it as the handler does, and checks what reached the request's
record and everything read from it: attempts, outcome, runtime state, metrics and the access line.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import pytest

from proxy.config import config_from_mapping
from proxy.errors import AllOffersFailed, StreamBroken, UpstreamStatus
from proxy.failover.attempts import Call, Served, run_attempts
from proxy.failover.endpoints import PROXIED, Endpoint, ForwardRequest
from proxy.failover.model_fallbacks import serve_request
from proxy.failover.record import RequestRecord, Tried
from proxy.http.chain import PinnedCall
from proxy.http.gateway import Gateway
from proxy.runtime.response_pins import ResponsePin
from proxy.types import Ranking
from tests.metric_reader import metric_value
from tests.unit.fake_upstream import Answer, FakeUpstream, chunk

CHAT = PROXIED[("POST", "/v1/chat/completions")]
GET_RESPONSE = PROXIED[("GET", "/v1/responses/{response_id}")]
HELLO = {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}


def gateway(
    scripts: Mapping[str, Sequence[Answer]],
    models: Mapping[str, Sequence[str]] | None = None,
    *,
    proxy: Mapping[str, Any] | None = None,
    fallbacks: Mapping[str, Sequence[str]] | None = None,
) -> tuple[Gateway, FakeUpstream]:
    """A gateway over providers `http://<slug>/v1` (in priority order) answering from `scripts`;
    each model offered by the named providers as `<slug>/<model>`."""
    providers = [
        {"slug": slug, "name": slug, "base_url": f"http://{slug}/v1", "api_key_env": f"{slug.upper()}_KEY",
         "listing": "none", "priority": rank}
        for rank, slug in enumerate(scripts)
    ]  # fmt: skip
    tables = []
    for model, slugs in (models or {"gpt-4": list(scripts)}).items():
        offers = [{"provider": s, "provider_model_id": f"{s}/{model}"} for s in slugs]
        tables.append({"model_id": model, "offers": offers, **({"fallbacks": list(fallbacks[model])}
                                                               if fallbacks and model in fallbacks else {})})
    settings = {"first_byte_timeout_s": 2, "deadline_s": 10, **(proxy or {})}
    keys = {f"{slug.upper()}_KEY": f"sk-{slug}-secret-key" for slug in scripts}
    config = config_from_mapping({"proxy": settings, "providers": providers, "models": tables}, "(unit)", keys)
    fake = FakeUpstream(scripts)
    return Gateway(config, client=fake), fake


def new_record(gw: Gateway, endpoint: Endpoint = CHAT) -> RequestRecord:
    return RequestRecord(endpoint.label or endpoint.route, "req-1", on_failure=gw.accounting.attempt_failed)


def new_call(gw: Gateway, request: ForwardRequest, endpoint: Endpoint = CHAT, path: str = "") -> Call:
    deadline = asyncio.get_running_loop().time() + gw.settings.deadline_s
    return Call(request, endpoint, gw.live.current, {}, deadline, path or endpoint.upstream, endpoint.method)


def chat(body: Mapping[str, Any] = HELLO) -> ForwardRequest:
    return CHAT.parse(orjson.dumps(body), {}, None)


class Outcome:
    """What one request came to: its record, the answer or the error, its access line."""

    def __init__(self, record: RequestRecord, result: Served | BaseException, line: dict[str, Any]) -> None:
        self.record, self.result, self.line = record, result, line

    @property
    def served(self) -> Served:
        assert isinstance(self.result, Served), self.result
        return self.result

    def tried(self) -> list[tuple[str, str]]:
        return [(a.provider, a.outcome) for a in self.record.attempts]


async def serve(gw: Gateway, body: Mapping[str, Any] = HELLO) -> Outcome:
    """One chat request: routed and served by the loop, answered, then accounted as the handler does."""
    lines: list[str] = []
    gw.accounting.write_access = lines.append
    record = new_record(gw)
    result: Served | BaseException
    try:
        result = await serve_request(gw.router, new_call(gw, chat(body)), record)
    except AllOffersFailed as exc:
        result = exc
        record.answered(503, exc.code)
    except UpstreamStatus as exc:
        result = exc
        record.answered(exc.status, f"upstream_{exc.status}")
    else:
        record.answered(200, "ok")
        result.response.close()
    gw.accounting.request_ended(record)
    return Outcome(record, result, json.loads(lines[-1]))


def metric(gw: Gateway, name: str, **labels: str) -> float:
    return metric_value(gw.metrics.exposition(), name, **labels)


async def test_a_failed_offer_is_recorded_and_the_next_one_serves() -> None:
    gw, fake = gateway({"a": [Answer.error(503, "overloaded")], "b": [Answer()]})
    done = await serve(gw)
    assert done.tried() == [("a", "503"), ("b", "ok")]
    assert done.served.offer.provider_slug == "b" and done.record.provider == "b"
    assert done.line["tried"] == ["a:503", "b:ok"] and done.line["attempts"] == 2 and done.line["outcome"] == "ok"
    assert metric(gw, "gatewayz_failovers_total", model="gpt-4", from_provider="a", reason="503") == 1
    assert metric(gw, "gatewayz_upstream_attempts_total", provider="b", result="ok") == 1
    assert metric(gw, "gatewayz_requests_total", route="/v1/chat/completions", model="gpt-4", outcome="ok") == 1
    assert fake.sent_to("a")[0].headers["authorization"] == "Bearer sk-a-secret-key"
    assert json.loads(fake.sent_to("b")[0].body)["model"] == "b/gpt-4"  # each offer its own model id
    assert all(r.closed or r.released for r in fake.responses)


async def test_a_retry_after_cools_the_offer_down_while_the_request_still_runs() -> None:
    gw, _ = gateway({"a": [Answer.error(429, "slow down", headers=(("retry-after", "30"),))], "b": [Answer()]})
    cooling: list[float] = []
    account = gw.accounting.attempt_failed

    def failed(record: RequestRecord, tried: Tried) -> None:
        account(record, tried)
        cooling.append(gw.state.view(tried.offer, time.time()).cooldown_until - time.time())

    record = RequestRecord(CHAT.route, "r", on_failure=failed)
    served = await serve_request(gw.router, new_call(gw, chat()), record)
    served.response.close()
    assert cooling and 25 < cooling[0] <= 30  # in force before the request ended (nothing accounted yet)
    assert metric(gw, "gatewayz_requests_total") == 0


async def test_the_clients_own_mistake_is_raised_unchanged_and_counts_against_nobody() -> None:
    gw, fake = gateway({"a": [Answer.error(400, "messages must be an array")], "b": [Answer()]})
    done = await serve(gw)
    assert isinstance(done.result, UpstreamStatus) and done.result.status == 400
    assert done.result.retryable is False  # as it was classified: never rewritten
    assert done.tried() == [("a", "400")] and done.record.attempts[0].retryable is False
    assert fake.sent_to("b") == []
    assert done.record.last_offer is not None and done.record.last_offer.provider_slug == "a"
    assert all(state.counts.errors == 0 for state in gw.state.offers.values())
    assert done.line["outcome"] == "upstream_400"


async def test_every_offer_failing_raises_the_attempts_of_the_record() -> None:
    gw, _ = gateway({"a": [Answer(refuse=True)], "b": [Answer.error(502, "bad gateway")]})
    done = await serve(gw)
    assert isinstance(done.result, AllOffersFailed)
    assert done.result.attempts == done.record.attempts
    assert done.tried() == [("a", "connect_error"), ("b", "502")]
    assert done.line["status"] == 503 and done.line["provider"] is None
    assert metric(gw, "gatewayz_failovers_total", from_provider="a") == 1
    assert metric(gw, "gatewayz_failovers_total", from_provider="b") == 0  # no attempt followed it
    assert gw.state.providers["a"].failures == 1  # a connection error counts against the whole provider


async def test_a_context_refusal_with_no_larger_offer_left_is_passed_through() -> None:
    refusal = Answer.error(400, "This model's maximum context length is 8192 tokens", code="context_length_exceeded")
    gw, _ = gateway({"a": [refusal]})
    done = await serve(gw)
    assert isinstance(done.result, UpstreamStatus) and done.result.kind == "context_length"
    assert done.result.retryable is True  # the kind is retryable; this request had nowhere larger to go
    assert done.record.attempts[0].retryable is False


async def test_the_model_chain_moves_on_and_the_record_says_so() -> None:
    gw, _ = gateway(
        {"a": [Answer.error(503, "down")], "b": [Answer()]},
        {"gpt-4": ["a"], "gpt-4o": ["b"]},
        fallbacks={"gpt-4": ["gpt-4o"]},
    )
    done = await serve(gw)
    assert done.served.offer.model_id == "gpt-4o"
    assert done.record.fallbacks == [("gpt-4", "gpt-4o")]
    assert [a.model for a in done.record.attempts] == ["gpt-4", "gpt-4o"]
    assert done.record.model == "gpt-4o" and done.record.asked_model == "gpt-4"
    assert metric(gw, "gatewayz_model_fallbacks_total", from_model="gpt-4", to_model="gpt-4o") == 1


async def test_a_hedge_that_wins_is_recorded_with_the_attempt_it_cancelled() -> None:
    gw, fake = gateway({"a": [Answer(delay_s=5.0)], "b": [Answer()]}, proxy={"hedge": True, "hedge_budget": 1.0})
    for _ in range(25):  # the first offer's usual time is 1 ms: a request still waiting after that is hedged
        gw.state.first_output.record(("a", "a/gpt-4"), False, 0.001)
    done = await serve(gw)
    assert done.record.hedge == "won" and done.line["hedge"] == "won"
    assert done.tried() == [("a", "cancelled"), ("b", "ok")]
    assert [a.hedge for a in done.record.attempts] == [False, True]
    assert metric(gw, "gatewayz_hedges_total", model="gpt-4", outcome="won") == 1
    assert metric(gw, "gatewayz_upstream_attempts_total", provider="a", result="cancelled") == 1
    assert done.record.upstream_s < 1.0  # the race's own time, not the cancelled leg's 5 s


async def test_a_cancelled_request_closes_its_upstream_response() -> None:
    gw, fake = gateway({"a": [Answer.stream(b": processing\n\n", stall=True)]})
    record = new_record(gw)
    task = asyncio.ensure_future(serve_request(gw.router, new_call(gw, chat({**HELLO, "stream": True})), record))
    await asyncio.sleep(0.05)  # connected, holding keep-alives, no output yet
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(fake.responses) == 1 and fake.responses[0].closed


async def test_a_stream_that_breaks_after_commit_counts_against_its_offer() -> None:
    gw, _ = gateway({"a": [Answer.stream(chunk("Hel"), chunk("lo"))]})
    record = new_record(gw)
    served = await serve_request(gw.router, new_call(gw, chat({**HELLO, "stream": True})), record)
    served.response.close()
    record.committed(200)
    record.stream_broke(StreamBroken("the provider's connection dropped mid-answer"))
    record.relayed("stream_broken")
    gw.accounting.request_ended(record)
    assert [a.outcome for a in record.attempts] == ["stream_broken"]
    assert gw.state.offers[("a", "a/gpt-4")].counts.errors == 1
    assert metric(gw, "gatewayz_upstream_attempts_total", provider="a", result="stream_broken") == 1
    assert metric(gw, "gatewayz_requests_total", outcome="stream_broken") == 1


async def pinned(gw: Gateway) -> tuple[RequestRecord, BaseException | Served]:
    """`GET /v1/responses/resp_1`, pinned to provider a."""
    offers = gw.catalog.lookup("gpt-4", "responses")
    assert offers
    record = new_record(gw, GET_RESPONSE)
    request = PinnedCall("resp_1", ResponsePin("a", "a/gpt-4", "gpt-4"))
    call = new_call(gw, request, GET_RESPONSE, "/responses/resp_1")
    try:
        return record, await run_attempts(gw.context, call, Ranking(offers=(offers[0],)), record)
    except (UpstreamStatus, AllOffersFailed) as exc:
        return record, exc


async def test_a_pinned_providers_404_is_its_answer_and_cools_nothing() -> None:
    gw, fake = gateway({"a": [Answer.error(404, "No response found with id 'resp_1'.")]})
    record, result = await pinned(gw)
    assert isinstance(result, UpstreamStatus) and result.status == 404
    assert (fake.sent[0].method, fake.sent[0].url) == ("GET", "http://a/v1/responses/resp_1")
    assert record.attempts[0].retryable is False
    assert gw.state.offers == {}  # judged the endpoint's answer: nothing recorded against the offer


async def test_a_failing_pinned_provider_is_cooled_down_like_any_other() -> None:
    gw, _ = gateway({"a": [Answer.error(503, "busy", headers=(("retry-after", "20"),))]})
    record, result = await pinned(gw)
    assert isinstance(result, AllOffersFailed) and [a.outcome for a in result.attempts] == ["503"]
    offer = record.tried[0].offer
    assert gw.state.view(offer, time.time()).cooldown_until > time.time() + 15


async def test_a_refusal_of_unknown_kind_gets_one_second_opinion_recorded_as_such() -> None:
    odd = Answer.error(400, "Request could not be processed by this deployment.")  # neither a mistake nor a limit
    gw, fake = gateway({"a": [odd], "b": [Answer()], "c": [Answer()]})
    done = await serve(gw)
    assert done.served.offer.provider_slug == "b" and done.tried() == [("a", "400"), ("b", "ok")]
    assert done.record.opinion == ("gpt-4", "served")
    assert metric(gw, "gatewayz_second_opinions_total", model="gpt-4", outcome="served") == 1
    assert metric(gw, "gatewayz_failovers_total") == 0  # a second opinion is not a failover
    assert all(state.counts.errors == 0 for state in gw.state.offers.values())  # nor counted against a
    assert fake.sent_to("c") == []  # one extra attempt, never more


async def test_when_the_second_opinion_refuses_too_the_first_refusal_is_passed_through_unchanged() -> None:
    first = Answer.error(400, "Request could not be processed by this deployment.")
    gw, _ = gateway({"a": [first], "b": [Answer.error(400, "Something else is off.")]})
    done = await serve(gw)
    assert isinstance(done.result, UpstreamStatus) and done.result.body == fake_body(first)
    assert done.record.offer_of(done.result) is not None and done.record.offer_of(done.result).provider_slug == "a"
    assert done.record.opinion == ("gpt-4", "refused")


def fake_body(answer: Answer) -> bytes:
    return orjson.dumps(answer.body)
