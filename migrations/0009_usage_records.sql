-- Usage records (issue 22): one row per request that reached the proxy, served or not, written in
-- batches by the proxy's usage writer (proxy.billing.writer). The key is the proxy's own request id,
-- never a provider's response id (which some providers repeat or leave null): a replayed batch
-- (the spool written after an outage) inserts nothing twice.
-- Money is NUMERIC: the prices used (USD per token, per request) and the cost; cost_usd NULL with
-- priced = FALSE is an unpriced offer (no price known), never a made-up zero.

CREATE TABLE usage_records (
    request_id            TEXT PRIMARY KEY,
    created_at            TIMESTAMPTZ NOT NULL,         -- when the request arrived
    key_name              TEXT NOT NULL DEFAULT '',     -- the client key's name ('' none or unnamed), never the key
    route                 TEXT NOT NULL,
    asked_model           TEXT NOT NULL DEFAULT '',     -- the model the client named
    model                 TEXT NOT NULL DEFAULT '',     -- the canonical model that served (else the one asked for)
    provider              TEXT,                         -- the provider that served (NULL: none did)
    provider_model_id     TEXT,
    attempts              JSONB NOT NULL DEFAULT '[]',  -- [{provider, provider_model_id, model, outcome, elapsed_ms, hedge}]
    status                INTEGER NOT NULL,
    outcome               TEXT NOT NULL,
    streamed              BOOLEAN NOT NULL,
    prompt_tokens         INTEGER NOT NULL DEFAULT 0,
    cached_prompt_tokens  INTEGER NOT NULL DEFAULT 0,
    completion_tokens     INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens      INTEGER NOT NULL DEFAULT 0,
    usage_estimated       BOOLEAN NOT NULL DEFAULT FALSE,  -- counted by the proxy, not reported by the provider
    price_prompt          NUMERIC,                      -- USD per token, of the offer that served
    price_cached_prompt   NUMERIC,
    price_completion      NUMERIC,
    price_request         NUMERIC,                      -- USD per request
    priced                BOOLEAN NOT NULL,
    cost_usd              NUMERIC,                      -- NULL when not priced
    latency_ms            DOUBLE PRECISION NOT NULL,    -- arrival to the end of the answer
    first_output_ms       DOUBLE PRECISION,             -- the serving attempt's time to its first output
    finish_reason         TEXT,
    CHECK (priced = (cost_usd IS NOT NULL))
);

CREATE INDEX usage_records_key_time_idx ON usage_records (key_name, created_at);
CREATE INDEX usage_records_model_time_idx ON usage_records (model, created_at);
CREATE INDEX usage_records_time_idx ON usage_records (created_at);  -- ranges over every key, and retention
