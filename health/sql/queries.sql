-- Named queries of the health worker (same format as proxy/store/sql/queries.sql; see health/queries.py).
-- The batched health counts (`add_health_counts`) are shared with the proxies and live there.

-- name: probe_targets
-- Every active offer, for the worker to probe (the provider's URL, key and probe kind come from the config).
SELECT offer_id, model_id, provider_slug, provider_model_id,
       (SELECT m.endpoints FROM models m WHERE m.id = offer_id) AS endpoints
FROM offer_catalog
WHERE offer_is_active AND provider_is_active
ORDER BY provider_slug, provider_model_id;

-- name: health_inputs
-- What the status derivation reads, for every active offer: its current status and its tracking row.
SELECT m.id AS offer_id, m.model_id, p.slug AS provider_slug, m.provider_model_id, m.health_status,
       m.average_response_time_ms AS offer_response_time_ms, m.success_rate,
       t.success_count, t.error_count, t.consecutive_failures, t.consecutive_successes,
       t.average_response_time_ms, t.last_status
FROM models m
JOIN providers p ON p.id = m.provider_id
LEFT JOIN model_health_tracking t ON t.offer_id = m.id
WHERE m.is_active AND p.is_active
ORDER BY p.slug, m.provider_model_id;

-- name: provider_health
-- The active providers' current roll-up.
SELECT slug, health_status FROM providers WHERE is_active ORDER BY slug;

-- name: write_offer_health
-- Parallel arrays: $1 offer id, $2 status, $3 latency EWMA ms, $4 success rate; unchanged rows untouched.
UPDATE models AS m
SET health_status = w.health_status, average_response_time_ms = w.response_time_ms, success_rate = w.success_rate
FROM unnest($1::bigint[], $2::text[], $3::float8[], $4::float8[])
    AS w (offer_id, health_status, response_time_ms, success_rate)
WHERE m.id = w.offer_id
  AND (m.health_status, m.average_response_time_ms, m.success_rate)
      IS DISTINCT FROM (w.health_status, w.response_time_ms, w.success_rate);

-- name: write_provider_health
-- Parallel arrays: $1 provider slug, $2 roll-up status, $3 mean latency ms.
UPDATE providers AS p
SET health_status = w.health_status, average_response_time_ms = w.response_time_ms, last_health_check_at = now()
FROM unnest($1::text[], $2::text[], $3::float8[]) AS w (slug, health_status, response_time_ms)
WHERE p.slug = w.slug;

-- name: add_probe_history
-- One `probe` row per result (parallel arrays: $1 offer id, $2 derived status, $3 elapsed ms,
-- $4 HTTP status or null, $5 error or null).
INSERT INTO model_health_history (offer_id, source, health_status, response_time_ms, http_status, error)
SELECT h.offer_id, 'probe', h.health_status, h.response_time_ms, h.http_status, h.error
FROM unnest($1::bigint[], $2::text[], $3::float8[], $4::int[], $5::text[])
    AS h (offer_id, health_status, response_time_ms, http_status, error);

-- name: prune_history
-- Retention: history rows older than $1 seconds (by model_health_history_checked_at_idx).
DELETE FROM model_health_history WHERE checked_at < now() - make_interval(secs => $1::float8);
