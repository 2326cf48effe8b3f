"""Fiedler's figures as Prometheus metrics, read from the worker at scrape time."""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mads.fiedler.contract import TaskStatus
from mads.fiedler.retention import Pruner
from mads.fiedler.worker import Worker

SQLITE_COMPANIONS = ("", "-wal", "-shm")
"""The SQLite file and what SQLite keeps beside it in WAL mode."""


def database_bytes(path: str) -> int | None:
    """What the SQLite task store takes on its volume: the file, its write-ahead log and
    its shared-memory index; None before the file exists."""
    total: int | None = None
    for suffix in SQLITE_COMPANIONS:
        try:
            size = os.stat(f"{path}{suffix}").st_size
        except OSError:
            continue
        total = (total or 0) + size
    return total


class FiedlerCollector(Collector):
    def __init__(
        self,
        worker: Worker,
        pruner: Pruner,
        *,
        database_file: str | None = None,
        volume_bytes: int | None = None,
    ) -> None:
        """``database_file``: the SQLite store's path (None with PostgreSQL, whose storage
        is not Fiedler's); ``volume_bytes``: the declared size of the volume it lives on."""
        self.worker = worker
        self.pruner = pruner
        self.database_file = database_file
        self.volume_bytes = volume_bytes

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
        yield from self._storage()

    def _storage(self) -> Iterator[Metric]:
        size = database_bytes(self.database_file) if self.database_file else None
        if size is not None:
            yield GaugeMetricFamily(
                "fiedler_database_bytes",
                "Size of the SQLite task store on its volume (the file, its WAL and index)",
                value=size,
            )
        if self.volume_bytes is not None:
            yield GaugeMetricFamily(
                "fiedler_volume_bytes",
                "Declared size of the volume the task store lives on",
                value=self.volume_bytes,
            )
