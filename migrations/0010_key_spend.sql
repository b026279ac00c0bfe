-- Per-key budgets without Redis (issue 22): each instance adds its keys' spend here in batches and
-- reads every instance's total back (`proxy.billing.spend_sync`). One row per key name and budget
-- period; `spent_nano_usd` is whole nano-USD (1e-9 USD), each request's cost rounded up. Rows of past
-- periods are kept (a few per key and month) as a record of what each key spent.
CREATE TABLE key_spend (
    key_name TEXT NOT NULL,
    period TEXT NOT NULL CHECK (period IN ('day', 'month')),
    period_start TIMESTAMPTZ NOT NULL,
    spent_nano_usd BIGINT NOT NULL DEFAULT 0 CHECK (spent_nano_usd >= 0),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (key_name, period, period_start)
);
