"""The read-only views beside the proxied routes: the admin API (`admin`) and what each request
cost (`usage_views`: `/v1/generation`, `/admin/usage`)."""
