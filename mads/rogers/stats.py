"""Traffic counts: since start, per sender, per channel class, in time windows, and the
recent rate. Memory is bounded: per-minute buckets for the retention period, a cap on
distinct senders (the rest count under ``(other)``)."""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

OTHER_SENDER = "(other)"
RATE_WINDOW_S = 60
CLASSES = ("direct", "stream", "system", "topic", "other")


@dataclass
class _Bucket:
    minute: int
    total: int = 0
    senders: Counter[str] = field(default_factory=Counter)
    classes: Counter[str] = field(default_factory=Counter)


class TrafficStats:
    def __init__(
        self,
        *,
        max_senders: int = 1000,
        retention_h: int = 24,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_senders = max_senders
        self.retention_h = retention_h
        self._clock = clock
        self.started = clock()
        self.total = 0
        self.malformed = 0
        self.senders: Counter[str] = Counter()
        self.classes: Counter[str] = Counter(dict.fromkeys(CLASSES, 0))
        self._minutes: deque[_Bucket] = deque()
        self._seconds: deque[list[int]] = deque()  # [second, count]

    def _sender_label(self, sender: str) -> str:
        if sender in self.senders or len(self.senders) < self.max_senders:
            return sender
        return OTHER_SENDER

    def record(self, sender: str, channel_class: str) -> None:
        now = self._clock()
        label = self._sender_label(sender)
        self.total += 1
        self.senders[label] += 1
        self.classes[channel_class] += 1
        minute = int(now // 60)
        if not self._minutes or self._minutes[-1].minute != minute:
            self._minutes.append(_Bucket(minute))
            horizon = minute - self.retention_h * 60
            while self._minutes and self._minutes[0].minute <= horizon:
                self._minutes.popleft()
        bucket = self._minutes[-1]
        bucket.total += 1
        bucket.senders[label] += 1
        bucket.classes[channel_class] += 1
        second = int(now)
        if self._seconds and self._seconds[-1][0] == second:
            self._seconds[-1][1] += 1
        else:
            self._seconds.append([second, 1])
            while self._seconds and self._seconds[0][0] <= second - RATE_WINDOW_S:
                self._seconds.popleft()

    def record_malformed(self) -> None:
        self.malformed += 1

    def rate_per_s(self) -> float:
        """Messages per second over the last minute (or since start, if younger)."""
        now = self._clock()
        window = min(RATE_WINDOW_S, max(now - self.started, 1.0))
        recent = sum(n for second, n in self._seconds if second > now - window)
        return round(recent / window, 3)

    def summary(self, hours: float | None = None) -> dict[str, Any]:
        now = self._clock()
        if hours is None:
            total, senders, classes = self.total, self.senders, self.classes
        else:
            since_minute = (now - hours * 3600) // 60
            total, senders, classes = 0, Counter(), Counter(dict.fromkeys(CLASSES, 0))
            for bucket in self._minutes:
                if bucket.minute >= since_minute:
                    total += bucket.total
                    senders.update(bucket.senders)
                    classes.update(bucket.classes)
        return {
            "status": "success",
            "window_hours": hours,
            "total_messages": total,
            "by_sender": dict(sorted(senders.items())),
            "by_channel_class": {name: classes.get(name, 0) for name in CLASSES},
            "malformed_messages": self.malformed,
            "rate_per_s": self.rate_per_s(),
            "uptime_s": round(now - self.started, 3),
        }
