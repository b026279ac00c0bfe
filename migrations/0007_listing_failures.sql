-- A flaky listing never shrinks the catalog (issue 25): `failover sync` counts, per provider, the syncs
-- in a row whose listing failed or answered with no models while the catalog held listed offers of it,
-- and deactivates those offers only once the count reaches the provider's
-- `listing_failures_to_deactivate`; a listing that answers with models sets it back to 0.
ALTER TABLE providers ADD COLUMN listing_failures INTEGER NOT NULL DEFAULT 0 CHECK (listing_failures >= 0);
ALTER TABLE providers ADD COLUMN listing_error TEXT;
