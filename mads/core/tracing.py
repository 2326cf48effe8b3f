"""Traces: W3C trace context from the outside client through Grace, the bus envelope,
Fiedler and its call into Sequential Thinking, as OpenTelemetry spans.

Off unless asked for, and then the API's no-op tracer costs nothing: a MAD exports spans
over OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (the OpenTelemetry SDK's own
variables configure it), or writes them as JSON lines to ``MAD_TRACE_FILE`` (for a test or
a look on one host). The MCP SDK opens a span for each request it handles and for each one
its client sends (``_meta.traceparent``); this module adds what it cannot see: the HTTP
``traceparent`` header of an outside client, the direct tool-call path, and the bus.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

TRACER = trace.get_tracer("mads")
TRACE_FILE_VARIABLE = "MAD_TRACE_FILE"
TRACEPARENT = "traceparent"
_configured: list[bool] = []


def enabled() -> bool:
    """Whether this process records spans (a provider was set up)."""
    return bool(_configured)


def setup(service_name: str, env: Mapping[str, str] | None = None) -> bool:
    """Install the OpenTelemetry SDK's tracer provider when spans are wanted; True if so."""
    env = os.environ if env is None else env
    endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    trace_file = env.get(TRACE_FILE_VARIABLE, "").strip()
    if _configured or not (endpoint or trace_file):
        return enabled()
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SimpleSpanProcessor,
    )

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter,
        )

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if trace_file:
        from mads.core.trace_file import JsonLinesExporter

        provider.add_span_processor(
            SimpleSpanProcessor(JsonLinesExporter(trace_file, service_name))
        )
    trace.set_tracer_provider(provider)
    _configured.append(True)
    return True


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, to carry over the bus (None when not
    tracing)."""
    if not _configured:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get(TRACEPARENT)


@contextlib.contextmanager
def continued(traceparent: str | None, name: str, kind: trace.SpanKind) -> Iterator[None]:
    """Run the block in a span continuing ``traceparent`` (a no-op when not tracing)."""
    if not _configured:
        yield
        return
    parent = propagate.extract({TRACEPARENT: traceparent}) if traceparent else None
    with TRACER.start_as_current_span(name, context=parent, kind=kind):
        yield


@contextlib.contextmanager
def from_headers(headers: Mapping[str, str]) -> Iterator[None]:
    """Make an incoming HTTP request's ``traceparent`` the current context (so the MCP
    SDK's server span, or the direct path's, continues the client's trace)."""
    value = headers.get(TRACEPARENT) if _configured else None
    if not value:
        yield
        return
    token = otel_context.attach(propagate.extract({TRACEPARENT: value}))
    try:
        yield
    finally:
        otel_context.detach(token)


def captured() -> Any:
    """The current context, to run later work (a task's provider call) in it."""
    return otel_context.get_current() if _configured else None


@contextlib.contextmanager
def within(captured_context: Any, name: str) -> Iterator[None]:
    """Run the block in a span under a context captured earlier (no-op when not tracing)."""
    if not _configured or captured_context is None:
        yield
        return
    token = otel_context.attach(captured_context)
    try:
        with TRACER.start_as_current_span(name, kind=trace.SpanKind.INTERNAL):
            yield
    finally:
        otel_context.detach(token)
