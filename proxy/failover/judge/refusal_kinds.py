"""What a provider's refusal is about, read from the structure of what it says, not from a list of
sentences. Pure.

Providers say the same thing in many words; what does not change is the shape of the sentence. A
refusal of something this offer lacks puts a negation (unsupported, unknown, unrecognized, not
permitted, unavailable, decommissioned, does not exist...) next to a name the request itself used
(a field, a nested parameter in either case, a tool, a role, a content part, the model id sent) or
next to a word for such a thing (parameter, field, model, tools, image input...). A context limit
puts tokens (or the context) next to a bound (exceeds, maximum, at most, too long). A rate limit
speaks of a rate or a window of time; an account problem of money or of the key and the account.
`refusal_kind` reads every sentence of the message and every code (`model_not_found` is read as
"model not found"), kind after kind in this order; the first found wins:

- `rate_limited`: a rate or a time window (rate limit, too many requests, per minute, TPM,
  throttled, resource exhausted, overloaded, "retry in 5s"). Cerebras "Tokens per minute limit
  exceeded - too many tokens processed."; Google 429 RESOURCE_EXHAUSTED "Resource has been
  exhausted (e.g. check quota)."
- `insufficient_quota`: money (balance, credits, billing, payment, a quota used up without a time
  window). DeepSeek 402 "Insufficient Balance"; Anthropic 400 "Your credit balance is too low to
  access the Anthropic API."
- `account`: the key, the account, the organisation, the region. Google 400 INVALID_ARGUMENT "API
  key not valid. Please pass a valid API key."; Google 400 "User location is not supported".
- `moderation`: flagged input, a content policy or filter. Azure 400 `content_filter`.
- `context_length`: the context, or tokens next to a bound; a prompt or input too long. Cohere
  "too many tokens: total number of tokens (prompt and prediction) cannot exceed 2048 - received
  6354."; Google "The input token count (1200293) exceeds the maximum number of tokens allowed
  (1048576)."; llama.cpp "the request exceeds the available context size".
- `client_mistake`, specific: a tool result without its call, "must contain the word json", an
  invalid schema. OpenAI "Invalid parameter: messages with role 'tool' must be a response to a
  preceeding message with 'tool_calls'."; Anthropic "`tool_use` ids were found without
  `tool_result` blocks immediately after".
- `unsupported`, by name: a negation in the same sentence as a name the request used or its model
  id. xAI "Argument not supported on this model: presencePenalty"; xAI "Model
  grok-4-1-fast-reasoning does not support parameter reasoningEffort."; Google "Invalid JSON payload
  received. Unknown name "store": Cannot find field." (read before the generic mistakes below).
- `unsupported`, by content: a complaint about the shape of a message's content (a type, a variant)
  when the request carries content parts beyond text (images, audio, files): a text-only offer.
  DeepSeek "messages[2]: data did not match any variant of untagged enum ChatCompletionRequestContent".
- `client_mistake`, generic: a body that does not parse, a value of the wrong type or range, a
  missing required field, an empty list.
- `unsupported`, by word: a negation next to a word for a field, parameter, model, tool or feature.
  Groq "The model `llama3-70b-8192` has been decommissioned and is no longer supported."; Ollama
  "registry.ollama.ai/library/gemma3:4b does not support tools".
- none of these: unknown, which gets a second opinion (`proxy.failover.judge.second_opinion`).

The recorded answers behind each kind, each with its source, are the fixtures of
`tests/refusal_cases.py`; `tests/test_refusal_kinds.py` runs them.
"""

from __future__ import annotations

import re
from enum import StrEnum

from proxy.failover.judge.error_text import ErrorText
from proxy.failover.judge.request_terms import NO_TERMS, RequestTerms, normal_name


class Kind(StrEnum):
    RATE_LIMITED = "rate_limited"
    INSUFFICIENT_QUOTA = "insufficient_quota"
    ACCOUNT = "account"
    MODERATION = "moderation"
    CONTEXT_LENGTH = "context_length"
    CLIENT_MISTAKE = "client_mistake"
    UNSUPPORTED = "unsupported"
    UNKNOWN = ""


def _words(*alternatives: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{a})" for a in alternatives))


WINDOW = r"(?:second|minute|min|hour|day|month)"
RATE = _words(
    r"rate[ _-]?limit",
    r"\brate[- ]limited\b",
    r"too many requests",
    rf"\b(?:requests?|tokens?|calls?|images?)\b[^.]{{0,30}}\bper {WINDOW}\b",
    rf"\bper[ -]?{WINDOW}\b[^.]{{0,20}}\blimit",
    rf"per{WINDOW}",  # Google's quota ids: GenerateRequestsPerMinutePerProjectPerModel
    r"\((?:tpm|rpm|rpd|tpd|ipm)\)|\b(?:tpm|rpm|rpd|tpd)\b",
    r"throttl",
    r"resource(?:s)? (?:has been |have been )?exhausted|resource exhausted",
    r"\bquota exceeded\b|exceeded (?:the )?(?:rate|request) quota",
    r"concurren(?:t|cy)\b[^.]{0,20}\b(?:requests?|limit)",
    r"slow down",
    r"(?:try again|retry)(?: later| in \d| after \d)",
    r"overloaded|over capacity|at capacity|capacity (?:exceeded|limit|reached)|temporarily unavailable|too busy",
)
MONEY = _words(
    r"insufficient[ _](?:account )?(?:balance|credits?|funds|quota)",
    r"(?:credit|account|your) balance\b[^.]{0,20}\b(?:too low|insufficient|not enough|exhausted|depleted|negative)",
    r"balance (?:is )?(?:too low|insufficient|not enough|exhausted|depleted)",
    r"not enough (?:credits?|balance|funds)|out of credits|no (?:remaining )?credits",
    r"(?:more|add|purchase|buy) credits|credits? (?:are|is) (?:required|exhausted)",
    r"billing|payment|top[ -]?up|recharge|arrears|overdue",
    r"exceeded your (?:current )?quota|quota (?:has been |is )?(?:exhausted|used up)",
    r"(?:spend(?:ing)?|budget|usage) (?:limit|cap)\b[^.]{0,20}\b(?:reached|exceeded|hit)",
    r"exceeded (?:your |the )?(?:budget|spend(?:ing)? limit|usage limit)|budget (?:has been )?exceeded|over budget",
    r"free (?:tier|trial) (?:has )?(?:ended|expired)|subscription (?:has )?(?:expired|ended|is inactive)",
)
ACCOUNT = _words(
    r"api[ _-]?key\b[^.]{0,20}\b(?:not valid|invalid|incorrect|expired|revoked|missing|not found|disabled|deleted)",
    r"(?:invalid|incorrect|expired|revoked) (?:api[ _-]?key|x-api-key|authentication|credentials|access token|key)",
    r"api key invalid|invalid api key|authentication|unauthori[sz]ed|permission denied|access denied",
    r"\baccount\b[^.]{0,20}\b(?:not active|inactive|suspended|disabled|deactivated|banned|blocked|locked|terminated"
    r"|closed|frozen|restricted|deleted)",
    r"\b(?:organi[sz]ation|org|project|workspace|key)\b (?:has been |is |was )?(?:disabled|deactivated|suspended|banned"
    r"|archived|deleted)",
    r"\b(?:region|country|location|territory)\b[^.]{0,40}(?:not supported|unsupported|not available|not allowed)",
    r"not available in your (?:region|country|location)",
)
MODERATION = _words(
    r"\bflagged\b",
    r"\bmoderation\b",
    r"content[ _]?(?:policy|filter|management policy)",
    r"responsible ?ai",
    r"violat\w*\b[^.]{0,40}\b(?:policy|policies|usage guidelines|terms)",
)
BOUND = (
    r"exceed\w*|too (?:long|large|big|many)|\bmax(?:imum)?\b|\blimit\b|at most|less than|fewer than|no more than"
    r"|<=|greater than the|longer than|larger than|beyond|\brange\b|\ballowed\b|overflow"
)
CONTEXT = _words(
    r"\bcontext\b[^.]{0,40}(?:length|window|size|limit|exceed|too long|overflow|full)",
    r"(?:length|window|size|limit)\b[^.]{0,20}\bcontext\b",
    rf"\btokens?\b[^.\n]{{0,80}}(?:{BOUND})",
    rf"(?:{BOUND})[^.\n]{{0,80}}\btokens?\b",
    rf"max_(?:new_|completion_|output_)?tokens\b[^.\n]{{0,60}}(?:{BOUND})",
    r"\b(?:prompt|input|request|message|messages|sequence|payload|entity)\b[^.]{0,30}\btoo (?:long|large|big)",
    r"\b(?:prompt|input|sequence)\b (?:length|size)\b[^.]{0,40}(?:exceed|longer|larger|maximum|too)",
    r"sequence length\b[^.]{0,40}(?:maximum|longer|exceed)",
)
TOOL_PAIRING = _words(
    r"tool[ _]?(?:calls?|use|results?|call[ _]?ids?|use[ _]?ids?|response|message)s?\b[^.]{0,120}"
    r"(?:must|should|without|preced|follow|correspond|respon|immediately|same number|equal|match|did not have|missing"
    r"|expected)",
    r"function[ _]?(?:call|response)s?\b[^.]{0,120}"
    r"(?:must|immediately|preced|follow|correspond|same number|equal|match)",
    r"role[ '\"`]*tool\b",
)
JSON_WORD = _words(r"contain the word[ '\"`]*json")
SCHEMA = _words(
    r"invalid[ _](?:json[ _])?schema|schema (?:is )?invalid|invalid function parameters",
    r"\bschema\b[^.]{0,60}(?:must|required to|is not valid|not a valid|error)",
)
MISTAKE = _words(
    r"is a required property|required (?:parameter|field|property|argument)|missing required|field required"
    r"|\bmissing\b|is required|must be (?:provided|specified|set|non-empty|positive)",
    r"could not parse|failed to parse|cannot parse|unable to parse|parse error|invalid json|malformed|not valid json"
    r"|json decode|expecting value|unterminated|deserializ|syntax error",
    r"is not of type|invalid type|expected (?:a |an )?(?:string|number|integer|boolean|array|object|list|dict)"
    r"|must be (?:a |an )?(?:string|number|integer|boolean|array|object|list)|input should be|should be a valid"
    r"|value is not a valid|type error",
    r"must be (?:between|greater|less|at least|at most|one of|in the range)|out of range|invalid value|invalid '",
    r"\bempty\b|at least one|must alternate|must (?:start|begin|end) with|must contain",
)
NEGATION = _words(
    r"\bnot (?:currently |yet |be |been )?(?:supported|recogni[sz]ed|permitted|allowed|available|enabled|implemented"
    r"|accepted|compatible|valid for|applicable|served|offered|found|exist|running|deployed|loaded|ready)\b",
    r"unsupported|unrecogni[sz]ed|\bunknown\b|unexpected|extraneous|unavailable|incompatible|inaccessible",
    r"decommission\w*|deprecat\w*|discontinued|\bretired\b|\bsunset\b|end[- ]of[- ]life|no longer|removed",
    r"(?:does|do|is|are|was|were|can)(?: ?n[o']t| not) (?:support|accept|exist|have access|recogni[sz]e|allow"
    r"|supported|available|allowed|permitted|valid|recogni[sz]ed|serve|offer)",
    r"doesn't|don't|isn't|aren't",
    r"cannot (?:find|be used|accept|use|serve)|can't (?:find|be used)|could ?n[o']t find|unable to (?:find|access|use)",
    r"(?:cannot|can't|may not)\b[^.]{0,40}\b(?:for|with|by|on) this model",
    r"no such|no endpoints?|only (?:supported|available|allowed)|not a valid model|invalid model"
    r"|model (?:id |identifier |name )?(?:is )?invalid|forbidden|disabled|not permitted",
)
SUBJECT = _words(
    r"\b(?:parameters?|params?|arguments?|fields?|propert(?:y|ies)|keys?|options?|settings?|names?|inputs?"
    r"|variants?|values?|features?|capabilit(?:y|ies)|models?|endpoints?|providers?)\b",
    r"\b(?:tools?|tool[ _]choice|tool[ _]?use|tool calling|functions?|function[ _]calling)\b",
    r"\b(?:images?|vision|audio|video|files?|pdfs?|documents?|modalit(?:y|ies)|multimodal|content parts?"
    r"|part types?)\b",
    r"\b(?:response[ _]format|json[ _](?:mode|output|schema|object)|structured outputs?|streaming|logprobs|reasoning"
    r"|thinking|system (?:prompt|message|role)|roles?)\b",
)
CONTENT_SHAPE = _words(r"\bcontent\b|\bvariant\b|\benum\b|\bsequence\b|\barray\b")
SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n")
NAME = re.compile(r"[a-z][a-z0-9_$]*")


def sentences(text: ErrorText) -> list[str]:
    """The message cut into sentences, then each code on its own (`model not found`)."""
    out = [s for s in SENTENCE_END.split(text.message) if s.strip()]
    return out + list(text.codes)


def refusal_kind(text: ErrorText, terms: RequestTerms = NO_TERMS) -> Kind:
    """The kind of one refusal (see the module docstring); `terms` are the names the refused request used."""
    parts = sentences(text)
    if not parts:
        return Kind.UNKNOWN
    early = _early_kind(parts)
    return early if early is not None else _late_kind(parts, text.fields, terms)


def _late_kind(parts: list[str], fields: tuple[str, ...], terms: RequestTerms) -> Kind:
    """Once no limit or account is at stake: a name the request used, then the client's mistakes,
    then a word for something an offer may lack."""
    if _names_what_it_lacks(parts, fields, terms):
        return Kind.UNSUPPORTED
    mistakes = [p for p in parts if MISTAKE.search(p)]
    if mistakes:  # the shape of a message's content refused, when it carries images, audio or files: an offer's gap
        lacks = bool(terms.parts) and _any(CONTENT_SHAPE, mistakes)
        return Kind.UNSUPPORTED if lacks else Kind.CLIENT_MISTAKE
    if any(NEGATION.search(p) and SUBJECT.search(p) for p in parts):
        return Kind.UNSUPPORTED
    return Kind.UNKNOWN


EARLY: tuple[tuple[tuple[re.Pattern[str], ...], Kind], ...] = (
    ((RATE,), Kind.RATE_LIMITED),
    ((MONEY,), Kind.INSUFFICIENT_QUOTA),
    ((ACCOUNT,), Kind.ACCOUNT),
    ((MODERATION,), Kind.MODERATION),
    ((CONTEXT,), Kind.CONTEXT_LENGTH),
    ((TOOL_PAIRING, JSON_WORD, SCHEMA), Kind.CLIENT_MISTAKE),
)


def _early_kind(parts: list[str]) -> Kind | None:
    """The kinds read before any name: limits, the account, moderation, the specific client mistakes."""
    for patterns, kind in EARLY:
        if any(_any(pattern, parts) for pattern in patterns):
            return kind
    return None


def _any(pattern: re.Pattern[str], parts: list[str]) -> bool:
    return any(pattern.search(part) for part in parts)


def _names_what_it_lacks(parts: list[str], fields: tuple[str, ...], terms: RequestTerms) -> bool:
    """A negation in the same sentence as a name the request used or its model id; or a negation
    anywhere when the provider names (as `param`, `loc`, `field`) a field the request used."""
    if not terms.names and not terms.models:
        return False
    negated = [p for p in parts if NEGATION.search(p)]
    if not negated:
        return False
    for part in negated:
        if terms.names_model(part) or _names_one(part, terms):
            return True
    return any(_names_one(f, terms) for f in fields)


def _names_one(text: str, terms: RequestTerms) -> bool:
    return any(normal_name(token) in terms.names for token in NAME.findall(text))


def is_money_refusal(message: str) -> bool:
    """Does this text say the account is out of money or quota (and not merely rate limited)?"""
    lowered = message.lower()
    return MONEY.search(lowered) is not None and RATE.search(lowered) is None
