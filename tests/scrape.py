"""Reading a Prometheus text page the way Prometheus does (prometheus_client's parser)."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Scrape:
    """Every sample of one page, by sample name and labels."""

    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]
    types: dict[str, str]  # family name -> counter, gauge, histogram, ...

    @classmethod
    def parse(cls, text: str) -> Scrape:
        samples = {}
        types = {}
        for family in text_string_to_metric_families(text):
            types[family.name] = family.type
            for sample in family.samples:
                samples[sample.name, frozenset(sample.labels.items())] = sample.value
        return cls(samples, types)

    def value(self, name: str, **labels: str) -> float:
        """The sample with exactly these labels; 0 if the page has none (a labelled child
        that was never used is not on the page yet)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """The sum of the samples of that name whose labels include these."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= ls)

    def __sub__(self, before: Scrape) -> Scrape:
        """What changed since `before` (for counters: what this test added)."""
        return Scrape(
            {k: v - before.samples.get(k, 0.0) for k, v in self.samples.items()}, self.types
        )


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    """GET a page: (status, Content-Type, body)."""
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.status, answer.headers["Content-Type"], answer.read().decode()
