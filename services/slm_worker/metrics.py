"""Prometheus gauges for the worker's live load, read at scrape time.

A collector (rather than gauges updated on every token) keeps the generation
hot path free of metric bookkeeping; a scrape costs one ``list_models``.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.slm_worker.worker import Worker


class WorkerLoadCollector(Collector):
    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["model", "tier"]
        busy = GaugeMetricFamily("rationer_worker_busy_slots", "Slots generating now", labels=labels)
        free = GaugeMetricFamily("rationer_worker_free_slots", "Idle slots", labels=labels)
        queue = GaugeMetricFamily("rationer_worker_queue_depth", "Requests waiting for a slot", labels=labels)
        rate = GaugeMetricFamily(
            "rationer_worker_recent_tokens_per_second", "Per-stream generation speed, recent", labels=labels
        )
        for m in self._worker.list_models():
            key = [m.name, m.tier]
            busy.add_metric(key, m.load.busy_slots)
            free.add_metric(key, m.load.free_slots)
            queue.add_metric(key, m.load.queue_depth)
            rate.add_metric(key, m.load.recent_tokens_per_second)
        yield from (busy, free, queue, rate)
