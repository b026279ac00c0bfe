-- Cached prompt prices (issue 22): USD per cached prompt token (a cache read), NUMERIC like the other
-- prices; NULL = the listing or config gives none, and a cached token is priced as a prompt token.
-- Filled by `failover sync` (OpenRouter's `pricing.input_cache_read`) and the config's offers.

ALTER TABLE models ADD COLUMN pricing_cached_prompt NUMERIC CHECK (pricing_cached_prompt >= 0);

-- The view gains the column at its end (CREATE OR REPLACE VIEW may only append).
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
    m.input_modalities,
    m.pricing_cached_prompt
FROM models m
JOIN providers p ON p.id = m.provider_id
LEFT JOIN model_health_tracking t ON t.offer_id = m.id;
