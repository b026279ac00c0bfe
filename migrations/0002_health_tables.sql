-- Health: the live state of each offer (one row per offer) and its history (one shape for probes and traffic).

CREATE TABLE model_health_tracking (
    id                        BIGSERIAL PRIMARY KEY,
    offer_id                  BIGINT NOT NULL UNIQUE REFERENCES models (id) ON DELETE CASCADE,
    provider                  TEXT NOT NULL,                -- provider slug
    model                     TEXT NOT NULL,                -- provider model id: (provider, model) is the offer key
    success_count             BIGINT NOT NULL DEFAULT 0 CHECK (success_count >= 0),
    error_count               BIGINT NOT NULL DEFAULT 0 CHECK (error_count >= 0),
    call_count                BIGINT GENERATED ALWAYS AS (success_count + error_count) STORED,
    consecutive_failures      INTEGER NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
    consecutive_successes     INTEGER NOT NULL DEFAULT 0 CHECK (consecutive_successes >= 0),
    average_response_time_ms  DOUBLE PRECISION CHECK (average_response_time_ms >= 0),  -- an EWMA
    last_status               TEXT CHECK (last_status IN ('success', 'error')),
    last_error                TEXT,
    circuit_state             TEXT NOT NULL DEFAULT 'closed'
        CHECK (circuit_state IN ('closed', 'open', 'half_open')),
    cooldown_until            TIMESTAMPTZ,
    updated_at                TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE model_health_history (
    id                        BIGSERIAL PRIMARY KEY,
    offer_id                  BIGINT NOT NULL REFERENCES models (id) ON DELETE CASCADE,
    checked_at                TIMESTAMPTZ NOT NULL DEFAULT now(),
    source                    TEXT NOT NULL CHECK (source IN ('probe', 'traffic')),
    health_status             TEXT NOT NULL
        CHECK (health_status IN ('healthy', 'degraded', 'unhealthy', 'unknown')),
    response_time_ms          DOUBLE PRECISION CHECK (response_time_ms >= 0),
    http_status               INTEGER CHECK (http_status BETWEEN 100 AND 599),
    error                     TEXT
);

CREATE INDEX model_health_history_offer_checked_at_idx ON model_health_history (offer_id, checked_at);
-- Retention pruning deletes by time alone.
CREATE INDEX model_health_history_checked_at_idx ON model_health_history (checked_at);
