"""Tracing in one process, against an in-memory exporter: the request span at the edge
(traceparent in and out, route template, status, user), the trace id in error bodies and
log lines, batches linked to each sampled request, the group commit's span over its SQL,
the outbox payload's trace picked up by a consumer, and nothing at all while tracing is
off."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import create_engine, text

from actors.group_commit import GroupCommitter
from deployments import errors as edge_errors
from deployments.edge import Edge
from raymall import logs, tracing
from raymall.batching import Batcher
from raymall.errors import NotFound, error_body
from raymall.orders.consumers import _span as consumer_span
from raymall.orders.rows import outbox_row
from raymall.settings import Settings
from tests.unit.test_group_commit import Book, Writer

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_PARENT = f"00-{CLIENT_TRACE}-b7ad6b7169203331-01"


@pytest.fixture()
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert tracing.configure(
        Settings(env="test", trace_sample_ratio=1.0), "unit", exporter=exporter
    )
    try:
        yield exporter
    finally:
        tracing.disable()


def by_name(exporter: InMemorySpanExporter) -> dict[str, Any]:
    return {s.name: s for s in exporter.get_finished_spans()}


def make_app() -> TestClient:
    app = FastAPI()
    edge_errors.install(app)
    router = APIRouter()

    @router.get("/things/{thing_id}")
    async def thing(thing_id: int, request: Request) -> dict[str, Any]:
        request.state.principal = type("P", (), {"user_id": 42})()
        logging.getLogger("raymall.test").warning("looking at %s", thing_id)
        if thing_id == 0:
            raise NotFound("no such thing")
        return {"id": thing_id}

    app.include_router(router)
    return TestClient(Edge(app), raise_server_exceptions=False)


def test_tracing_off_makes_no_spans_and_changes_no_answer() -> None:
    assert not tracing.enabled
    assert tracing.recording_span() is None
    client = make_app()
    r = client.get("/things/0")
    assert "traceparent" not in r.headers
    assert set(r.json()["error"]) == {"code", "message", "request_id"}
    assert tracing.with_trace({"a": 1}) == {"a": 1}
    assert error_body("r", "c", "m") == {"error": {"code": "c", "message": "m", "request_id": "r"}}


def test_a_request_span_continues_the_clients_traceparent_and_returns_its_own(
    spans: InMemorySpanExporter,
) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logging.getLogger("raymall.test").addHandler(handler)
    try:
        r = make_app().get("/things/0", headers={"traceparent": CLIENT_PARENT})
    finally:
        logging.getLogger("raymall.test").removeHandler(handler)
    assert r.status_code == 404
    returned = r.headers["traceparent"]
    assert returned.startswith(f"00-{CLIENT_TRACE}-") and returned.endswith("-01")
    assert r.json()["error"]["trace_id"] == CLIENT_TRACE  # additive: the shape is kept
    assert r.json()["error"]["code"] == "not_found"
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert line["trace_id"] == CLIENT_TRACE and line["span_id"] == returned.split("-")[2]
    span = by_name(spans)["GET /things/{thing_id}"]
    assert span.kind == trace.SpanKind.SERVER
    assert span.parent is not None and span.parent.span_id == 0xB7AD6B7169203331
    assert span.attributes["http.route"] == "/things/{thing_id}"
    assert span.attributes["http.response.status_code"] == 404
    assert span.attributes["enduser.id"] == "42"


def test_an_unsampled_traceparent_is_followed_and_nothing_is_recorded(
    spans: InMemorySpanExporter,
) -> None:
    r = make_app().get("/things/3", headers={"traceparent": CLIENT_PARENT[:-2] + "00"})
    assert r.headers["traceparent"].startswith(f"00-{CLIENT_TRACE}-")
    assert r.headers["traceparent"].endswith("-00")
    assert spans.get_finished_spans() == ()


async def test_a_batch_is_one_span_linked_to_each_sampled_request(
    spans: InMemorySpanExporter,
) -> None:
    tracer = tracing.tracer()
    seen: list[Any] = []

    async def fn(items: list[int]) -> list[int]:
        seen.append(trace.get_current_span())
        return [i * 2 for i in items]

    batcher: Batcher[int, int] = Batcher(fn, window_s=0.01)

    async def request(i: int) -> int:
        with tracer.start_as_current_span(f"request {i}"):
            return await batcher.submit(i)

    async def untraced() -> int:
        with trace.use_span(trace.INVALID_SPAN):
            return await batcher.submit(100)

    assert await asyncio.gather(request(1), request(2), untraced()) == [2, 4, 200]
    found = by_name(spans)
    batch = next(s for name, s in found.items() if name.startswith("batch "))
    r1, r2 = found["request 1"], found["request 2"]
    assert batch.parent.span_id == r1.context.span_id  # a child of the first
    assert {link.context.span_id for link in batch.links} == {
        r1.context.span_id,
        r2.context.span_id,
    }
    for member in (r1, r2):  # each request records its batch
        assert member.attributes["raymall.batch.span_id"] == format(batch.context.span_id, "016x")
        assert [link.context.span_id for link in member.links] == [batch.context.span_id]
    assert seen[0].get_span_context().span_id == batch.context.span_id

    # a later batch with no sampled caller runs under no span, not the last one's
    seen.clear()
    with trace.use_span(trace.INVALID_SPAN):
        assert await batcher.submit(5) == 10
    assert not seen[0].get_span_context().is_valid


async def test_a_group_commit_is_a_span_over_its_sql_linked_to_its_callers(
    spans: InMemorySpanExporter,
) -> None:
    engine = create_engine("sqlite://")
    writer = Writer()
    writer.auto = True

    def write(work: Any, fail: bool) -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        writer(work, fail)

    committer: GroupCommitter = GroupCommitter(Book(), write, window_s=0.01, max_ops=100)
    tracer = tracing.tracer()

    async def caller(i: int) -> Any:
        with tracer.start_as_current_span(f"call {i}"):
            return await committer.submit([f"op{i}"])

    await asyncio.gather(caller(1), caller(2))
    committer.task.cancel()
    found = by_name(spans)
    commit = found["group commit committer"]
    assert {link.context.span_id for link in commit.links} == {
        found["call 1"].context.span_id,
        found["call 2"].context.span_id,
    }
    assert found["apply"].parent.span_id == commit.context.span_id  # the book's staging
    transaction = found["db transaction"]  # the writer, in its thread
    assert transaction.parent.span_id == commit.context.span_id
    sql = found["db SELECT"]
    assert sql.parent.span_id == transaction.context.span_id
    assert sql.attributes["db.system"] == "sqlite"
    assert committer._traced == {}  # noqa: SLF001


async def test_the_outbox_carries_the_trace_to_its_consumer(spans: InMemorySpanExporter) -> None:
    from raymall.orders.stream import Event

    tracer = tracing.tracer()
    with tracer.start_as_current_span("place order") as placing:
        row = outbox_row("order.placed", 7, {"order_id": "7", "user_id": 1}, 1)
    payload = json.loads(row[3])
    assert payload[tracing.TRACE_KEY] == tracing.traceparent(placing)
    event = Event("1-0", row[0], "order.placed", "7", payload, 1)
    untraced = Event("2-0", "e2", "order.placed", "8", {"order_id": "8"}, 1)
    with tracing.use(consumer_span("notifications", [untraced, event])):
        pass
    consume = by_name(spans)["consume notifications"]
    assert consume.kind == trace.SpanKind.CONSUMER
    assert consume.context.trace_id == placing.get_span_context().trace_id
    assert consume.parent.span_id == placing.get_span_context().span_id
    assert consumer_span("notifications", [untraced]) is None


def test_the_json_lines_exporter_writes_what_read_spans_reads(tmp_path: Any) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(tracing.JsonLinesExporter(tmp_path)))
    t = provider.get_tracer("t")
    with t.start_as_current_span("outer") as outer, t.start_as_current_span("inner"):
        pass
    got = {s["name"]: s for s in tracing.read_spans(tmp_path)}
    assert got["inner"]["parent_span_id"] == format(outer.get_span_context().span_id, "016x")
    assert got["inner"]["trace_id"] == got["outer"]["trace_id"]


def test_an_unsampled_request_without_a_traceparent_gets_no_trace_header_or_id() -> None:
    exporter = InMemorySpanExporter()
    tracing.configure(Settings(env="test", trace_sample_ratio=0.0), "unit", exporter=exporter)
    try:
        r = make_app().get("/things/0")
    finally:
        tracing.disable()
    assert r.status_code == 404
    assert "traceparent" not in r.headers and "trace_id" not in r.json()["error"]
    assert exporter.get_finished_spans() == ()


def test_the_ratio_changed_at_run_time_samples_at_once_and_none_restores_the_settings() -> None:
    exporter = InMemorySpanExporter()
    tracing.configure(Settings(env="test", trace_sample_ratio=0.0), "unit", exporter=exporter)
    try:
        app = make_app()
        assert "traceparent" not in app.get("/things/0").headers
        assert tracing.set_sample_ratio(1.0) == 1.0
        assert "traceparent" in app.get("/things/0").headers
        assert tracing.set_sample_ratio(7) == 1.0 and tracing.set_sample_ratio(-1) == 0.0
        assert tracing.set_sample_ratio(None) == 0.0
        assert "traceparent" not in app.get("/things/0").headers
    finally:
        tracing.disable()
    assert len(exporter.get_finished_spans()) == 1


def test_compose_sends_traces_to_a_jaeger_with_otlp() -> None:
    from pathlib import Path

    import yaml

    compose = yaml.safe_load(
        (Path(__file__).resolve().parents[2] / "docker-compose.yml").read_text()
    )
    jaeger = compose["services"]["jaeger"]
    assert jaeger["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    assert "4318:4318" in jaeger["ports"] and "healthcheck" in jaeger
    env = compose["services"]["raymall-head"]["environment"]
    assert env["RAYMALL_TRACE_OTLP_ENDPOINT"] == "http://jaeger:4318/v1/traces"
    settings = Settings(env="test", trace_otlp_endpoint=env["RAYMALL_TRACE_OTLP_ENDPOINT"])
    assert 0 < settings.trace_sample_ratio <= 1


async def test_with_tracing_off_the_hot_paths_call_nothing_of_it(monkeypatch: Any) -> None:
    """Off is free: the edge, the batcher, the group commit and the outbox rows test the
    flag and never call into the tracing module."""
    assert not tracing.enabled

    def boom(*a: Any, **kw: Any) -> Any:
        raise AssertionError("tracing called while off")

    for name in ("recording_span", "start_batch", "tracer", "with_trace", "use", "extract"):
        monkeypatch.setattr(tracing, name, boom)
    assert make_app().get("/things/3").status_code == 200

    async def double(items: list[int]) -> list[int]:
        return [i * 2 for i in items]

    batcher: Batcher[int, int] = Batcher(double)
    assert await asyncio.gather(batcher.submit(1), batcher.submit(2)) == [2, 4]
    writer = Writer()
    writer.auto = True
    committer: GroupCommitter = GroupCommitter(Book(), writer, window_s=0, max_ops=10)
    assert await committer.submit(["a"]) is not None
    committer.task.cancel()
    assert json.loads(outbox_row("t", 1, {"a": 1}, 1)[3]) == {"a": 1}


class _Handle:
    """A fake actor handle with the named methods only (answers its arguments)."""

    def __init__(self, *methods: str) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        for name in methods:
            setattr(self, name, self._method(name))

    def _method(self, name: str) -> Any:
        handle = self

        class Method:
            def remote(self, *args: Any) -> Any:
                handle.calls.append((name, args))
                fut = asyncio.get_running_loop().create_future()
                fut.set_result(args)
                return fut

        return Method()


async def test_an_actor_call_under_a_sampled_span_carries_its_traceparent(
    spans: InMemorySpanExporter,
) -> None:
    from actors.caller import ActorCaller

    caller = ActorCaller("ns", lambda i: f"inventory-{i}", timeout_s=1, retry_s=1)
    traced, old = _Handle("traced_call", "submit"), _Handle("submit")
    caller._handles = {0: traced, 1: old}  # noqa: SLF001
    assert await caller.call(0, "submit", 7) == (7,)  # no sampled span: a plain call
    with tracing.tracer().start_as_current_span("request"):
        answer = await caller.call(0, "submit", 8)
        assert await caller.call(1, "submit", 9) == (9,)  # an actor without traced_call
    carrier, method, arg = answer
    client = by_name(spans)["inventory-0 submit"]
    assert client.kind == trace.SpanKind.CLIENT and (method, arg) == ("submit", 8)
    assert carrier == tracing.traceparent(client)
    assert traced.calls[0] == ("submit", (7,)) and traced.calls[1][0] == "traced_call"
    assert old.calls == [("submit", (9,))]


def test_traceparent_parsing_agrees_with_opentelemetrys_propagator() -> None:
    """``extract`` parses ``traceparent`` itself (a third of the propagator's cost, on every
    actor call and consumed event of a sampled trace): it must accept and refuse exactly
    what OpenTelemetry's W3C propagator does, and name the same remote parent."""
    import random

    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    def theirs(carrier: str) -> tuple[int, int, int] | None:
        ctx = TraceContextTextMapPropagator().extract({"traceparent": carrier})
        sc = trace.get_current_span(ctx).get_span_context()
        return (sc.trace_id, sc.span_id, int(sc.trace_flags)) if sc.is_valid else None

    def ours(carrier: str) -> tuple[int, int, int] | None:
        ctx = tracing.extract(carrier)
        if ctx is None:
            return None
        sc = trace.get_current_span(ctx).get_span_context()
        assert sc.is_remote
        return sc.trace_id, sc.span_id, int(sc.trace_flags)

    later = "01" + CLIENT_PARENT[2:] + "-more"
    cases = [
        CLIENT_PARENT,
        CLIENT_PARENT.upper(),
        CLIENT_PARENT[:-1],
        CLIENT_PARENT + "-x",
        later,
        "ff" + CLIENT_PARENT[2:],
        f"00-{'0' * 32}-b7ad6b7169203331-01",
        f"00-{CLIENT_TRACE}-{'0' * 16}-01",
        f" {CLIENT_PARENT}\t",
        CLIENT_PARENT[:-2] + "00",
        CLIENT_PARENT[:-2] + "03",
        "",
    ]
    rnd = random.Random(26)
    for _ in range(3000):
        chars = list(rnd.choice((CLIENT_PARENT, later)))
        for _ in range(rnd.randint(1, 3)):
            i, op = rnd.randrange(len(chars)), rnd.random()
            if op < 0.6:
                chars[i] = rnd.choice("0af-Fg \t")
            elif op < 0.8:
                del chars[i]
            else:
                chars.insert(i, rnd.choice("0a-"))
        cases.append("".join(chars))
    assert ours(CLIENT_PARENT) is not None and ours(later) is not None
    assert [c for c in cases if ours(c) != theirs(c)] == []


@pytest.fixture()
def sampling(monkeypatch: Any) -> Iterator[list[int]]:
    """Tracing on at a ratio of 0.1 in slices of 100 ms, on a clock the test sets."""
    clock = [1_800_000_000 * 10**9]
    monkeypatch.setattr(tracing.time, "time_ns", lambda: clock[0])
    exporter = InMemorySpanExporter()
    settings = Settings(env="test", trace_sample_ratio=0.1, trace_sample_slice_ms=100)
    tracing.configure(settings, "unit", exporter=exporter)
    try:
        yield clock
    finally:
        tracing.disable()


def test_requests_of_one_slice_are_sampled_together_and_a_tenth_of_the_slices_are(
    sampling: list[int],
) -> None:
    decisions = []
    for _ in range(20_000):
        first = tracing.sample_root()
        sampling[0] += 40_000_000  # later in the same 100 ms slice
        assert tracing.sample_root() is first
        decisions.append(first)
        sampling[0] += 60_000_000  # the next slice
    assert 0.09 <= sum(decisions) / len(decisions) <= 0.11
    # every process draws the same slices: the draw is a function of the slice number
    number = sampling[0] // 100_000_000
    assert tracing.slice_draw(number) == tracing.slice_draw(number)
    assert (tracing.slice_draw(number) < 0.1) is tracing.sample_root()


def test_a_new_ratio_applies_within_the_current_slice(sampling: list[int]) -> None:
    number = sampling[0] // 100_000_000
    draw = tracing.slice_draw(number)
    tracing.set_sample_ratio(draw / 2)
    assert not tracing.sample_root()
    tracing.set_sample_ratio(min(1.0, draw * 1.5 + 1e-9))
    assert tracing.sample_root()
    tracing.set_sample_ratio(0.0)
    assert not tracing.sample_root()


def test_a_slice_of_zero_draws_for_each_request(monkeypatch: Any) -> None:
    monkeypatch.setattr(tracing.time, "time_ns", lambda: 1_800_000_000 * 10**9)
    settings = Settings(env="test", trace_sample_ratio=0.5, trace_sample_slice_ms=0)
    tracing.configure(settings, "unit", exporter=InMemorySpanExporter())
    try:
        decisions = [tracing.sample_root() for _ in range(2_000)]  # one instant
    finally:
        tracing.disable()
    assert 0.4 <= sum(decisions) / len(decisions) <= 0.6
