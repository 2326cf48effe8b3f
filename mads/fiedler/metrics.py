"""Fiedler's figures as Prometheus metrics, read from the worker at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mads.fiedler.contract import TaskStatus
from mads.fiedler.retention import Pruner
from mads.fiedler.worker import Worker


class FiedlerCollector(Collector):
    def __init__(self, worker: Worker, pruner: Pruner) -> None:
        self.worker = worker
        self.pruner = pruner

    def collect(self) -> Iterator[Metric]:
        changes = CounterMetricFamily(
            "fiedler_task_status_changes",
            "Task status changes since start, by the status entered",
            labels=["status"],
        )
        for status in TaskStatus:
            changes.add_metric([status.value], self.worker.status_changes.get(status, 0))
        yield changes
        yield GaugeMetricFamily(
            "fiedler_queue_depth", "Tasks queued and not started", value=self.worker.queue_depth()
        )
        yield GaugeMetricFamily(
            "fiedler_queue_oldest_seconds",
            "How long the oldest queued task has waited to start (0 when none waits)",
            value=self.worker.oldest_queued_s(),
        )
        yield GaugeMetricFamily(
            "fiedler_tasks_running", "Provider calls running now", value=self.worker.running()
        )
        yield CounterMetricFamily(
            "fiedler_tasks_pruned",
            "Finished tasks deleted past the retention since start",
            value=self.pruner.pruned,
        )
