"""One error hierarchy for the whole product.

    GatewayError                      every error this product raises on purpose
    ├── ConfigError                   the TOML file or the environment is wrong (exit code 2)
    ├── CatalogError                  the database catalog is missing or unusable
    ├── ListingError                  a provider's model listing is down or malformed (sync)
    ├── CannotListen                  a server's address is busy or not this host's (serve, health, mock)
    ├── ClientError                   the client's request is wrong: answered, never retried
    │   ├── BadRequest                400 invalid_request_error
    │   ├── Unauthorized              401 invalid_api_key
    │   ├── Forbidden                 403 (admin API not enabled, or wrong token)
    │   ├── ModelNotFound             404 model_not_found
    │   ├── BodyTooLarge              413 request_too_large
    │   ├── NoOfferAllowed            404 no offer left after the request's `only`/`ignore`
    │   ├── UnknownProvider           400 a provider preference names a provider this proxy does not have
    │   ├── NoOfferFits               400 no offer can take the request (tools, context, max_price...)
    │   ├── RequestTimeout            408 the body did not arrive in time (a trickling client)
    │   └── BudgetExceeded            429 budget_exceeded: the client key spent its budget for the period
    ├── UpstreamError                 one attempt at one offer failed (mapped from the HTTP client)
    │   ├── ConnectFailed             refused, reset or unresolvable before a byte was sent
    │   ├── ConnectTimeout            no connection within connect_timeout_s
    │   ├── FirstByteTimeout          connected, but no status/first chunk within first_byte_timeout_s
    │   │   └── FirstOutputLate       ... nor within the offer's learned deadline (proxy.runtime.first_output)
    │   ├── DeadlineExceeded          the request's deadline_s ran out during this attempt
    │   ├── UpstreamStatus            the provider answered with an error status
    │   ├── MalformedResponse         the provider answered 200 with a body that is not what it claims
    │   ├── ErrorInAnswer             a 200 whose body (or first stream event) is an error
    │   ├── EmptyAnswer               a 200 with no answer in it, or a stream that ended before any output
    │   ├── StreamIdle                after commit: no data event within stream_idle_timeout_s
    │   ├── StreamBroken              after commit: the connection dropped, or the body ended incomplete
    │   └── StreamErrorEvent          after commit: the provider reported an error inside the stream
    ├── AllOffersFailed               503 all_providers_failed, carrying every Attempt (or, when every
    │                                 offer refused the request itself, the first refusal to pass through)
    ├── ClientDisconnected            the client went away before its answer was complete (logged as 499)
    └── ShuttingDown                  the answer was still under way shutdown_grace_s after SIGTERM

Each class has a short `code`: the metric label and the `status` in an answer's `attempts` list.
Errors are never changed after they are raised: whether an attempt's failure ends the request, and
the attempts a 503 lists, are the request record's (`proxy.failover.record`), not the error's.
An `UpstreamStatus` is labelled by its `outcome`: the status (`"503"`) or, when its body said more,
the kind of refusal (`"context_length"`, `"rate_limited"`, ...; see `proxy.failover.judge.refusals`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from proxy.types import Attempt


class GatewayError(Exception):
    code: ClassVar[str] = "gateway_error"


class ConfigError(GatewayError):
    code = "config_error"


class CatalogError(GatewayError):
    code = "catalog_error"


class ListingError(GatewayError):
    code = "listing_error"


class CannotListen(GatewayError):
    code = "cannot_listen"


class ClientError(GatewayError):
    """An error the client caused; `status` and `error_type` shape the OpenAI-style answer."""

    status: ClassVar[int] = 400
    error_type: ClassVar[str] = "invalid_request_error"
    code = "invalid_request"
    headers: ClassVar[tuple[tuple[bytes, bytes], ...]] = ()  # sent with the answer

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class BadRequest(ClientError):
    pass


class Unauthorized(ClientError):
    status = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(ClientError):
    status = 403
    error_type = "permission_error"
    code = "forbidden"


class ModelNotFound(ClientError):
    status = 404
    code = "model_not_found"


class BodyTooLarge(ClientError):
    status = 413
    code = "request_too_large"


class NoOfferAllowed(ClientError):
    status = 404
    code = "no_allowed_providers"


class UnknownProvider(ClientError):
    code = "unknown_provider"


class NoOfferFits(ClientError):
    """No offer of the model is able to take the request; the message names what was missing."""

    code = "no_offer_fits"


class RequestTimeout(ClientError):
    status = 408
    code = "request_timeout"


class BudgetExceeded(ClientError):
    """The client key has spent its budget for the current day or month (`proxy.billing.budgets`):
    refused before any provider is asked. OpenAI's type for a spent quota; our own code."""

    status = 429
    error_type = "insufficient_quota"
    code = "budget_exceeded"
    headers: ClassVar[tuple[tuple[bytes, bytes], ...]] = ((b"x-should-retry", b"false"),)


class UpstreamError(GatewayError):
    """One attempt failed. `retryable` says whether the next offer should be tried."""

    code = "upstream_error"
    retryable: bool = True

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.code)
        self.message = message or self.code

    @property
    def outcome(self) -> str:
        """The attempt's label in metrics, logs and the `attempts` list."""
        return self.code


class ConnectFailed(UpstreamError):
    code = "connect_error"


class ConnectTimeout(UpstreamError):
    code = "connect_timeout"


class FirstByteTimeout(UpstreamError):
    code = "first_byte_timeout"

    def __init__(self, message: str = "", *, waited_s: float = 0.0) -> None:
        super().__init__(message)
        self.waited_s = waited_s  # how long the attempt waited: a lower bound of the offer's time to first output


class FirstOutputLate(FirstByteTimeout):
    code = "first_output_late"


class DeadlineExceeded(UpstreamError):
    code = "deadline_exceeded"


class MalformedResponse(UpstreamError):
    code = "malformed_response"


class ErrorInAnswer(UpstreamError):
    code = "error_in_answer"


class EmptyAnswer(UpstreamError):
    code = "empty_answer"


class StreamErrorEvent(UpstreamError):
    code = "stream_error"


class StreamIdle(UpstreamError):
    code = "stream_idle_timeout"


class StreamBroken(UpstreamError):
    code = "stream_broken"


class UpstreamStatus(UpstreamError):
    """The provider answered with a non-2xx status; the body is kept to pass through when not retryable."""

    code = "upstream_status"

    def __init__(
        self,
        status: int,
        *,
        retryable: bool,
        body: bytes = b"",
        headers: Sequence[tuple[str, str]] = (),
        retry_after_s: float | None = None,
        kind: str = "",
        counts: bool = True,
        cooldown: str = "",
        second_opinion: bool = False,
    ) -> None:
        super().__init__(f"provider answered {status}")
        self.status = status
        self.retryable = retryable
        self.body = body
        self.headers = tuple(headers)
        self.retry_after_s = retry_after_s
        self.kind = kind  # what the body said, when it said more than the status
        self.counts = counts  # against the offer's health and circuit (an offer-specific limit does not)
        self.cooldown = cooldown  # "", "offer" (Retry-After) or "provider" (an account failure)
        self.second_opinion = second_opinion  # a refusal of unknown kind: ask one other provider before passing it

    @property
    def outcome(self) -> str:
        return self.kind or str(self.status)


class AllOffersFailed(GatewayError):
    code = "all_providers_failed"

    def __init__(
        self,
        attempts: Sequence[Attempt],
        *,
        retry_after_s: float | None = None,
        refusal: UpstreamStatus | None = None,
        cooling: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(f"all {len(attempts)} attempt(s) failed")
        self.attempts = tuple(attempts)
        self.retry_after_s = retry_after_s
        self.refusal = refusal  # every attempt refused the request itself: the first refusal, to pass through
        self.cooling = tuple(cooling)  # (provider, why) of the offers left out because cooling down


class ClientDisconnected(GatewayError):
    code = "client_disconnected"


class ShuttingDown(GatewayError):
    code = "proxy_shutdown"
