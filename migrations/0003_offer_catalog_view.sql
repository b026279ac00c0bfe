-- One definition of "an offer as the catalog sees it": the offer, its provider and its live health.
-- Every read of ranked offers goes through this view; the planner inlines it, so a filter on
-- offer_is_active still uses models_active_model_id_idx.

CREATE VIEW offer_catalog AS
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
    t.cooldown_until
FROM models m
JOIN providers p ON p.id = m.provider_id
LEFT JOIN model_health_tracking t ON t.offer_id = m.id;
