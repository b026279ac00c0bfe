-- The tail (issue 17): each offer's learned time to first output, as the proxy instance that flushed
-- last learned it: {"stream": {...}, "non_stream": {...}}, each {samples, usual_ms, hedge_delay_ms,
-- deadline_s} (proxy.runtime.first_output). Null until a proxy has flushed some.
ALTER TABLE model_health_tracking ADD COLUMN first_output JSONB;
