"""What a request needs and which offers can take it (`proxy.failover.fit`), without a server."""

from __future__ import annotations

import pytest

from proxy.errors import BadRequest, NoOfferFits
from proxy.failover.client_request import parse_request
from proxy.failover.fit import (
    FLOOR_TOKENS,
    Verdict,
    estimate_prompt_tokens,
    fit_offers,
    may_be_too_small,
    offer_verdict,
    request_needs,
)
from proxy.failover.model_fallbacks import model_chain
from proxy.failover.ranking import rank_offers
from proxy.types import Offer


def offer(slug: str, **caps: object) -> Offer:
    for key in ("supported_parameters", "input_modalities"):
        if caps.get(key) is not None:
            caps[key] = frozenset(caps[key])  # type: ignore[arg-type]
    return Offer("gpt-4", slug, f"{slug}/gpt-4", "http://x", "", **caps)  # type: ignore[arg-type]


def needs(raw: bytes) -> object:
    request = parse_request(raw)
    return request_needs(request.body, request.prefs)


SMALL = offer(
    "small", context_length=8192, max_completion_tokens=4096, supported_parameters=["max_tokens"], input_modalities=["text"]
)
BIG = offer(
    "big",
    context_length=128000,
    max_completion_tokens=16384,
    supported_parameters=["tools", "tool_choice", "max_tokens", "structured_outputs", "response_format", "seed"],
    input_modalities=["text", "image"],
)
BLANK = offer("blank")


def kept(raw: bytes, offers: list[Offer]) -> list[str]:
    fit = fit_offers(offers, needs(raw), "gpt-4")  # type: ignore[arg-type]
    return [o.provider_slug for o in fit.offers]


def test_a_plain_request_keeps_every_offer_and_orders_nothing() -> None:
    plain = needs(b'{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"max_tokens":100}')
    assert not plain.special  # type: ignore[attr-defined]
    fit = fit_offers([SMALL, BIG, BLANK], plain, "gpt-4")  # type: ignore[arg-type]
    assert [o.provider_slug for o in fit.offers] == ["small", "big", "blank"]
    assert fit.unknown == frozenset()


def test_tools_go_only_to_offers_that_support_them_unknown_after_known() -> None:
    raw = b'{"model":"gpt-4","messages":[],"tools":[{"type":"function","function":{"name":"f"}}]}'
    fit = fit_offers([SMALL, BLANK, BIG], needs(raw), "gpt-4")  # type: ignore[arg-type]
    assert [o.provider_slug for o in fit.offers] == ["blank", "big"]
    assert fit.unknown == {BLANK.key}
    ranking = rank_offers(fit.offers, unknown=fit.unknown)
    assert [o.provider_slug for o in ranking.offers] == ["big", "blank"]  # known to fit first, despite the name


def test_structured_outputs_images_and_output_limits() -> None:
    schema = b'{"model":"gpt-4","messages":[],"response_format":{"type":"json_schema","json_schema":{"name":"x"}}}'
    assert kept(schema, [SMALL, BIG]) == ["big"]
    json_mode = b'{"model":"gpt-4","messages":[],"response_format":{"type":"json_object"}}'
    assert kept(json_mode, [SMALL, BIG]) == ["small", "big"]  # JSON mode is not structured outputs
    image = (
        b'{"model":"gpt-4","messages":[{"role":"user","content":[{"type":"text","text":"what is it"},'
        b'{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}]}'
    )
    assert kept(image, [SMALL, BIG]) == ["big"]
    assert kept(b'{"model":"gpt-4","messages":[],"max_tokens":9000}', [SMALL, BIG]) == ["big"]
    assert kept(b'{"model":"gpt-4","messages":[],"max_completion_tokens":9000}', [SMALL, BIG]) == ["big"]


def test_the_prompt_size_rule_is_characters_over_four() -> None:
    assert estimate_prompt_tokens(0) == 0
    assert estimate_prompt_tokens(4) == 1
    assert estimate_prompt_tokens(5) == 2
    text = "word " * 8000  # 40,000 characters: about 10,000 tokens
    raw = b'{"model":"gpt-4","messages":[{"role":"user","content":"%s"}]}' % text.encode()
    assert needs(raw).prompt_tokens == 10000  # type: ignore[attr-defined]
    assert kept(raw, [SMALL, BIG]) == ["big"]
    # an image's data is not text: a huge data URL does not make a long prompt
    image = b'{"type":"image_url","image_url":{"url":"data:image/png;base64,%s"}}' % (b"A" * 100000)
    raw = b'{"model":"gpt-4","messages":[{"role":"user","content":[%s]}]}' % image
    assert needs(raw).prompt_tokens == 0  # type: ignore[attr-defined]


def test_refusals_name_what_was_missing() -> None:
    with pytest.raises(NoOfferFits, match="no offer of gpt-4 supports tools") as tools:
        fit_offers([SMALL], needs(b'{"model":"gpt-4","messages":[],"tool_choice":"auto"}'), "gpt-4")  # type: ignore[arg-type]
    assert tools.value.status == 400
    assert tools.value.param == "tools"
    with pytest.raises(NoOfferFits, match=r"max_tokens 20000 is above every offer's limit \(the largest .* 16384\)"):
        fit_offers([SMALL, BIG], needs(b'{"model":"gpt-4","messages":[],"max_tokens":20000}'), "gpt-4")  # type: ignore[arg-type]
    text = "word " * 200000
    raw = b'{"model":"gpt-4","messages":[{"role":"user","content":"%s"}]}' % text.encode()
    with pytest.raises(NoOfferFits, match="the prompt is about 250000 tokens; the largest context among gpt-4's offers is 128000"):
        fit_offers([SMALL, BIG], needs(raw), "gpt-4")  # type: ignore[arg-type]
    raw = b'{"model":"gpt-4","messages":[],"tools":[],"max_tokens":9000}'
    with pytest.raises(NoOfferFits, match="supports tools"):
        fit_offers([SMALL], needs(raw), "gpt-4")  # type: ignore[arg-type]
    tools_only = offer("t", supported_parameters=["tools"], max_completion_tokens=4096)
    limits_only = offer("l", supported_parameters=["max_tokens"], max_completion_tokens=16000)
    with pytest.raises(NoOfferFits, match=r"no single offer of gpt-4 meets every need of this request \(tools, max_tokens"):
        fit_offers([tools_only, limits_only], needs(raw), "gpt-4")  # type: ignore[arg-type]


def test_require_parameters_needs_every_parameter_known() -> None:
    raw = b'{"model":"gpt-4","messages":[],"seed":1,"max_completion_tokens":10,"stream":false,"user":"u","provider":{"require_parameters":true}}'
    request = parse_request(raw)
    required = request_needs(request.body, request.prefs)
    assert required.parameters == {"seed", "max_tokens"}
    assert kept(raw, [SMALL, BIG, BLANK]) == ["big"]  # blank's parameters are unknown: not known to honour them
    without = raw.replace(b'"require_parameters":true', b'"require_parameters":false')
    assert kept(without, [SMALL, BIG, BLANK]) == ["small", "big", "blank"]
    with pytest.raises(NoOfferFits, match=r"every parameter of this request \(logprobs\)"):
        fit_offers([SMALL, BIG], needs(b'{"model":"gpt-4","logprobs":true,"provider":{"require_parameters":true}}'), "gpt-4")  # type: ignore[arg-type]


def test_max_price_is_usd_per_million_and_an_unknown_price_does_not_qualify() -> None:
    cheap = offer("cheap", pricing_prompt=0.000001, pricing_completion=0.000002)  # $1 / $2 per million
    dear = offer("dear", pricing_prompt=0.00003, pricing_completion=0.00006)  # $30 / $60 per million
    raw = b'{"model":"gpt-4","messages":[],"provider":{"max_price":{"prompt":5,"completion":10}}}'
    assert kept(raw, [dear, cheap, BLANK]) == ["cheap"]
    assert kept(raw.replace(b'"prompt":5', b'"prompt":1'), [dear, cheap]) == ["cheap"]  # at the ceiling is within
    with pytest.raises(NoOfferFits, match="no offer of gpt-4 within max_price"):
        fit_offers([dear, cheap], needs(raw.replace(b'"prompt":5', b'"prompt":0.5')), "gpt-4")  # type: ignore[arg-type]
    per_request = offer("r", pricing_prompt=0.0, pricing_completion=0.0, pricing_request=0.01)
    free_per_request = offer("f", pricing_prompt=0.000001, pricing_completion=0.000002, pricing_request=0.0)
    assert kept(b'{"model":"gpt-4","provider":{"max_price":{"request":0.001}}}', [per_request, cheap, free_per_request]) == ["f"]


def test_data_policies_act_only_where_the_config_declares_them() -> None:
    keeps = offer("keeps", data_collection="allow", zdr=False, quantization="fp8")
    private = offer("private", data_collection="deny", zdr=True, quantization="bf16")
    deny = b'{"model":"gpt-4","provider":{"data_collection":"deny"}}'
    assert kept(deny, [keeps, private, BLANK]) == ["private", "blank"]
    fit = fit_offers([keeps, private, BLANK], needs(deny), "gpt-4")  # type: ignore[arg-type]
    assert fit.unknown == {BLANK.key}  # undeclared: tried after the declared ones
    assert kept(b'{"model":"gpt-4","provider":{"zdr":true}}', [keeps, private]) == ["private"]
    assert kept(b'{"model":"gpt-4","provider":{"quantizations":["fp8"]}}', [keeps, private, BLANK]) == ["keeps", "blank"]
    assert kept(b'{"model":"gpt-4","provider":{"data_collection":"allow"}}', [keeps, private]) == ["keeps", "private"]


def test_an_unknown_limit_is_within_the_floor_and_unknown_beyond_it() -> None:
    within = needs(b'{"model":"gpt-4","max_tokens":%d,"tools":[]}' % FLOOR_TOKENS)
    assert offer_verdict(offer("x", supported_parameters=["tools"]), within) is Verdict.FITS  # type: ignore[arg-type]
    beyond = needs(b'{"model":"gpt-4","max_tokens":%d}' % (FLOOR_TOKENS + 1))
    assert offer_verdict(BLANK, beyond) is Verdict.UNKNOWN  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "param"),
    [
        (b'"provider":{"max_price":{"prompt":-1}}', "provider.max_price.prompt"),
        (b'"provider":{"max_price":5}', "provider.max_price"),
        (b'"provider":{"require_parameters":"yes"}', "provider.require_parameters"),
        (b'"provider":{"data_collection":"maybe"}', "provider.data_collection"),
        (b'"provider":{"quantizations":["fp7"]}', "provider.quantizations"),
        (b'"models":"gpt-4o"', "models"),
        (b'"models":[""]', "models"),
    ],
)
def test_bad_preferences_are_400_naming_the_field(field: bytes, param: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_request(b'{"model":"gpt-4",%s}' % field)
    assert caught.value.param == param


def test_the_model_chain_and_the_models_field() -> None:
    assert model_chain("gpt-4", ["gpt-4", "gpt-4o", "claude"], ["claude", "llama"]) == ("gpt-4", "gpt-4o", "claude", "llama")
    request = parse_request(b'{"models":["gpt-4o","claude"],"messages":[]}')
    assert request.model == "gpt-4o"  # OpenRouter: `model` may be left out when `models` is given
    assert request.models == ("gpt-4o", "claude")
    assert "models" not in request.body


@pytest.mark.parametrize(
    ("raw", "plain"),
    [
        (b'{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"temperature":0.2}', True),
        (b'{"model":"gpt-4","messages":[{"role":"user","content":"say \\"type\\" please"}]}', True),
        (b'{"model":"gpt-4","messages":[],"max_tokens":10}', False),
        (b'{"model":"gpt-4","messages":[],"tools":[]}', False),
        (b'{"model":"gpt-4","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}', False),
        (b'{"model":"gpt-4","messages":[],"provider":{"zdr":true}}', False),
        (b'{"model":"gpt-4","messages":[],"provider":{"order":["a"]}}', True),
    ],
)
def test_a_plain_request_is_recognised_without_walking_it(raw: bytes, plain: bool) -> None:
    request = parse_request(raw)
    assert (request_needs(request.body, request.prefs, request.raw) is None) is plain


def test_a_plain_prompt_is_measured_only_when_an_offer_could_be_too_small() -> None:
    assert not may_be_too_small([BLANK, BIG], 100_000)  # big: 128,000 tokens hold any 100 kB body
    assert may_be_too_small([SMALL, BIG], 40_000)  # small: 8,192 tokens may not hold 40 kB
    assert not may_be_too_small([SMALL], 30_000)


def test_a_messages_request_is_fitted_by_its_own_field_names() -> None:
    # an image block of the Messages API (https://docs.claude.com/en/api/messages) needs an offer taking images
    image = (b'{"model":"m","max_tokens":64,"messages":[{"role":"user","content":[{"type":"image","source":'
             b'{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}}]}]}')  # fmt: skip
    assert kept(image, [SMALL, BIG, BLANK]) == ["big", "blank"]
    # `system` and `stop_sequences` are a prompt and `stop`, as require_parameters reads a listing
    strict = offer("strict", supported_parameters=["max_tokens", "stop"])
    body = (b'{"model":"m","max_tokens":64,"system":"be brief","stop_sequences":["END"],'
            b'"messages":[{"role":"user","content":"hi"}],"provider":{"require_parameters":true}}')  # fmt: skip
    assert kept(body, [strict, SMALL]) == ["strict"]
