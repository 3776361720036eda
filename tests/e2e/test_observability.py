"""Observability against the running app: one request's trace across processes (the
replica, the order shard, the inventory shard's group commit, the database and the outbox
consumer), a flash purchase's trace reaching its batch and the batch's commit, and a flame
graph of a live shard and of a replica (``raymall profile``).

The session's app traces with the JSON-lines exporter and samples nothing by itself
(tests/conftest.py): the requests here send a sampled ``traceparent``, so only they are
traced, and their spans are read back from ``var/traces/``."""

from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from raymall.launcher.profile import find_target, live_actors, record
from raymall.tracing import read_spans
from tests.auth_helpers import TestUser, new_user
from tests.flash_helpers import create_sale
from tests.order_helpers import Shop, restock

pytestmark = pytest.mark.e2e


def client_traceparent() -> tuple[str, str, str]:
    """(traceparent, trace id, parent span id) of a sampled client span."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def spans_of(settings: Any, trace_id: str) -> list[dict[str, Any]]:
    return [s for s in read_spans(Path(settings.var_dir) / "traces") if s["trace_id"] == trace_id]


def wait_for_spans(
    settings: Any, trace_id: str, client_span: str, done: Any
) -> list[dict[str, Any]]:
    """The trace's spans once ``done(spans)`` holds and every span but the root (under the
    client's ``client_span``) has its parent among them (at most 30 s; each process's
    exporter writes every second)."""
    deadline = time.monotonic() + 30
    while True:
        spans = spans_of(settings, trace_id)
        ids = {s["span_id"] for s in spans}
        orphans = [s["parent_span_id"] for s in spans if s["parent_span_id"] not in ids]
        if done(spans) and orphans == [client_span]:  # every process exported its part
            return spans
        if time.monotonic() > deadline:
            seen = sorted((str(s["process"]), s["name"]) for s in spans)
            raise AssertionError(f"trace {trace_id} incomplete after 30 s: {seen}")
        time.sleep(0.2)


def assert_well_parented(spans: list[dict[str, Any]], client_span: str) -> dict[str, Any]:
    """One root (the request's span, under the client's), every other span's parent in the
    trace, and a parent in another process only across a call (SERVER or CONSUMER under a
    remote parent). Answers the root."""
    ids = {s["span_id"]: s for s in spans}
    roots = [s for s in spans if s["parent_span_id"] not in ids]
    assert [r["parent_span_id"] for r in roots] == [client_span], roots
    for s in spans:
        parent = ids.get(s["parent_span_id"])
        if parent is not None and parent["pid"] != s["pid"]:
            assert s["remote_parent"] and s["kind"] in ("SERVER", "CONSUMER"), s
    return roots[0]


def ordering_user(client: httpx.Client) -> TestUser:
    user = new_user(client)
    addr = {
        "recipient": "Ada Lovelace",
        "phone": "+44 20 0000 0000",
        "line1": "12 St James's Square",
        "city": "London",
        "postal_code": "SW1Y 4JH",
        "country": "GB",
    }
    resp = client.post("/me/addresses", json=addr, headers=user.headers)
    assert resp.status_code == 201, resp.text
    user.extra["address_id"] = resp.json()["id"]
    return user


def test_one_order_is_one_trace_from_the_replica_to_the_notification(
    app: Any, ray_session: Any, client: httpx.Client, admin: TestUser, shop: Shop
) -> None:
    sku = shop.sku(price_cents=2500)
    restock(client, admin.headers, sku, 3)
    alice = ordering_user(client)
    added = client.post("/cart/items", json={"sku_id": sku, "quantity": 1}, headers=alice.headers)
    assert added.status_code == 200, added.text
    traceparent, trace_id, client_span = client_traceparent()
    placed = client.post(
        "/orders",
        json={"address_id": alice.extra["address_id"]},
        headers={
            **alice.headers,
            "Idempotency-Key": secrets.token_hex(8),
            "traceparent": traceparent,
        },
    )
    assert placed.status_code == 201, placed.text
    returned = placed.headers["traceparent"]
    assert returned.startswith(f"00-{trace_id}-") and returned.endswith("-01")

    spans = wait_for_spans(
        ray_session,
        trace_id,
        client_span,
        lambda got: any(s["name"] == "consume notifications" for s in got),
    )
    root = assert_well_parented(spans, client_span)
    assert root["name"] == "POST /orders" and root["process"] == "replica"
    assert root["kind"] == "SERVER" and root["span_id"] == returned.split("-")[2]
    assert root["attributes"]["http.response.status_code"] == 201
    assert root["attributes"]["enduser.id"] == str(alice.user_id)
    by_process: dict[str, list[dict[str, Any]]] = {}
    for s in spans:
        by_process.setdefault(str(s["process"]).rsplit("-", 1)[0], []).append(s)
    assert {"replica", "order", "inventory", "outbox-relay"} <= set(by_process), by_process.keys()
    # the order shard continued the trace from the replica's call
    assert any(s["kind"] == "SERVER" and s["remote_parent"] for s in by_process["order"])
    # the inventory shard's group commit, with its SQL under it
    commits = [s for s in by_process["inventory"] if s["name"].startswith("group commit")]
    assert commits, [s["name"] for s in by_process["inventory"]]
    under_commit = {s["name"] for s in spans if s["parent_span_id"] == commits[0]["span_id"]}
    assert {"apply", "db transaction"} <= under_commit, under_commit
    # the order's own database writes, in the order shard
    assert any(s["name"].startswith("db INSERT") for s in by_process["order"])
    # the outbox consumer that wrote the notification joined the trace
    consume = next(s for s in by_process["outbox-relay"] if s["name"] == "consume notifications")
    assert consume["kind"] == "CONSUMER" and consume["remote_parent"]
    assert any(
        s["name"].startswith("db INSERT") and s["parent_span_id"] == consume["span_id"]
        for s in spans
    )


def test_a_flash_purchase_trace_reaches_its_batch_and_the_batch_commit(
    app: Any, ray_session: Any, client: httpx.Client, admin: TestUser, shop: Shop
) -> None:
    sku = shop.sku(price_cents=5000)
    restock(client, admin.headers, sku, 5)
    sale = create_sale(client, admin.headers, sku, quantity=2)
    bob = new_user(client)
    traceparent, trace_id, client_span = client_traceparent()
    bought = client.post(
        f"/flash-sales/{sale['id']}/purchase",
        headers={
            **bob.headers,
            "Idempotency-Key": secrets.token_hex(8),
            "traceparent": traceparent,
        },
    )
    assert bought.status_code == 201, bought.text
    assert bought.headers["traceparent"].startswith(f"00-{trace_id}-")

    spans = wait_for_spans(
        ray_session,
        trace_id,
        client_span,
        lambda got: any(s["name"].startswith("group commit") for s in got),
    )
    root = assert_well_parented(spans, client_span)
    assert root["name"] == "POST /flash-sales/{sale_id}/purchase"
    ids = {s["span_id"] for s in spans}
    batches = [s for s in spans if s["name"].startswith("batch ")]
    assert batches, [s["name"] for s in spans]
    batch_ids = {b["span_id"] for b in batches}
    # the batch links to the purchase's span (a request it carried), and the request's span
    # records its batch
    assert any(link["span_id"] in ids for b in batches for link in b["links"])
    recorded = {s["attributes"].get("raymall.batch.span_id") for s in spans} - {None}
    assert recorded & batch_ids
    # the shard's commit of that batch, under the shard's call that carried it
    commit = next(s for s in spans if s["name"].startswith("group commit"))
    assert str(commit["process"]).startswith("inventory-")
    assert commit["links"] and all(link["trace_id"] for link in commit["links"])


def _load(url: str, stop: threading.Event) -> None:
    with httpx.Client(base_url=url, timeout=10) as c:
        while not stop.is_set():
            c.get("/products?limit=5")


def test_profile_writes_a_flame_graph_of_a_live_shard_and_a_replica(
    app: Any, tmp_path: Path
) -> None:
    actors = live_actors()
    shard = find_target(actors, actor="inventory-0")
    replica = find_target(actors, replica=0)
    assert shard.pid > 0 and replica.pid > 0 and shard.pid != replica.pid
    stop = threading.Event()
    loader = threading.Thread(target=_load, args=(app.url, stop), daemon=True)
    loader.start()
    try:
        started = time.monotonic()
        svg = record(shard, 2, tmp_path / "shard.svg")
        assert time.monotonic() - started < 30
        replica_svg = record(replica, 2, tmp_path / "replica.svg")
    finally:
        stop.set()
        loader.join(10)
    for path in (svg, replica_svg):
        text = path.read_text()
        assert text.lstrip().startswith("<?xml") and "<svg" in text
        assert "py-spy" in text or "flamegraph" in text.lower()
    # the replica was serving requests while sampled: its stacks show the app's code
    assert "raymall" in replica_svg.read_text() or "deployments" in replica_svg.read_text()


def test_the_profile_command_joins_the_cluster_and_writes_the_svg(
    app: Any, ray_session: Any, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    import ray

    out = tmp_path / "cli.svg"
    env = {
        **os.environ,
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
        "RAYMALL_NAMESPACE": ray_session.namespace,
        "RAYMALL_VAR_DIR": str(tmp_path),
    }
    cmd = [sys.executable, "-m", "raymall", "profile", "--actor", "order-0", "--seconds", "1"]
    done = subprocess.run(
        [*cmd, "--out", str(out)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "profiled order-0" in done.stdout
    assert "<svg" in out.read_text()
    missing = subprocess.run(
        [*cmd[:-4], "--actor", "no-such-actor", "--seconds", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 1 and "no live actor named 'no-such-actor'" in missing.stderr


def test_the_payment_providers_callback_joins_the_paying_requests_trace(
    app: Any, ray_session: Any, client: httpx.Client, admin: TestUser, shop: Shop
) -> None:
    sku = shop.sku(price_cents=1200)
    restock(client, admin.headers, sku, 2)
    carol = ordering_user(client)
    added = client.post("/cart/items", json={"sku_id": sku, "quantity": 1}, headers=carol.headers)
    assert added.status_code == 200, added.text
    placed = client.post(
        "/orders",
        json={"address_id": carol.extra["address_id"]},
        headers={**carol.headers, "Idempotency-Key": secrets.token_hex(8)},
    )
    assert placed.status_code == 201, placed.text
    assert "traceparent" not in placed.headers  # not sampled: the session samples nothing
    traceparent, trace_id, client_span = client_traceparent()
    paying = client.post(
        f"/orders/{placed.json()['id']}/pay",
        json={},
        headers={**carol.headers, "traceparent": traceparent},
    )
    assert paying.status_code == 202, paying.text
    spans = wait_for_spans(
        ray_session,
        trace_id,
        client_span,
        lambda got: any(s["name"] == "POST /payments/callback" for s in got),
    )
    assert_well_parented(spans, client_span)
    callback = next(s for s in spans if s["name"] == "POST /payments/callback")
    assert callback["kind"] == "SERVER" and callback["remote_parent"]
    assert callback["attributes"]["http.response.status_code"] < 300


def test_a_shard_restarted_after_a_crash_is_counted(
    app: Any, ray_session: Any, client: httpx.Client
) -> None:
    import re

    import ray

    def restarts() -> float:
        text = client.get("/metrics").text
        found = re.search(r'raymall_actor_restarts_total\{actor="inventory-3"\} ([\d.]+)', text)
        return float(found.group(1)) if found else 0.0

    before = restarts()
    shard = ray.get_actor("inventory-3", namespace=ray_session.namespace)
    ray.kill(shard, no_restart=False)  # a crash: Ray restarts it (max_restarts=-1)
    deadline = time.monotonic() + 60
    while True:
        try:
            ray.get(shard.check_alive.remote(), timeout=5)
            if restarts() >= before + 1:
                break
        except Exception:  # still restarting
            pass
        assert time.monotonic() < deadline, "the restart was not counted within 60 s"
        time.sleep(0.5)


def test_an_admin_changes_the_sampling_ratio_on_every_replica_without_a_restart(
    app: Any, client: httpx.Client, admin: TestUser
) -> None:
    """The session's app samples nothing by itself; ``PUT /admin/tracing`` at 1.0 makes
    every replica trace every request (each answer then carries a ``traceparent``) within
    one poll, and ``DELETE`` brings the settings' ratio back. A shopper may not touch it."""
    from deployments.drain import POLL_S

    def traced_answers(n: int) -> int:
        return sum(
            "traceparent" in client.get("/products", params={"size": 1}).headers for _ in range(n)
        )

    shopper = new_user(client)
    denied = client.put("/admin/tracing", json={"sample_ratio": 1.0}, headers=shopper.headers)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden"
    bad = client.put("/admin/tracing", json={"sample_ratio": 1.5}, headers=admin.headers)
    assert bad.status_code == 422
    assert traced_answers(8) == 0
    try:
        put = client.put(
            "/admin/tracing", json={"sample_ratio": 1.0, "ttl_s": 600}, headers=admin.headers
        )
        assert put.status_code == 200, put.text
        got = put.json()
        assert got["exporting"] and got["sample_ratio"] == 1.0 and got["override"] == 1.0
        assert got["configured_ratio"] == 0.0 and 0 < got["override_ttl_s"] <= 600
        time.sleep(POLL_S * 2 + 0.5)  # every replica has polled since
        assert traced_answers(12) == 12
    finally:
        reset = client.delete("/admin/tracing", headers=admin.headers)
        assert reset.status_code == 204
    time.sleep(POLL_S * 2 + 0.5)
    assert traced_answers(12) == 0
    state = client.get("/admin/tracing", headers=admin.headers).json()
    assert state["override"] is None and state["sample_ratio"] == 0.0
