"""What tracing costs a MAD when it is off (no OTEL_EXPORTER_OTLP_ENDPOINT, no
MAD_TRACE_FILE): the hooks on the direct tool-call path, the bus and a task's run, timed
against the same loop without them, in one run. Prints the cost per call and the ratio.

    .venv/bin/python bench/tracing_noop.py
"""

from __future__ import annotations

import time

from opentelemetry.trace import SpanKind

from mads.core import tracing

N = 200_000


def bare() -> float:
    start = time.perf_counter()
    for _ in range(N):
        pass
    return time.perf_counter() - start


def hooked() -> float:
    start = time.perf_counter()
    for _ in range(N):
        with tracing.continued(None, "tools/call x", SpanKind.SERVER):
            pass
        tracing.current_traceparent()
        tracing.captured()
    return time.perf_counter() - start


def main() -> None:
    assert not tracing.enabled(), "run without OTEL_EXPORTER_OTLP_ENDPOINT / MAD_TRACE_FILE"
    bare()
    hooked()  # warm up
    base = min(bare() for _ in range(5))
    cost = min(hooked() for _ in range(5))
    per_call_ns = (cost - base) / N * 1e9
    print(f"tracing off: {per_call_ns:.0f} ns per tool call for the three hooks")
    print(f"ratio hooked/bare loop: {cost / base:.1f} (a direct tool call takes ~1 ms)")
    print(f"share of a 1 ms call: {per_call_ns / 1e6:.4%}")


if __name__ == "__main__":
    main()
