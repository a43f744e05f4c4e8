"""What operators see: doctor() before the first run, structured log lines, OpenTelemetry spans, health().

    python examples/observability.py [DATA_DIR]

Needs the `otel` extra for the spans (`pip install "aioflamingock[otel]" opentelemetry-sdk`); without
opentelemetry-sdk installed it runs with logs only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

from myapp.startup import build_flamingock


# --8<-- [start:logging]
class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the fields aioflamingock attaches to its records."""

    FIELDS = ("service", "execution_id", "change_id", "status")

    def format(self, record: logging.LogRecord) -> str:
        line = {"level": record.levelname, "logger": record.name, "message": record.getMessage()}
        line.update({name: getattr(record, name) for name in self.FIELDS if hasattr(record, name)})
        return json.dumps(line)


handler = logging.StreamHandler(sys.stdout)
handler.setFormatter(JsonFormatter())
logging.getLogger("aioflamingock").addHandler(handler)
logging.getLogger("aioflamingock").setLevel(logging.INFO)
# --8<-- [end:logging]


def configure_tracing() -> Any:
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    except ImportError:
        return None
    # --8<-- [start:tracing]
    exporter = InMemorySpanExporter()  # in production: an OTLP exporter to your collector
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # aioflamingock's spans go wherever the global provider sends them
    # --8<-- [end:tracing]
    return exporter


async def main(data_dir: Path) -> None:
    exporter = configure_tracing()
    fl = build_flamingock(data_dir)

    # --8<-- [start:doctor]
    for check in await fl.doctor():
        mark = "ok " if check.ok else "BAD"
        print(f"doctor {mark} {check.subject} / {check.check}: {check.detail}")
        if check.fix:
            print(f"           fix: {check.fix}")
    # --8<-- [end:doctor]

    await fl.run()

    # --8<-- [start:health]
    health = await fl.health()
    print("health", json.dumps(health.to_dict()))  # serve this from /health; 503 unless health.ready
    # --8<-- [end:health]

    if exporter is not None:
        for span in exporter.get_finished_spans():
            attributes = dict(span.attributes or {})
            print("span", span.name, attributes.get("aioflamingock.change_id", attributes.get("aioflamingock.status")))


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(Path(sys.argv[1])))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(main(Path(tmp)))
