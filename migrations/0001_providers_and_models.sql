-- The catalog: providers, and one row per offer (a provider's way of serving a canonical model).
-- Column names follow the "Gatewayz Provider Failover" guide; see proxy/schema.py for the documented list.

CREATE TABLE providers (
    id                        BIGSERIAL PRIMARY KEY,
    slug                      TEXT NOT NULL UNIQUE CHECK (slug <> ''),
    name                      TEXT NOT NULL,
    base_url                  TEXT NOT NULL,
    api_key_env               TEXT NOT NULL DEFAULT '',
    is_active                 BOOLEAN NOT NULL DEFAULT TRUE,
    priority                  INTEGER NOT NULL DEFAULT 0,
    health_status             TEXT NOT NULL DEFAULT 'unknown'
        CHECK (health_status IN ('healthy', 'degraded', 'unhealthy', 'unknown')),
    average_response_time_ms  DOUBLE PRECISION CHECK (average_response_time_ms >= 0),
    last_health_check_at      TIMESTAMPTZ,
    created_at                TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE models (
    id                        BIGSERIAL PRIMARY KEY,
    provider_id               BIGINT NOT NULL REFERENCES providers (id) ON DELETE CASCADE,
    model_id                  TEXT NOT NULL CHECK (model_id <> ''),
    provider_model_id         TEXT NOT NULL CHECK (provider_model_id <> ''),
    pricing_prompt            NUMERIC CHECK (pricing_prompt >= 0),       -- USD per prompt token
    pricing_completion        NUMERIC CHECK (pricing_completion >= 0),   -- USD per completion token
    pricing_request           NUMERIC CHECK (pricing_request >= 0),      -- USD per request
    context_length            INTEGER CHECK (context_length > 0),
    supports_streaming        BOOLEAN NOT NULL DEFAULT TRUE,
    is_active                 BOOLEAN NOT NULL DEFAULT TRUE,
    health_status             TEXT NOT NULL DEFAULT 'unknown'
        CHECK (health_status IN ('healthy', 'degraded', 'unhealthy', 'unknown')),
    average_response_time_ms  DOUBLE PRECISION CHECK (average_response_time_ms >= 0),
    success_rate              DOUBLE PRECISION CHECK (success_rate BETWEEN 0 AND 1),
    created_at                TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT models_provider_offer_key UNIQUE (provider_id, provider_model_id)
);

-- The ranked-offer lookup: active offers of one canonical model.
CREATE INDEX models_active_model_id_idx ON models (model_id) WHERE is_active;
