"""
Scrape a server's C{/metrics} as Prometheus does, and look up its samples.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from support.clients import httpGet

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrapeMetrics(port: int) -> Samples:
    """
    Fetch C{/metrics} and parse it as Prometheus text; return every sample's
    value keyed by its name and labels.
    """
    status, body = httpGet(port, "/metrics")
    assert status == 200, (status, body)
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def sample(samples: Samples, name: str, **labels: str) -> float:
    """
    The value of the sample C{name} with exactly C{labels}; fail if there is
    none.
    """
    key = (name, frozenset(labels.items()))
    assert key in samples, f"no sample {name}{labels}; have {sorted(samples)}"
    return samples[key]
