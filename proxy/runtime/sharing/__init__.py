"""This instance's state shared with its peers: over Redis (`peers`), over Postgres without Redis
(`pg_peers`, and `pg_listen` for LISTEN/NOTIFY), in one wire format (`exchange`)."""
