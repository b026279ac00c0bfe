-- Named queries (procrastinate style): each block starts with `-- name: <name>`; see proxy/store/queries.py.
-- Values are always bind parameters. Offer reads select from the offer_catalog view (migration 0003).

-- name: ping
-- Is the database there (proxy.store.outage.probe)?
SELECT 1;

-- name: load_offers
-- Every active offer of every model: what the proxy's in-process catalog holds.
SELECT offer_id, model_id, provider_model_id, provider_slug, base_url, api_key_env, priority,
       health_status, provider_health_status, response_time_ms, pricing_prompt, pricing_completion,
       supports_streaming, success_rate, offer_is_active, provider_is_active, pricing_request,
       context_length, max_completion_tokens, supported_parameters, input_modalities, pricing_cached_prompt,
       (SELECT m.endpoints FROM models m WHERE m.id = offer_id) AS endpoints
FROM offer_catalog
WHERE offer_is_active AND provider_is_active
ORDER BY model_id, provider_slug, provider_model_id;

-- name: load_offers_for_models
-- The active offers of the given canonical models ($1 text[]), by models_active_model_id_idx.
SELECT offer_id, model_id, provider_model_id, provider_slug, base_url, api_key_env, priority,
       health_status, provider_health_status, response_time_ms, pricing_prompt, pricing_completion,
       supports_streaming, success_rate, offer_is_active, provider_is_active, pricing_request,
       context_length, max_completion_tokens, supported_parameters, input_modalities, pricing_cached_prompt,
       (SELECT m.endpoints FROM models m WHERE m.id = offer_id) AS endpoints
FROM offer_catalog
WHERE offer_is_active AND provider_is_active AND model_id = ANY($1::text[])
ORDER BY model_id, provider_slug, provider_model_id;

-- name: all_offers_for_model
-- Every offer of one model ($1), active or not, for operators.
SELECT offer_id, model_id, provider_model_id, provider_slug, base_url, api_key_env, priority,
       health_status, provider_health_status, response_time_ms, pricing_prompt, pricing_completion,
       supports_streaming, success_rate, offer_is_active, provider_is_active, pricing_request,
       context_length, max_completion_tokens, supported_parameters, input_modalities, pricing_cached_prompt,
       (SELECT m.endpoints FROM models m WHERE m.id = offer_id) AS endpoints
FROM offer_catalog
WHERE model_id = $1
ORDER BY provider_slug, provider_model_id;

-- name: inactive_providers
-- The slugs of providers the catalog marks inactive: the proxy routes none of their offers, pinned ones included.
SELECT slug FROM providers WHERE NOT is_active ORDER BY slug;

-- name: list_models
SELECT DISTINCT model_id
FROM offer_catalog
WHERE offer_is_active AND provider_is_active
ORDER BY model_id;

-- name: model_id_candidates
-- Resolving a client's model id (proxy.canonical.resolve_model_id): active offers whose canonical id is
-- one of $1 (text[]) or whose provider model id is $2, ignoring case.
SELECT DISTINCT model_id, provider_model_id
FROM offer_catalog
WHERE offer_is_active AND provider_is_active
  AND (model_id = ANY($1::text[]) OR lower(provider_model_id) = lower($2));

-- name: provider_model_id
-- The provider's own id for a canonical model ($1) on a provider ($2), active offers only.
SELECT provider_model_id
FROM offer_catalog
WHERE model_id = $1 AND provider_slug = $2 AND offer_is_active AND provider_is_active
ORDER BY provider_model_id
LIMIT 1;

-- name: provider_as_synced
-- Sync: a provider's ($1 slug) row as the last sync wrote it, locked until the sync's transaction ends.
SELECT id, name, base_url, api_key_env, is_active, priority, listing_failures
FROM providers
WHERE slug = $1
FOR UPDATE;

-- name: upsert_provider
-- Sync: the provider as configured; its health columns belong to the health worker. A row whose values
-- are unchanged is not touched.
INSERT INTO providers AS p (slug, name, base_url, api_key_env, is_active, priority)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (slug) DO UPDATE SET
    name = EXCLUDED.name, base_url = EXCLUDED.base_url, api_key_env = EXCLUDED.api_key_env,
    is_active = EXCLUDED.is_active, priority = EXCLUDED.priority, updated_at = now()
WHERE (p.name, p.base_url, p.api_key_env, p.is_active, p.priority)
      IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.base_url, EXCLUDED.api_key_env, EXCLUDED.is_active, EXCLUDED.priority)
RETURNING id;

-- name: listing_answered
-- Sync: the provider's ($1) listing answered with models: no failure in a row any more.
UPDATE providers SET listing_failures = 0, listing_error = NULL
WHERE id = $1 AND (listing_failures <> 0 OR listing_error IS NOT NULL);

-- name: listing_missed
-- Sync: the provider's ($1) listing failed, or answered with no models while the catalog held listed
-- offers of it ($2: what it said); returns the failures in a row, this one included.
UPDATE providers SET listing_failures = listing_failures + 1, listing_error = $2
WHERE id = $1
RETURNING listing_failures;

-- name: active_offer_ids_of_provider
-- Sync: the provider model ids of a provider's ($1 id) active offers.
SELECT provider_model_id FROM models WHERE provider_id = $1 AND is_active ORDER BY provider_model_id;

-- name: listing_failures_of_provider
-- Sync --dry-run: the failed listings in a row a provider ($1 slug) has had so far (none: no row).
SELECT listing_failures FROM providers WHERE slug = $1;

-- name: upsert_offers
-- Sync: one provider's ($1) offers, as parallel arrays. Unchanged rows are not touched and not
-- returned; `inserted` tells a new offer from an updated (or reactivated) one. The two list columns
-- come as comma-joined text ($10, $11; NULL = unknown, '' = none), since unnest flattens a 2-D array;
-- so do the endpoint kinds ($12; NULL = every kind its provider serves). $13: cached prompt prices.
INSERT INTO models AS m (provider_id, provider_model_id, model_id, pricing_prompt, pricing_completion,
                         pricing_request, context_length, supports_streaming, is_active,
                         max_completion_tokens, supported_parameters, input_modalities, endpoints,
                         pricing_cached_prompt)
SELECT $1, o.provider_model_id, o.model_id, o.pricing_prompt, o.pricing_completion, o.pricing_request,
       o.context_length, o.supports_streaming, TRUE, o.max_completion_tokens,
       string_to_array(o.supported_parameters, ','), string_to_array(o.input_modalities, ','),
       string_to_array(o.endpoints, ','), o.pricing_cached_prompt
FROM unnest($2::text[], $3::text[], $4::numeric[], $5::numeric[], $6::numeric[], $7::int[], $8::bool[],
            $9::int[], $10::text[], $11::text[], $12::text[], $13::numeric[])
    AS o (provider_model_id, model_id, pricing_prompt, pricing_completion, pricing_request,
          context_length, supports_streaming, max_completion_tokens, supported_parameters, input_modalities,
          endpoints, pricing_cached_prompt)
ON CONFLICT (provider_id, provider_model_id) DO UPDATE SET
    model_id = EXCLUDED.model_id,
    pricing_prompt = EXCLUDED.pricing_prompt,
    pricing_completion = EXCLUDED.pricing_completion,
    pricing_request = EXCLUDED.pricing_request,
    context_length = EXCLUDED.context_length,
    supports_streaming = EXCLUDED.supports_streaming,
    max_completion_tokens = EXCLUDED.max_completion_tokens,
    supported_parameters = EXCLUDED.supported_parameters,
    input_modalities = EXCLUDED.input_modalities,
    endpoints = EXCLUDED.endpoints,
    pricing_cached_prompt = EXCLUDED.pricing_cached_prompt,
    is_active = TRUE,
    updated_at = now()
WHERE (m.model_id, m.pricing_prompt, m.pricing_completion, m.pricing_request, m.context_length,
       m.supports_streaming, m.is_active, m.max_completion_tokens, m.supported_parameters, m.input_modalities,
       m.endpoints, m.pricing_cached_prompt)
      IS DISTINCT FROM
      (EXCLUDED.model_id, EXCLUDED.pricing_prompt, EXCLUDED.pricing_completion, EXCLUDED.pricing_request,
       EXCLUDED.context_length, EXCLUDED.supports_streaming, TRUE, EXCLUDED.max_completion_tokens,
       EXCLUDED.supported_parameters, EXCLUDED.input_modalities, EXCLUDED.endpoints,
       EXCLUDED.pricing_cached_prompt)
RETURNING m.provider_model_id, (m.xmax = 0) AS inserted;

-- name: deactivate_missing_offers
-- Sync: a provider's ($1) active offers that are no longer listed ($2 text[] = the ids kept).
UPDATE models
SET is_active = FALSE, updated_at = now()
WHERE provider_id = $1 AND is_active AND NOT (provider_model_id = ANY($2::text[]))
RETURNING provider_model_id;

-- name: active_offers_of_provider
-- Sync --dry-run: a provider's ($1 slug) active offers, to say which a sync would deactivate.
SELECT m.provider_model_id
FROM models m JOIN providers p ON p.id = m.provider_id
WHERE p.slug = $1 AND m.is_active
ORDER BY m.provider_model_id;

-- name: unconfigured_active_providers
-- Sync --dry-run: providers still active in the catalog but gone from the config ($1 text[] = configured slugs).
SELECT slug, name FROM providers WHERE is_active AND NOT (slug = ANY($1::text[])) ORDER BY slug;

-- name: ensure_tracking_rows
-- Sync: every offer of a provider ($1) gets its model_health_tracking row.
INSERT INTO model_health_tracking (offer_id, provider, model)
SELECT m.id, p.slug, m.provider_model_id
FROM models m
JOIN providers p ON p.id = m.provider_id
WHERE m.provider_id = $1
ON CONFLICT (offer_id) DO NOTHING;

-- name: deactivate_unconfigured_providers
-- Sync: providers still active in the catalog but gone from the config ($1 text[] = configured slugs).
UPDATE providers
SET is_active = FALSE, updated_at = now()
WHERE is_active AND NOT (slug = ANY($1::text[]))
RETURNING slug, name;

-- name: missing_tables
-- Check: which of the named relations ($1 text[]) do not exist.
SELECT t AS table_name
FROM unnest($1::text[]) AS t
WHERE to_regclass(t) IS NULL
ORDER BY t;

-- name: table_columns
-- Check and tests: the columns of the named tables and views ($1 text[]), in order.
SELECT table_name::text, column_name::text
FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = ANY($1::text[])
ORDER BY table_name, ordinal_position;

-- name: provider_counts
SELECT count(*) AS total, count(*) FILTER (WHERE is_active) AS active
FROM providers;

-- name: provider_key_variables
-- Check: the active providers that name the variable holding their key.
SELECT slug, api_key_env FROM providers WHERE is_active AND coalesce(api_key_env, '') <> '' ORDER BY slug;

-- name: offer_counts_by_provider
SELECT p.slug, count(m.id) AS total, count(m.id) FILTER (WHERE m.is_active) AS active
FROM providers p
LEFT JOIN models m ON m.provider_id = p.id
WHERE p.is_active
GROUP BY p.slug
ORDER BY p.slug;

-- name: alias_examples
-- Check: active offers whose provider id differs from the canonical id.
SELECT model_id, provider_slug, provider_model_id
FROM offer_catalog
WHERE offer_is_active AND provider_is_active AND model_id <> provider_model_id
ORDER BY model_id, provider_slug, provider_model_id
LIMIT 3;

-- name: tracking_coverage
-- Check: active offers, how many have their tracking row, and the calls recorded so far.
SELECT count(m.id) AS offers, count(t.id) AS tracked, coalesce(sum(t.call_count), 0)::bigint AS calls
FROM models m
LEFT JOIN model_health_tracking t ON t.offer_id = m.id
WHERE m.is_active;

-- name: ensure_tracking_for_keys
-- Health counts: a tracking row for each named offer that has none yet ($1 provider slugs,
-- $2 provider model ids, parallel arrays). Offers the catalog does not hold are skipped.
INSERT INTO model_health_tracking (offer_id, provider, model)
SELECT m.id, p.slug, m.provider_model_id
FROM unnest($1::text[], $2::text[]) AS k (provider, model)
JOIN providers p ON p.slug = k.provider
JOIN models m ON m.provider_id = p.id AND m.provider_model_id = k.model
ON CONFLICT (offer_id) DO NOTHING;

-- name: add_health_counts
-- Health counts (the proxies' passive flush and the worker's probes): add one batch of outcomes per
-- offer with atomic increments on the row itself, never read-modify-write. Parallel arrays, one
-- element per offer: $1 provider slug, $2 provider model id, $3 successes, $4 errors, $5 the run of
-- successes the batch ends with, $6 the run of errors it ends with, $7 mean latency (ms) of the
-- successes or null, $8 last error or null, $9 circuit state or null (keep), $10 cooldown end or null.
-- The latency EWMA (alpha 0.2 per sample, as proxy.runtime.state) moves by 1 - 0.8^successes towards the mean.
UPDATE model_health_tracking AS t SET
    success_count = t.success_count + b.successes,
    error_count = t.error_count + b.errors,
    consecutive_failures = CASE WHEN b.successes = 0 THEN t.consecutive_failures + b.errors
                                ELSE b.trailing_errors END,
    consecutive_successes = CASE WHEN b.errors = 0 THEN t.consecutive_successes + b.successes
                                 ELSE b.trailing_successes END,
    average_response_time_ms = CASE
        WHEN b.latency_ms IS NULL THEN t.average_response_time_ms
        WHEN t.average_response_time_ms IS NULL THEN b.latency_ms
        ELSE t.average_response_time_ms
             + (1 - power(0.8, b.successes)) * (b.latency_ms - t.average_response_time_ms) END,
    last_status = CASE WHEN b.successes + b.errors = 0 THEN t.last_status
                       WHEN b.trailing_errors > 0 THEN 'error' ELSE 'success' END,
    last_error = coalesce(b.last_error, t.last_error),
    circuit_state = coalesce(b.circuit_state, t.circuit_state),
    cooldown_until = CASE WHEN b.cooldown_until IS NULL THEN t.cooldown_until
                          ELSE greatest(t.cooldown_until, b.cooldown_until) END,
    updated_at = now()
FROM (
    SELECT m.id AS offer_id, c.*
    FROM unnest($1::text[], $2::text[], $3::int[], $4::int[], $5::int[], $6::int[], $7::float8[], $8::text[],
                $9::text[], $10::timestamptz[])
        AS c (provider, model, successes, errors, trailing_successes, trailing_errors, latency_ms, last_error,
              circuit_state, cooldown_until)
    JOIN providers p ON p.slug = c.provider
    JOIN models m ON m.provider_id = p.id AND m.provider_model_id = c.model
) AS b
WHERE t.offer_id = b.offer_id
RETURNING t.offer_id, t.provider, t.model, t.success_count, t.error_count, t.consecutive_failures,
          t.consecutive_successes;

-- name: add_traffic_history
-- Passive health: one `traffic` history row per named offer (parallel arrays: $1 provider slug,
-- $2 provider model id, $3 health status, $4 mean latency ms, $5 last HTTP status, $6 last error).
INSERT INTO model_health_history (offer_id, source, health_status, response_time_ms, http_status, error)
SELECT m.id, 'traffic', h.health_status, h.response_time_ms, h.http_status, h.error
FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::int[], $6::text[])
    AS h (provider, model, health_status, response_time_ms, http_status, error)
JOIN providers p ON p.slug = h.provider
JOIN models m ON m.provider_id = p.id AND m.provider_model_id = h.model;

-- name: tracking_summary
-- Check: what the tracking rows of the active offers hold (calls, statuses, cooldowns, last probe).
SELECT count(m.id) AS offers, count(t.id) AS tracked,
       coalesce(sum(t.success_count), 0)::bigint AS successes,
       coalesce(sum(t.error_count), 0)::bigint AS errors,
       count(*) FILTER (WHERE m.health_status = 'healthy') AS healthy,
       count(*) FILTER (WHERE m.health_status = 'degraded') AS degraded,
       count(*) FILTER (WHERE m.health_status = 'unhealthy') AS unhealthy,
       count(*) FILTER (WHERE m.health_status = 'unknown') AS unknown,
       count(*) FILTER (WHERE t.cooldown_until > now()) AS cooling,
       extract(epoch FROM now() - max(p.last_health_check_at))::float8 AS probed_ago_s
FROM models m
JOIN providers p ON p.id = m.provider_id
LEFT JOIN model_health_tracking t ON t.offer_id = m.id
WHERE m.is_active AND p.is_active;

-- name: tracked_offers
-- Check: each active offer's tracked calls and success rate, and its cooldown end (epoch seconds)
-- when one is in force.
SELECT c.provider_slug, c.provider_model_id, coalesce(t.call_count, 0)::bigint AS calls, c.success_rate,
       CASE WHEN c.cooldown_until > now() THEN extract(epoch FROM c.cooldown_until)::float8 END AS cooldown_until
FROM offer_catalog c
LEFT JOIN model_health_tracking t ON t.offer_id = c.offer_id
WHERE c.offer_is_active AND c.provider_is_active;

-- name: notify
-- An event for proxies without Redis ($1 channel, $2 JSON payload), sent at commit.
SELECT pg_notify($1, $2);

-- name: set_first_output
-- The tail: each offer's learned time to first output, as this proxy knows it now. Parallel arrays:
-- $1 provider slug, $2 provider model id, $3 the JSON (proxy.runtime.first_output.learned_json).
UPDATE model_health_tracking AS t SET first_output = f.first_output::jsonb
FROM unnest($1::text[], $2::text[], $3::text[]) AS f (provider, model, first_output)
WHERE t.provider = f.provider AND t.model = f.model;

-- name: first_output_for_model
-- Explain: the learned first-output times of a canonical model's ($1) offers, by offer key.
SELECT t.provider, t.model, t.first_output::text AS first_output
FROM model_health_tracking t
JOIN models m ON m.id = t.offer_id
WHERE m.model_id = $1 AND t.first_output IS NOT NULL;

-- name: add_key_spend
-- Budgets without Redis: one instance's spend since its last push, as parallel arrays (key name,
-- period, period start, nano-USD), added to every instance's; the new totals are returned.
INSERT INTO key_spend AS k (key_name, period, period_start, spent_nano_usd)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::bigint[])
ON CONFLICT (key_name, period, period_start) DO UPDATE SET
    spent_nano_usd = k.spent_nano_usd + EXCLUDED.spent_nano_usd, updated_at = now()
RETURNING key_name, period, period_start, spent_nano_usd

-- name: key_spend
-- Budgets without Redis: every instance's total for each (key name, period, period start) asked.
SELECT k.key_name, k.period, k.period_start, k.spent_nano_usd
FROM key_spend k
JOIN unnest($1::text[], $2::text[], $3::timestamptz[]) AS asked (key_name, period, period_start)
    USING (key_name, period, period_start)
-- name: usage_staging
-- Usage writer (proxy.billing.writer): this session's staging table, emptied at each commit; a batch
-- is COPYed into it, then moved with usage_insert_staged in the same transaction.
CREATE TEMP TABLE IF NOT EXISTS usage_staging (LIKE usage_records) ON COMMIT DELETE ROWS;

-- name: usage_insert_staged
-- The staged batch into usage_records; a request id already there (a replayed spool) is skipped.
INSERT INTO usage_records SELECT * FROM usage_staging ON CONFLICT (request_id) DO NOTHING;

-- name: usage_delete_old
-- Retention: up to $2 records older than $1 days, oldest first; called until it deletes fewer.
DELETE FROM usage_records
WHERE request_id IN (
    SELECT request_id FROM usage_records
    WHERE created_at < now() - make_interval(days => $1::int)
    ORDER BY created_at
    LIMIT $2
);

-- name: usage_record
-- One request's usage record ($1 = the proxy's request id).
SELECT * FROM usage_records WHERE request_id = $1;

-- name: usage_spend
-- Spend over [$1, $2) grouped by up to two of key | model | provider | day ($3, $4; '' = none),
-- only key $5 when not NULL. Cost sums priced records; unpriced_requests counts served, unpriced ones.
SELECT
    CASE $3::text WHEN 'key' THEN key_name WHEN 'model' THEN model WHEN 'provider' THEN COALESCE(provider, '')
        WHEN 'day' THEN to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') ELSE '' END AS group_1,
    CASE $4::text WHEN 'key' THEN key_name WHEN 'model' THEN model WHEN 'provider' THEN COALESCE(provider, '')
        WHEN 'day' THEN to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') ELSE '' END AS group_2,
    count(*) AS requests,
    count(*) FILTER (WHERE provider IS NOT NULL) AS served,
    count(*) FILTER (WHERE provider IS NOT NULL AND NOT priced) AS unpriced_requests,
    COALESCE(sum(cost_usd), 0) AS cost_usd,
    COALESCE(sum(prompt_tokens), 0) AS prompt_tokens,
    COALESCE(sum(cached_prompt_tokens), 0) AS cached_prompt_tokens,
    COALESCE(sum(completion_tokens), 0) AS completion_tokens,
    COALESCE(sum(reasoning_tokens), 0) AS reasoning_tokens
FROM usage_records
WHERE created_at >= $1 AND created_at < $2 AND ($5::text IS NULL OR key_name = $5)
GROUP BY 1, 2
ORDER BY 1, 2;
