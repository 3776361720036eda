"""Distributed tracing (OpenTelemetry): one trace follows a request from the HTTP edge
through actor calls, batches, group commits, SQL, Redis and the event consumers.

Off by default. ``configure(settings, process)`` runs once per process (the ingress
replica, each actor: ``traced_actor`` does it for the registry's actors) and turns it on
when an exporter is set: OTLP/HTTP to ``trace_otlp_endpoint`` (a collector, Jaeger), and/or
JSON lines under ``var/traces/`` (``trace_file``). Sampling is decided once, at the root,
with probability ``trace_sample_ratio``; every other process follows its parent's decision
(a client's ``traceparent`` with the sampled flag is always followed). Guarantees:

- **off costs nothing**: hot paths test the module flag ``enabled`` (one global read) and
  do nothing else; SQL and Redis are instrumented only when tracing is configured;
- **no orphan spans**: below the edge, spans are made only under a recording parent, so
  background loops (polls, sweeps, heartbeats) and unsampled requests make none;
- **batches**: requests coalesced into one call (``raymall.batching.Batcher``) or one group
  commit (``actors.group_commit``) get one span for the batch, a child of the first
  sampled request's span and *linked* to every sampled request's span; each of those
  request spans gets a link back to the batch span and its id as an attribute, so every
  request's trace reaches the batch and the commit under it;
- **across processes**: actor calls carry the W3C ``traceparent`` of a client span
  (``actors.caller.ActorCaller`` → ``traced_call`` on the actor), and outbox events carry it
  in their payload (``with_trace``, key ``_trace``) so a consumer joins the trace that
  wrote the event.

The trace id also goes into JSON log lines (``raymall.logs``) and error bodies
(``raymall.errors.error_body``) through hooks set here.
"""

from __future__ import annotations

import inspect
import json
import os
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span

    from raymall.settings import Settings

enabled = False  # tracing configured in this process: hot paths test this first
sample_ratio = 0.0  # the share of requests without a client's trace that the edge traces
slice_ns = 0  # the sampled time slices' length (``trace_sample_slice_ms``); 0: per request
_slice = -1  # the current slice's number, and whether it is sampled
_slice_sampled = False
configured_ratio = 0.0  # ``trace_sample_ratio`` from the settings; ``set_sample_ratio(None)``
TRACE_KEY = "_trace"  # the outbox payload key that carries the traceparent
_tracer: Any = None
_provider: Any = None
_lock = threading.Lock()


# ---- configuration ----------------------------------------------------------------------
def configure(settings: Settings, process: str, *, exporter: SpanExporter | None = None) -> bool:
    """Turn tracing on for this process if the settings name an exporter (or ``exporter``
    is given, for tests); True if it is on. Idempotent."""
    global enabled, _tracer, _provider, _current_span, configured_ratio, slice_ns
    exporters: list[Any] = [exporter] if exporter is not None else []
    if settings.trace_otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporters.append(OTLPSpanExporter(endpoint=settings.trace_otlp_endpoint))
    if settings.trace_file:
        exporters.append(JsonLinesExporter(Path(settings.var_dir) / "traces"))
    if not exporters:
        return enabled
    with _lock:
        if enabled:
            return True
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

        resource = Resource.create(
            {"service.name": "raymall", "raymall.process": process, "process.pid": os.getpid()}
        )
        # roots are sampled by the edge (sample_root: an unsampled request makes no span at
        # all); everything else follows its parent
        sampler = ParentBased(ALWAYS_ON)
        configured_ratio = settings.trace_sample_ratio
        slice_ns = settings.trace_sample_slice_ms * 1_000_000
        set_sample_ratio(None)  # and no slice drawn under an earlier configuration
        provider = TracerProvider(resource=resource, sampler=sampler)
        for exp in exporters:
            if exporter is not None and exp is exporter:  # tests read spans at once
                provider.add_span_processor(SimpleSpanProcessor(exp))
            else:
                provider.add_span_processor(
                    BatchSpanProcessor(exp, schedule_delay_millis=1000, max_queue_size=8192)
                )
        _provider, _tracer = provider, provider.get_tracer("raymall")
        _bind_api()
        _instrument_sql()
        _instrument_redis()
        from raymall import errors, logs

        errors.trace_id_hook = current_trace_id
        logs.trace_ids_hook = current_ids
        enabled = True
    return True


def disable() -> None:
    """Turn tracing off in this process (tests): the hooks go, the instrumentation idles."""
    global enabled, _tracer, _provider
    with _lock:
        from raymall import errors, logs

        errors.trace_id_hook = None
        logs.trace_ids_hook = None
        enabled = False
        if _provider is not None:
            _provider.shutdown()
        _provider = _tracer = None


def sample_root() -> bool:
    """Whether a request that brings no trace of its own is traced: with probability
    ``sample_ratio``, drawn per time slice of ``slice_ns`` (or per request when 0).

    Slices, because a batch costs tracing per batch: purchases coalesced into one shard
    call and one group commit make one batch span, one actor call span and one commit, and
    all of them are made if *any* member is sampled. Drawn per request at 10%, a batch of
    12 holds a sampled purchase 72% of the time, so nearly every commit would be traced.
    Drawn per slice, the requests that arrive together are sampled together and make the
    same batches: about 10% of the requests *and* of the batches are traced. Every process
    draws the same slices (the slice number, from the wall clock, hashed), so requests from
    different replicas that meet in one commit agree too. Each request is still traced with
    probability ``sample_ratio``; sampled requests come in runs of one slice."""
    if sample_ratio >= 1.0:
        return True
    if sample_ratio <= 0.0:
        return False
    if not slice_ns:
        return random.random() < sample_ratio
    global _slice, _slice_sampled
    number = time.time_ns() // slice_ns
    if number != _slice:
        _slice, _slice_sampled = number, slice_draw(number) < sample_ratio
    return _slice_sampled


_MASK64 = (1 << 64) - 1


def slice_draw(number: int) -> float:
    """A uniform draw in [0, 1) that is a function of the slice ``number`` alone, the same
    in every process (the splitmix64 finalizer: neighbouring numbers give unrelated
    draws)."""
    z = (number * 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) / 2.0**64


def set_sample_ratio(ratio: float | None) -> float:
    """Change the edge's sampling ratio while the process runs (``None``: back to the
    settings' ``trace_sample_ratio``); answers the ratio now in force. Only the edge
    decides (``sample_root``), so this is the whole switch: every other process follows
    the sampled requests' parents."""
    global sample_ratio, _slice
    sample_ratio = configured_ratio if ratio is None else min(1.0, max(0.0, float(ratio)))
    _slice = -1  # the current slice is drawn again, against the new ratio
    return sample_ratio


def flush(timeout_ms: int = 5000) -> None:
    """Export every finished span now (before a process exits, and in tests)."""
    if _provider is not None:
        _provider.force_flush(timeout_ms)


def tracer() -> Any:
    return _tracer


# ---- the current span ---------------------------------------------------------------------
def recording_span() -> Span | None:
    """The current span, if this process traces and it is sampled."""
    if not enabled:
        return None
    span = _current_span()
    return span if span.is_recording() else None


def _current_span(context: Context | None = None) -> Any:
    from opentelemetry import trace

    return trace.get_current_span(context)


def _bind_api() -> None:
    """Bind the OpenTelemetry names the hot paths use, once: no import statement (nor
    attribute chain) per call."""
    global _current_span, _SpanContext, _NonRecordingSpan, _set_span_in_context
    global _attach, _detach, _use_span, _INVALID_SPAN, _Link, _SERVER, _CLIENT, _CONSUMER
    global _INTERNAL, _TraceFlags
    from opentelemetry import context, trace
    from opentelemetry.trace import (
        Link,
        NonRecordingSpan,
        SpanContext,
        SpanKind,
        TraceFlags,
        get_current_span,
        set_span_in_context,
        use_span,
    )

    _current_span = get_current_span
    _SpanContext, _NonRecordingSpan, _set_span_in_context = (
        SpanContext,
        NonRecordingSpan,
        set_span_in_context,
    )
    _attach, _detach, _use_span, _INVALID_SPAN = (
        context.attach,
        context.detach,
        use_span,
        trace.INVALID_SPAN,
    )
    _Link, _TraceFlags = Link, TraceFlags
    _SERVER, _CLIENT, _CONSUMER, _INTERNAL = (
        SpanKind.SERVER,
        SpanKind.CLIENT,
        SpanKind.CONSUMER,
        SpanKind.INTERNAL,
    )


_SpanContext: Any = None
_NonRecordingSpan: Any = None
_set_span_in_context: Any = None
_attach: Any = None
_detach: Any = None
_use_span: Any = None
_INVALID_SPAN: Any = None
_Link: Any = None
_TraceFlags: Any = None
_SERVER: Any = None
_CLIENT: Any = None
_CONSUMER: Any = None
_INTERNAL: Any = None


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current span, hex, or None."""
    ctx = _current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def current_trace_id() -> str | None:
    ids = current_ids() if enabled else None
    return ids[0] if ids else None


def traceparent(span: Span) -> str:
    """The W3C ``traceparent`` header value of ``span``."""
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


_HEX = frozenset("0123456789abcdef")


def parse_traceparent(carrier: str | None) -> tuple[int, int, int] | None:
    """(trace id, parent span id, flags) of a W3C ``traceparent`` value, or None if it is
    absent or malformed (as OpenTelemetry's propagator reads it: version ``ff``, ids of
    zeros, wrong lengths, upper-case hex and a version 00 with more fields are refused)."""
    if not carrier:
        return None
    carrier = carrier.strip(" \t")
    size = len(carrier)
    if (
        size < 55
        or carrier[2] != "-"
        or carrier[35] != "-"
        or carrier[52] != "-"
        or (size > 55 and (carrier[55] != "-" or carrier[:2] == "00"))
        or carrier[:2] == "ff"
        or not _HEX.issuperset(carrier[:2] + carrier[3:35] + carrier[36:52] + carrier[53:55])
    ):
        return None
    trace_id, span_id = int(carrier[3:35], 16), int(carrier[36:52], 16)
    if not trace_id or not span_id:
        return None
    return trace_id, span_id, int(carrier[53:55], 16)


def extract(carrier: str | None) -> Context | None:
    """The context a ``traceparent`` value names (None if absent or malformed)."""
    parsed = parse_traceparent(carrier)
    if parsed is None:
        return None
    trace_id, span_id, flags = parsed
    if _SpanContext is None:
        _bind_api()
    parent = _SpanContext(trace_id, span_id, is_remote=True, trace_flags=_TraceFlags(flags))
    return _set_span_in_context(_NonRecordingSpan(parent))  # type: ignore[no-any-return]


# ---- spans for the layers -----------------------------------------------------------------
def start_client(name: str, **attributes: Any) -> Span | None:
    """A CLIENT span under the current recording span (None when there is none)."""
    if recording_span() is None:
        return None
    return _tracer.start_span(name, kind=_CLIENT, attributes=attributes or None)


def use(span: Span | None) -> Any:
    """A context manager making ``span`` current (and ending it); with None, a context in
    which no recording span is current, so nothing below is parented to a stale one (when
    none is current already, it changes nothing and costs one look)."""
    if span is None:
        if not enabled or recording_span() is None:
            return nullcontext()
        return _use_span(_INVALID_SPAN, end_on_exit=False)
    return _use_span(span, end_on_exit=True, record_exception=True, set_status_on_exception=True)


def start_batch(name: str, members: Sequence[Span], **attributes: Any) -> Span | None:
    """The span of one batch of sampled requests ``members`` (see the module docstring):
    a child of the first, linked to each; each member records it."""
    if not members:
        return None
    links = [_Link(m.get_span_context()) for m in members]
    parent = _set_span_in_context(members[0])
    attrs = {"raymall.batch.size": len(members), **attributes}
    batch = _tracer.start_span(name, context=parent, links=links, attributes=attrs)
    batch_ctx = batch.get_span_context()
    batch_id = format(batch_ctx.span_id, "016x")
    for member in members:
        member.add_link(batch_ctx, {"raymall.link": "batch"})  # ignored once ended
        member.set_attribute("raymall.batch.span_id", batch_id)
    return batch


def server_span(name: str, carrier: str | None, **attributes: Any) -> Span | None:
    """A SERVER span continuing the caller's trace (None if the caller is not traced)."""
    ctx = extract(carrier)
    if ctx is None:
        return None
    return _tracer.start_span(name, context=ctx, kind=_SERVER, attributes=attributes or None)


def with_trace(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` plus the current recording span's ``traceparent`` under ``_trace`` (for
    an outbox event), or ``payload`` itself when nothing is traced."""
    span = recording_span()
    if span is None or not isinstance(payload, dict):
        return payload
    return {**payload, TRACE_KEY: traceparent(span)}


# ---- the request at the edge -----------------------------------------------------------
def start_request(
    method: str, path: str, headers: Mapping[bytes, bytes] | Sequence[tuple[bytes, bytes]]
) -> tuple[Span, tuple[bytes, bytes], Any] | None:
    """The SERVER span of an HTTP request, made current: (span, its ``traceparent``
    response header, the context token), continuing the client's ``traceparent`` if it
    sends one; None for a request that brings no trace and is not sampled (``sample_root``):
    then nothing at all is made, and nothing below the edge records."""
    parent = extract(headers_traceparent(headers))
    if parent is None and not sample_root():
        return None
    span = _tracer.start_span(
        method,
        context=parent,
        kind=_SERVER,
        attributes={"http.request.method": method, "url.path": path},
    )
    token = _attach(_set_span_in_context(span))
    return span, (b"traceparent", traceparent(span).encode("latin-1")), token


def end_request(
    traced: tuple[Span, Any, Any], name: str, attributes: dict[str, Any], error: bool
) -> None:
    """End the request's span (from ``start_request``): named ``name`` (the route
    template), with ``attributes`` set in one call, an error status if ``error``."""
    span, _, token = traced
    if span.is_recording():
        span.update_name(name)
        span.set_attributes(attributes)
        if error:
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR))
    span.end()
    _detach(token)


# ---- actors ----------------------------------------------------------------------------------
def traced_actor(cls: type, kind: str) -> Any:
    """``cls`` whose constructor ``(settings, index, ...)`` configures tracing for the
    process first (and, once the actor has started, times and freezes its garbage
    collections: ``raymall.gcwatch``), and which answers ``traced_call(traceparent,
    method, *args)``: the method, run under a SERVER span that continues the caller's trace.

    The subclass is pickled by value into the actor's process, and with it any global it
    reads: so its methods only call this module's functions (pickled by reference), which
    read the process's own flag."""

    class Traced(cls):  # type: ignore[valid-type, misc]
        def __init__(self, settings: Settings, index: int, *args: Any, **kw: Any) -> None:
            self._trace_name = actor_started(settings, f"{kind}-{index}")
            super().__init__(settings, index, *args, **kw)
            from raymall import gcwatch

            gcwatch.started(
                self._trace_name,
                freeze=settings.gc_freeze,
                young_threshold=settings.gc_young_threshold,
            )

        async def traced_call(self, carrier: str | None, method: str, *args: Any, **kw: Any) -> Any:
            return await actor_call(self, carrier, method, args, kw)

    Traced.__name__ = cls.__name__
    Traced.__qualname__ = cls.__qualname__
    Traced.__doc__ = cls.__doc__
    return Traced


def actor_started(settings: Settings, name: str) -> str:
    """Configure tracing in an actor's process; its name for spans."""
    configure(settings, name)
    return name


async def actor_call(
    actor: Any, carrier: str | None, method: str, args: tuple[Any, ...], kw: dict[str, Any]
) -> Any:
    """``actor.method(*args, **kw)`` under a SERVER span continuing ``carrier``'s trace."""
    fn = getattr(actor, method)
    span = server_span(f"{actor._trace_name} {method}", carrier) if enabled else None
    if span is None:
        result = fn(*args, **kw)
        return await result if inspect.isawaitable(result) else result
    with use(span):
        result = fn(*args, **kw)
        return await result if inspect.isawaitable(result) else result


# ---- SQL and Redis -------------------------------------------------------------------------
def _instrument_sql() -> None:
    """A CLIENT span per statement on every engine, under a recording span only."""
    from opentelemetry.trace import SpanKind, Status, StatusCode
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def before(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        if recording_span() is None or context is None:
            return
        verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "SQL"
        context._raymall_span = _tracer.start_span(
            f"db {verb}",
            kind=SpanKind.CLIENT,
            attributes={
                "db.system": conn.dialect.name,
                "db.statement": statement[:300],
                "db.executemany": bool(many),
            },
        )

    def after(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        span = getattr(context, "_raymall_span", None)
        if span is not None:
            span.end()

    def failed(exception_context: Any) -> None:
        context = exception_context.execution_context
        span = getattr(context, "_raymall_span", None)
        if span is not None:
            span.set_status(
                Status(StatusCode.ERROR, type(exception_context.original_exception).__name__)
            )
            span.end()

    event.listen(Engine, "before_cursor_execute", before)
    event.listen(Engine, "after_cursor_execute", after)
    event.listen(Engine, "handle_error", failed)


def _instrument_redis() -> None:
    """A CLIENT span per command and per pipeline of redis-py (sync and asyncio clients),
    under a recording span only."""
    import redis
    import redis.asyncio as aioredis
    from opentelemetry.trace import SpanKind

    def attrs(args: Sequence[Any]) -> dict[str, Any]:
        return {"db.system": "redis", "db.operation": str(args[0]) if args else ""}

    def wrap_async(cls: Any, name: str, label: Callable[[Any, tuple[Any, ...]], str]) -> None:
        original = getattr(cls, name)
        if getattr(original, "_raymall_traced", False):
            return

        async def traced(self: Any, *args: Any, **kw: Any) -> Any:
            if recording_span() is None:
                return await original(self, *args, **kw)
            with _tracer.start_as_current_span(
                label(self, args), kind=SpanKind.CLIENT, attributes=attrs(args)
            ):
                return await original(self, *args, **kw)

        traced._raymall_traced = True  # type: ignore[attr-defined]
        setattr(cls, name, traced)

    def wrap_sync(cls: Any, name: str, label: Callable[[Any, tuple[Any, ...]], str]) -> None:
        original = getattr(cls, name)
        if getattr(original, "_raymall_traced", False):
            return

        def traced(self: Any, *args: Any, **kw: Any) -> Any:
            if recording_span() is None:
                return original(self, *args, **kw)
            with _tracer.start_as_current_span(
                label(self, args), kind=SpanKind.CLIENT, attributes=attrs(args)
            ):
                return original(self, *args, **kw)

        traced._raymall_traced = True  # type: ignore[attr-defined]
        setattr(cls, name, traced)

    def command(_self: Any, args: tuple[Any, ...]) -> str:
        return f"redis {args[0]}" if args else "redis"

    def pipeline(self: Any, _args: tuple[Any, ...]) -> str:
        return f"redis pipeline ({len(getattr(self, 'command_stack', ()))})"

    wrap_async(aioredis.Redis, "execute_command", command)
    wrap_async(aioredis.client.Pipeline, "execute", pipeline)
    wrap_sync(redis.Redis, "execute_command", command)
    wrap_sync(redis.client.Pipeline, "execute", pipeline)


# ---- the JSON-lines exporter ---------------------------------------------------------------
def span_record(span: ReadableSpan) -> dict[str, Any]:
    """One finished span as a plain dict (the JSON-lines exporter's line)."""
    ctx = span.get_span_context()
    assert ctx is not None
    parent = span.parent
    resource = span.resource.attributes or {}
    return {
        "name": span.name,
        "trace_id": f"{ctx.trace_id:032x}",
        "span_id": f"{ctx.span_id:016x}",
        "parent_span_id": f"{parent.span_id:016x}" if parent is not None else None,
        "remote_parent": bool(parent is not None and parent.is_remote),
        "kind": span.kind.name,
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
        "links": [
            {"trace_id": f"{link.context.trace_id:032x}", "span_id": f"{link.context.span_id:016x}"}
            for link in span.links
        ],
        "process": resource.get("raymall.process"),
        "pid": resource.get("process.pid"),
    }


_encoder = json.JSONEncoder(default=str, check_circular=False)


class JsonLinesExporter:
    """Finished spans as JSON lines, one file per process (``spans-<pid>.jsonl``) in
    ``directory``: for local use and for tests that read a trace back."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        dumps = _encoder.encode
        lines = "".join([dumps(span_record(s)) + "\n" for s in spans])
        path = self.directory / f"spans-{os.getpid()}.jsonl"
        try:
            with self._lock:
                try:
                    f = open(path, "a")  # noqa: SIM115
                except FileNotFoundError:  # the first export (or the directory was removed)
                    self.directory.mkdir(parents=True, exist_ok=True)
                    f = open(path, "a")  # noqa: SIM115
                with f:
                    f.write(lines)
        except OSError:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def read_spans(directory: Path) -> list[dict[str, Any]]:
    """Every span the JSON-lines exporters wrote under ``directory``."""
    out: list[dict[str, Any]] = []
    for path in sorted(directory.glob("spans-*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                out.append(json.loads(line))
    return out


def headers_traceparent(
    headers: Mapping[bytes, bytes] | Sequence[tuple[bytes, bytes]],
) -> str | None:
    """The ``traceparent`` of raw ASGI headers, if any."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in items:
        if name == b"traceparent":
            return value.decode("latin-1")
    return None


def use_current(span: Span) -> Any:
    """A context manager making ``span`` current without ending it (to copy the context
    for a thread, say)."""
    return _use_span(span, end_on_exit=False)


def start_consumer(name: str, carriers: Sequence[str | None], **attributes: Any) -> Span | None:
    """A CONSUMER span for events that carried these ``traceparent`` values (from
    ``with_trace``): a child of the first, linked to each; None if none was traced."""
    if not enabled:
        return None
    # events written by one batch carry the same traceparent: one look and one link each
    distinct = list(dict.fromkeys(c for c in carriers if c))
    contexts = [c for c in map(extract, distinct) if c is not None]
    if not contexts:
        return None
    links = [_Link(_current_span(c).get_span_context()) for c in contexts]
    attrs = {"raymall.batch.size": len(contexts), **attributes}
    return _tracer.start_span(
        name, context=contexts[0], kind=_CONSUMER, links=links, attributes=attrs
    )


def child_span(name: str, *, internal: bool = False, **attributes: int | str) -> Any:
    """A context manager: a CLIENT (or ``internal``) span under the current recording span
    (none without one), current while it runs."""
    if recording_span() is None:
        return nullcontext()  # no recording span current: nothing stale to hide
    kind = _INTERNAL if internal else _CLIENT
    return _tracer.start_as_current_span(name, kind=kind, attributes=attributes)
