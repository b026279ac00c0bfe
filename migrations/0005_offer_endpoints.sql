-- The endpoint kinds an offer serves (chat, completions, embeddings, responses, moderations, images,
-- audio), as its provider's listing says (OpenRouter's output modalities, Together's `type`) or the
-- config's `endpoints`; NULL: every kind its provider serves. The proxy sends a request only to offers
-- that serve its endpoint, and the health worker probes an offer through an endpoint it serves.
-- The offer_catalog view is left as it is: the reads join `endpoints` from `models` by offer id.

ALTER TABLE models ADD COLUMN endpoints text[];
