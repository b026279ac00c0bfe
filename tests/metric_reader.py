"""Reading Prometheus text: one reader for every test (prometheus_client's own parser)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def metric_value(exposition: str | bytes, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when there are none).

    `name` is a sample's name as exposed (`gatewayz_requests_total`, `..._bucket`, `..._count`)."""
    text = exposition.decode() if isinstance(exposition, bytes) else exposition
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += float(sample.value)
    return total
