"""bench/flash_sale.py's sale rounds: wrk (flash_wrk.lua's fixed-list mode) sends every
attempt of the list exactly once, with its token and Idempotency-Key, and the round's
figures count what was answered; in token mode with a rate (bench/pace.lua) it offers no
more than that rate. Checked against a small HTTP server on 127.0.0.1."""

from __future__ import annotations

import shutil
import socket
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from flash_sale import (  # noqa: E402
    run_attempts,
    run_wrk,
    sale_checks,
    summarize,
    write_attempts,
)

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")


class Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as wrk expects
    seen: Counter[tuple[str, str]] = Counter()
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        attempt = (self.headers["Authorization"], self.headers["Idempotency-Key"] or "")
        with self.lock:
            self.seen[attempt] += 1
            first = self.seen[attempt] == 1
        body = b"{}"
        self.send_response(201 if first and attempt[1].endswith("7") else 409)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def server() -> Any:
    Recorder.seen = Counter()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_every_attempt_is_sent_once_and_counted(server: str) -> None:
    tokens = [f"tok{i}" for i in range(301)]
    attempts = write_attempts(tokens, 40, seed=3)
    try:
        lines = attempts.read_text().splitlines()
        assert len(lines) == 341
        sent = Counter(("Bearer " + t, k) for t, k in (line.split() for line in lines))
        assert len(sent) == 301 and sorted(sent.values())[-40:] == [2] * 40  # 40 repeats
        result = run_attempts(server, "/buy", attempts, conns=8, threads=2, cap_s=60)
    finally:
        attempts.unlink()
    assert Recorder.seen == sent  # each line once: nothing lost, nothing extra
    assert result["requests"] == 341 and result["missing"] == 0 and result["errors"] == 0
    created = sum(1 for _, k in sent if k.endswith("7"))
    assert result["ok"] == created and result["refused"] == 341 - created
    assert result["seconds"] > 0
    assert result["rps"] == pytest.approx(341 / result["seconds"], rel=1e-3)


def test_a_paced_run_offers_its_rate_and_no_more(server: str, tmp_path: Path) -> None:
    """At 100 req/s for 3 s over 16 connections (which unpaced send thousands a second),
    about 300 requests go, each with the next token; never a burst past the schedule."""
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("\n".join(f"tok{i}" for i in range(50)))
    got = run_wrk(server, "/buy", tokens, 3, 16, 2, rate=100)
    assert 100 <= got["requests"] <= 330, got  # wrk counts what was answered
    assert got["requests"] <= sum(Recorder.seen.values()) <= 340
    assert {auth for auth, _ in Recorder.seen} <= {f"Bearer tok{i}" for i in range(50)}


def test_an_unanswered_round_counts_its_missing_attempts_as_errors() -> None:
    with socket.socket() as s:  # a port that listens but never answers
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        tokens = [f"tok{i}" for i in range(10)]
        attempts = write_attempts(tokens, 0, seed=1)
        try:
            result = run_attempts(
                f"http://127.0.0.1:{s.getsockname()[1]}", "/buy", attempts, 2, 2, cap_s=3
            )
        finally:
            attempts.unlink()
    assert result["missing"] == 10 and result["errors"] >= 10 and result["error_rate"] >= 1


def test_medians_and_stored_checks() -> None:
    def round_(rps: float, p99: float, stored: dict[str, int]) -> dict[str, Any]:
        return {
            "rps": rps,
            "ok_per_s": rps / 10,
            "p50_ms": 1.0,
            "p95_ms": 2.0,
            "p99_ms": p99,
            "seconds": 5.0,
            "requests": 100,
            "ok": 10,
            "refused": 90,
            "errors": 0,
            "cpu_ms": {"system": rps / 1000},
            "stored": stored,
        }

    good = {"orders": 1000, "purchases": 1000, "sold": 1000}
    rounds = [round_(1000, 90, good), round_(3000, 120, good), round_(2000, 80, good)]
    s = summarize(rounds)
    assert (s["rps"], s["p99_ms"], s["p99_max_ms"], s["ok"]) == (2000, 90, 120, 30)
    assert s["cpu_ms"] == {"system": 2.0}
    assert sale_checks("raymall", rounds, 1000) == []
    oversold = round_(1000, 90, {**good, "sold": 1001})
    assert sale_checks("raymall", [*rounds, oversold], 1000) == [
        "round 4: {'sold': 1001} (quantity 1000)"
    ]
    assert sale_checks("redis", [round_(1, 1, {"orders": 999})], 1000) != []
