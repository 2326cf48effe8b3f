"""Spans as JSON lines in a file (``MAD_TRACE_FILE``): one object per finished span,
appended, so several processes may share one file and a test can read a whole trace."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


class JsonLinesExporter(SpanExporter):
    def __init__(self, path: str, service: str) -> None:
        self.path = path
        self.service = service
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for span in spans:
            ctx = span.get_span_context()
            if ctx is None:
                continue
            parent = span.parent
            record = {
                "service": self.service,
                "name": span.name,
                "trace_id": format(ctx.trace_id, "032x"),
                "span_id": format(ctx.span_id, "016x"),
                "parent_id": format(parent.span_id, "016x") if parent else None,
                "kind": span.kind.name,
            }
            lines.append(json.dumps(record) + "\n")
        with self._lock, open(self.path, "a", encoding="utf-8") as out:
            out.write("".join(lines))
        return SpanExportResult.SUCCESS
