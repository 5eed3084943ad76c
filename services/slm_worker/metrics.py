"""Prometheus gauges for the worker's live load, read at scrape time.

A collector (rather than gauges updated on every token) keeps the generation
hot path free of metric bookkeeping; a scrape costs one ``list_models``.

Two of these are the autoscaling signals (deploy/k8s, docs/deploy.md):
``rationer_worker_queue_depth`` (calls waiting for a slot now) and
``rationer_worker_deferred_requests_total`` (calls turned away because the
queue was full or the worker was draining). The second only ever grows, so it
is a counter: scale on its ``rate()``.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from services.slm_worker.worker import Worker

QUEUE_DEPTH = "rationer_worker_queue_depth"
# prometheus_client appends "_total" to a counter family's name on exposition.
DEFERRED = "rationer_worker_deferred_requests"
# Every reason SlotPool counts, so each series exists (at 0) before the first
# refusal and a rate() over it is never empty.
DEFERRED_REASONS = ("queue_full", "draining")


class WorkerLoadCollector(Collector):
    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        labels = ["model", "tier"]
        busy = GaugeMetricFamily("rationer_worker_busy_slots", "Slots generating now", labels=labels)
        free = GaugeMetricFamily("rationer_worker_free_slots", "Idle slots", labels=labels)
        queue = GaugeMetricFamily(QUEUE_DEPTH, "Requests waiting for a slot", labels=labels)
        capacity = GaugeMetricFamily("rationer_worker_queue_capacity", "Most requests that may wait", labels=labels)
        rate = GaugeMetricFamily(
            "rationer_worker_recent_tokens_per_second", "Per-stream generation speed, recent", labels=labels
        )
        deferred = CounterMetricFamily(
            DEFERRED, "Requests turned away for another worker or tier (queue full, draining)",
            labels=[*labels, "reason"],
        )  # fmt: skip
        for m in self._worker.list_models():
            key = [m.name, m.tier]
            busy.add_metric(key, m.load.busy_slots)
            free.add_metric(key, m.load.free_slots)
            queue.add_metric(key, m.load.queue_depth)
            capacity.add_metric(key, m.load.queue_capacity)
            rate.add_metric(key, m.load.recent_tokens_per_second)
            counts = self._worker.model(m.name).pool.deferred
            for reason in DEFERRED_REASONS:
                deferred.add_metric([*key, reason], counts[reason])
        yield from (busy, free, queue, capacity, rate, deferred)
