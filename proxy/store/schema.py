"""The documented schema: every table and view the migrations create, with exactly these columns.

`tests/e2e/test_migrate.py` compares a migrated database with this mapping, and `failover check`
("Schema Columns") reports any column missing from it. Column names follow the guide.

- `providers`: one row per configured provider; `health_status` is the worker's roll-up;
  `listing_failures` the syncs in a row whose listing failed or answered with no models while the
  catalog held listed offers of it, `listing_error` what the last one said (migration 0007).
- `models`: one row per *offer* (a provider's way of serving canonical `model_id` under its own
  `provider_model_id`); prices in USD per token (`pricing_request` per request), NUMERIC; what the
  offer can do (migration 0004): `context_length`, `max_completion_tokens`, `supported_parameters`
  (text[] of OpenAI request fields) and `input_modalities` (text[]), NULL when unknown.
  `endpoints` the endpoint kinds it serves (NULL: all its provider serves; migration 0005).
  `pricing_cached_prompt` USD per cached prompt token (NULL: the prompt price; migration 0008).
- `model_health_tracking`: one row per offer (`offer_id` -> `models.id`); `(provider, model)` is
  the offer key (provider slug, provider model id); counts are incremented atomically;
  `call_count` is generated; `average_response_time_ms` is an EWMA; `first_output` (migration 0006) is the learned
  time to first output a proxy flushed last (JSON, `proxy.runtime.first_output.learned_json`).
- `model_health_history`: one row per observation, `source` is `probe` or `traffic`.
- `offer_catalog`: a view joining the three, what every ranked-offer read selects from.
- `key_spend`: per-key budgets without Redis (migration 0010): one row per client key name and budget
  period (`day` | `month`, `period_start` in UTC), `spent_nano_usd` every instance's spend in whole
  nano-USD (`proxy.billing.spend_sync`).
- `usage_records`: one row per request that reached a proxy (migration 0009), keyed by the proxy's
  request id; tokens, the prices used and the cost (NUMERIC; NULL cost with `priced` false: unpriced);
  `proxy.billing.usage_record` says each column.
- `schema_migrations`: the migration files applied, with a checksum of each.
"""

from __future__ import annotations

USAGE_COLUMNS = (
    "request_id", "created_at", "key_name", "route", "asked_model", "model", "provider", "provider_model_id",
    "attempts", "status", "outcome", "streamed", "prompt_tokens", "cached_prompt_tokens", "completion_tokens",
    "reasoning_tokens", "usage_estimated", "price_prompt", "price_cached_prompt", "price_completion",
    "price_request", "priced", "cost_usd", "latency_ms", "first_output_ms", "finish_reason",
)  # fmt: skip

TABLES = ("providers", "models", "model_health_tracking", "model_health_history", "usage_records")

SCHEMA: dict[str, tuple[str, ...]] = {
    "providers": (
        "id", "slug", "name", "base_url", "api_key_env", "is_active", "priority", "health_status",
        "average_response_time_ms", "last_health_check_at", "created_at", "updated_at",
        "listing_failures", "listing_error",
    ),
    "models": (
        "id", "provider_id", "model_id", "provider_model_id", "pricing_prompt", "pricing_completion",
        "pricing_request", "context_length", "supports_streaming", "is_active", "health_status",
        "average_response_time_ms", "success_rate", "created_at", "updated_at",
        "max_completion_tokens", "supported_parameters", "input_modalities", "endpoints",
        "pricing_cached_prompt",
    ),
    "model_health_tracking": (
        "id", "offer_id", "provider", "model", "success_count", "error_count", "call_count",
        "consecutive_failures", "consecutive_successes", "average_response_time_ms", "last_status",
        "last_error", "circuit_state", "cooldown_until", "updated_at", "first_output",
    ),
    "model_health_history": (
        "id", "offer_id", "checked_at", "source", "health_status", "response_time_ms", "http_status", "error",
    ),
    "offer_catalog": (
        "offer_id", "model_id", "provider_model_id", "offer_is_active", "health_status", "success_rate",
        "pricing_prompt", "pricing_completion", "pricing_request", "context_length", "supports_streaming",
        "provider_id", "provider_slug", "provider_name", "base_url", "api_key_env", "provider_is_active",
        "priority", "provider_health_status", "response_time_ms", "circuit_state", "cooldown_until",
        "max_completion_tokens", "supported_parameters", "input_modalities", "pricing_cached_prompt",
    ),
    "key_spend": ("key_name", "period", "period_start", "spent_nano_usd", "updated_at"),
    "usage_records": USAGE_COLUMNS,
    "schema_migrations": ("version", "checksum", "applied_at"),
}
