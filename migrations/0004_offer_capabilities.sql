-- What an offer can do, next to its context_length (issue 12): NULL = unknown, never guessed.
-- Filled by `failover sync` from listings that publish it (OpenRouter, Groq, Together) and from
-- the config's static offers. Routing skips offers known not to fit a request.

ALTER TABLE models
    ADD COLUMN max_completion_tokens  INTEGER CHECK (max_completion_tokens > 0),
    ADD COLUMN supported_parameters   TEXT[],   -- OpenAI request fields honoured: tools, response_format, ...
    ADD COLUMN input_modalities       TEXT[];   -- text, image, audio, file, ...

-- The view gains the columns at its end (CREATE OR REPLACE VIEW may only append).
CREATE OR REPLACE VIEW offer_catalog AS
SELECT
    m.id                        AS offer_id,
    m.model_id,
    m.provider_model_id,
    m.is_active                 AS offer_is_active,
    m.health_status,
    m.success_rate,
    m.pricing_prompt,
    m.pricing_completion,
    m.pricing_request,
    m.context_length,
    m.supports_streaming,
    p.id                        AS provider_id,
    p.slug                      AS provider_slug,
    p.name                      AS provider_name,
    p.base_url,
    p.api_key_env,
    p.is_active                 AS provider_is_active,
    p.priority,
    p.health_status             AS provider_health_status,
    COALESCE(t.average_response_time_ms, m.average_response_time_ms, p.average_response_time_ms)
                                AS response_time_ms,
    t.circuit_state,
    t.cooldown_until,
    m.max_completion_tokens,
    m.supported_parameters,
    m.input_modalities
FROM models m
JOIN providers p ON p.id = m.provider_id
LEFT JOIN model_health_tracking t ON t.offer_id = m.id;
