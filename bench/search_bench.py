"""Search under load: keyword search (``GET /products/search``, MariaDB FULLTEXT) and hybrid
search (``GET /search``, keyword + semantic fused), at 16 connections, over a realistic mix
of queries.

The queries: ``--queries`` distinct ones (default 500) drawn from the demo catalog's own
vocabulary (product nouns, features with nouns, "noun for <use>", "feature noun for
<use>", materials, brands with nouns, category names), requested with a Zipf popularity
(``--zipf``, default 1.0: of 500 queries, the 10 most popular take about 43% of the
traffic), so caches meet a realistic hit rate, not 100%: queries are first seen during the
run (nothing is searched in advance but a sample of ``CHECKED`` queries), cached answers
expire (``RAYMALL_LISTING_CACHE_TTL_S``, 30 s), and a catalog write every
``--catalog-write-every-s`` seconds (default 30; 0: none) moves the catalog generation,
which invalidates every cached answer as a real write does (the bench bumps the
generation key in Redis, without changing data). The request
sequence is drawn once with a fixed seed (the same for every run and every tree) and each
wrk thread walks it from its own offset.

Setup: one fresh database ``raymall_searchbench_<hex>`` on the MariaDB server holding the
demo catalog (``raymall seed --demo`` from the tree under test), one scratch Redis db
index (flushed before and after), Milvus Lite in the server's var dir; ``raymall serve``
as users run it (Ray Serve, HAProxy ingress, the default replicas, ``RAYMALL_ENV=dev``,
the recommender on), from this checkout or from ``--tree`` (another checkout, e.g. a git
worktree of the commit before a change: run the bench once per tree, in the same session,
for a before/after comparison). Timing starts once hybrid search answers with both modes
(the product index is built).

Per endpoint: ``--warmup-seconds`` of wrk (not reported), then ``--rounds`` rounds of
``--seconds`` each, keyword and hybrid alternating. Reported per endpoint: req/s, p50,
p99 (medians over the rounds, every round kept), non-2xx answers and socket errors, and
the cache hit ratios over the measured rounds read from the app's ``/metrics``
(``raymall_cache_events_total``: search answers and rankings, query vectors; absent in a
tree without these caches), the hybrid requests answered by keyword only because semantic
search was unavailable (``keyword_fallbacks``: a run with many says little about hybrid
search), plus the conditions. JSON to stdout and ``--out``.

    .venv/bin/python bench/search_bench.py                      # this checkout
    git worktree add /tmp/before <commit>; \\
    .venv/bin/python bench/search_bench.py --tree /tmp/before --out /tmp/before.json
    .venv/bin/python bench/search_bench.py --seconds 5 --warmup-seconds 3 --rounds 1  # smoke

Traffic goes to 127.0.0.1 only, and every run is bounded: one raymall start (a minute or
two), 2 x ``--warmup-seconds``, 2 x ``--rounds`` x ``--seconds``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import redis
from sqlalchemy import create_engine

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]
from _harness import raymall_server, run_wrk, tree_env  # noqa: E402

from raymall.launcher.scratch import private_redis_db  # noqa: E402

SAMPLES = 100_000  # length of the request sequence (wrk threads cycle through it)
CHECKED = 25  # queries searched on both endpoints before timing (they must answer 200)
GENERATION_KEY = "catalog:listing:gen"  # bumped after every catalog write commits
SEED = 20261207
ENDPOINTS = {
    "keyword": "/products/search?size=20&q=",  # MariaDB FULLTEXT, catalog cards
    "hybrid": "/search?size=10&q=",  # keyword + semantic (query embedding), fused
}
# raymall_cache_events_total{cache=...}: which caches each endpoint goes through
CACHES = {
    "keyword": ("product_search",),
    "hybrid": ("search_keyword", "search_semantic", "query_vectors"),
}
HITS = ("hit", "shared_hit")


# ---- queries --------------------------------------------------------------------------------
def vocabulary_queries(n: int) -> list[str]:
    """``n`` distinct queries a shopper of the demo catalog would type, in a fixed order
    (the first is the most popular)."""
    from raymall.catalog.demo_vocab import BRANDS, LEAVES

    found: list[str] = []
    for leaf in LEAVES:
        nouns = [x.lower() for x in leaf.nouns]
        found += nouns
        found.append(leaf.path[-1].lower())
        found += [f"{f.lower()} {noun}" for f in leaf.features for noun in nouns]
        found += [f"{noun} for {u}" for u in leaf.uses for noun in nouns]
        found += [f"{m.lower()} {nouns[-1]}" for m in leaf.materials]
        found += [f"{f.lower()} {nouns[0]} for {u}" for f in leaf.features for u in leaf.uses]
        found += [
            f"{name.lower()} {noun}"
            for name, depts, _ in BRANDS
            if leaf.dept in depts
            for noun in nouns
        ]
    unique = list(dict.fromkeys(" ".join(q.split()) for q in found))
    random.Random(SEED).shuffle(unique)
    if len(unique) < n:
        raise SystemExit(f"the demo vocabulary has {len(unique)} distinct queries, not {n}")
    return unique[:n]


def zipf_sequence(queries: list[str], s: float, count: int) -> list[str]:
    """``count`` requests: query of popularity rank r drawn with probability ~ 1/r^s."""
    weights = [1 / (rank**s) for rank in range(1, len(queries) + 1)]
    return random.Random(SEED + 1).choices(queries, weights=weights, k=count)


def lua_script(sequence_file: Path, prefix: str, tmp: Path, name: str) -> Path:
    """wrk Lua walking the request sequence, each thread from its own offset."""
    text = f"""
local paths = {{}}
for line in io.lines("{sequence_file}") do paths[#paths + 1] = "{prefix}" .. line end
local threads = 0
function setup(thread) threads = threads + 1; thread:set("offset", threads * 7919) end
function init(args) i = offset end
function request()
  i = i + 1
  return wrk.format("GET", paths[i % #paths + 1])
end
"""
    path = tmp / f"{name}.lua"
    path.write_text(text)
    return path


# ---- stores ---------------------------------------------------------------------------------
def make_database(server: str) -> tuple[str, Any]:
    name = f"raymall_searchbench_{secrets.token_hex(4)}"
    admin = create_engine(server.rstrip("/") + "/")
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")

    def drop() -> None:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        admin.dispose()

    return server.rstrip("/") + f"/{name}", drop


def seed(db: str, rurl: str, tree: Path | None, var: Path) -> int:
    """``raymall seed --demo`` from the tree under test; answers the published products."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RAYMALL_")},
        **tree_env(tree),
        "RAYMALL_DATABASE_URL": db,
        "RAYMALL_REDIS_URL": rurl,
        "RAYMALL_VAR_DIR": str(var),
    }
    out = subprocess.run(
        [sys.executable, "-m", "raymall", "seed", "--demo"],
        env=env,
        cwd=tree or ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.returncode:
        raise RuntimeError(f"raymall seed failed:\n{out.stdout}\n{out.stderr}")
    engine = create_engine(db)
    with engine.connect() as conn:
        n = conn.exec_driver_sql("SELECT COUNT(*) FROM products WHERE status='published'")
        published = int(n.scalar() or 0)
    engine.dispose()
    return published


class CatalogWrites:
    """Moves the catalog generation every ``every_s`` seconds, in a thread, as catalog
    writes do after they commit (every cached search answer is then stale)."""

    def __init__(self, redis_url: str, every_s: float) -> None:
        self.client = redis.Redis.from_url(redis_url)
        self.every_s = every_s
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.client.incr(GENERATION_KEY)
            self.count += 1

    def start(self) -> None:
        if self.every_s > 0:
            self._thread.start()

    def stop(self) -> int:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.client.close()
        return self.count


# ---- measuring ------------------------------------------------------------------------------
def cache_counts(base: str) -> dict[tuple[str, str], float]:
    """raymall_cache_events_total by (cache, event), from the app's merged /metrics, and
    the searches answered by keyword because semantic search was unavailable (as cache
    ``fallback``)."""
    out: dict[tuple[str, str], float] = {}
    text = httpx.get(base + "/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith("raymall_search_keyword_fallbacks_total"):
            key = ("fallback", "keyword")
            out[key] = out.get(key, 0.0) + float(line.rpartition(" ")[2])
        if not line.startswith("raymall_cache_events_total{"):
            continue
        labels, _, value = line.rpartition(" ")
        cache = labels.split('cache="', 1)[1].split('"', 1)[0]
        event = labels.split('event="', 1)[1].split('"', 1)[0]
        out[(cache, event)] = out.get((cache, event), 0.0) + float(value)
    return out


def hit_ratios(
    before: dict[tuple[str, str], float], after: dict[tuple[str, str], float], endpoint: str
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for cache in CACHES[endpoint]:
        delta = Counter(
            {e: after.get((c, e), 0.0) - before.get((c, e), 0.0) for (c, e) in after if c == cache}
        )
        total = sum(delta.values())
        if total <= 0:
            out[cache] = None  # this tree has no such cache (or it was not used)
            continue
        out[cache] = {
            "hit_ratio": round(sum(delta[e] for e in HITS) / total, 3),
            "events": {e: int(v) for e, v in sorted(delta.items()) if v},
        }
    return out


def wait_for_hybrid(base: str, timeout_s: float = 600) -> None:
    """Until hybrid search uses both rankings (the product index is built and loaded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            body = httpx.get(base + "/search", params={"q": "thermos"}, timeout=30).json()
            if "semantic" in body.get("modes_used", []):
                return
        except (httpx.HTTPError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("hybrid search never used the semantic ranking")
        time.sleep(1)


def check_answers(base: str, queries: list[str]) -> dict[str, int]:
    """These queries answer 200 on both endpoints; how many find anything."""
    found = {"keyword": 0, "hybrid": 0}
    with httpx.Client(base_url=base, timeout=30) as client:
        for q in queries:
            for name, prefix in ENDPOINTS.items():
                resp = client.get(prefix + quote(q))
                if resp.status_code != 200:
                    raise RuntimeError(f"{name} {q!r}: {resp.status_code} {resp.text[:300]}")
                found[name] += bool(resp.json()["items"])
    return found


def median_of(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        k: round(statistics.median(r[k] for r in rounds), 2) for k in ("rps", "p50_ms", "p99_ms")
    }
    out["rounds"] = [{k: r[k] for k in ("rps", "p50_ms", "p99_ms")} for r in rounds]
    out["requests"] = sum(r["requests"] for r in rounds)
    out["non_2xx"] = sum(r["non_2xx"] for r in rounds)
    out["socket_errors"] = sum(r["socket_errors"] for r in rounds)
    return out


def tree_revision(tree: Path | None) -> str:
    where = str(tree or ROOT)
    try:
        rev = subprocess.run(
            ["git", "-C", where, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", where, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("+uncommitted changes" if dirty else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, help="run raymall from this checkout")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--warmup-seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queries", type=int, default=500, help="distinct queries")
    parser.add_argument("--zipf", type=float, default=1.0, help="popularity exponent s")
    parser.add_argument(
        "--catalog-write-every-s",
        type=float,
        default=30.0,
        help="seconds between catalog generation bumps during the runs (0: none)",
    )
    parser.add_argument("--database-server", default="mysql+pymysql://root@127.0.0.1:3306/")
    parser.add_argument("--redis-server", default="redis://127.0.0.1:6379/")
    parser.add_argument("--out", type=Path, help="write the JSON report here too")
    args = parser.parse_args()
    tree = args.tree.resolve() if args.tree else None

    queries = vocabulary_queries(args.queries)
    sequence = zipf_sequence(queries, args.zipf, SAMPLES)
    top10 = sum(n for _, n in Counter(sequence).most_common(10)) / len(sequence)
    report: dict[str, Any] = {
        "conditions": {
            "tree": str(tree or ROOT),
            "revision": tree_revision(tree),
            "cpus": os.cpu_count(),
            "load_avg_1m_start": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
            "connections": args.connections,
            "wrk_threads": args.threads,
            "seconds": args.seconds,
            "warmup_seconds": args.warmup_seconds,
            "rounds": args.rounds,
            "distinct_queries": len(queries),
            "zipf_s": args.zipf,
            "top10_query_share": round(top10, 3),
            "catalog_write_every_s": args.catalog_write_every_s,
            "distinct_in_sequence": len(set(sequence)),
            "endpoints": ENDPOINTS,
            "server": "raymall serve, RAYMALL_ENV=dev, recommender on, Milvus Lite",
        }
    }
    print("conditions:", json.dumps(report["conditions"]), flush=True)
    rurl = private_redis_db(args.redis_server)
    db, drop = make_database(args.database_server)
    try:
        with tempfile.TemporaryDirectory(prefix="raymall-searchbench-") as tmp_dir:
            tmp = Path(tmp_dir)
            redis.Redis.from_url(rurl).flushdb()
            var = tmp / "var"
            var.mkdir()
            report["conditions"]["published_products"] = seed(db, rurl, tree, tmp / "seed")
            engine = create_engine(db)
            with engine.connect() as conn:
                report["conditions"]["mariadb"] = conn.exec_driver_sql("SELECT VERSION()").scalar()
            engine.dispose()
            seq_file = tmp / "sequence.txt"
            seq_file.write_text("\n".join(quote(q) for q in sequence) + "\n")
            scripts = {n: lua_script(seq_file, p, tmp, n) for n, p in ENDPOINTS.items()}
            env = {
                "RAYMALL_ENV": "dev",
                "RAYMALL_DATABASE_URL": db,
                "RAYMALL_REDIS_URL": rurl,
                "RAYMALL_MILVUS_URI": str(var / "milvus.db"),
                "RAY_ADDRESS": "local",
            }
            started = time.monotonic()
            with raymall_server(env=env, timeout_s=900, var=var, tree=tree) as base:
                wait_for_hybrid(base)
                report["conditions"]["startup_s"] = round(time.monotonic() - started, 1)
                sample = random.Random(SEED + 2).sample(queries, min(CHECKED, len(queries)))
                report["conditions"]["checked_queries_finding_something"] = check_answers(
                    base, sample
                )
                writes = CatalogWrites(rurl, args.catalog_write_every_s)
                writes.start()
                for name in ENDPOINTS:
                    run_wrk(
                        base,
                        threads=args.threads,
                        connections=args.connections,
                        seconds=args.warmup_seconds,
                        script=str(scripts[name]),
                    )
                rounds: dict[str, list[dict[str, Any]]] = {n: [] for n in ENDPOINTS}
                counts: dict[str, list[Any]] = {n: [] for n in ENDPOINTS}
                for n in range(args.rounds):
                    for name in ENDPOINTS if n % 2 == 0 else reversed(ENDPOINTS):
                        before = cache_counts(base)
                        r = run_wrk(
                            base,
                            threads=args.threads,
                            connections=args.connections,
                            seconds=args.seconds,
                            script=str(scripts[name]),
                        )
                        r.pop("raw", None)
                        rounds[name].append(r)
                        counts[name].append((before, cache_counts(base)))
                        print(f"  {name} round {n + 1}: {r}", flush=True)
                report["conditions"]["catalog_writes"] = writes.stop()
                for name in ENDPOINTS:
                    result = median_of(rounds[name])
                    # the endpoints alternate, so each endpoint's rounds are summed alone
                    summed: dict[tuple[str, str], float] = {}
                    for before, after in counts[name]:
                        for key in after:
                            summed[key] = summed.get(key, 0.0) + after[key] - before.get(key, 0)
                    result["caches"] = hit_ratios({}, summed, name)
                    # answers that are keyword only (semantic search unavailable): these
                    # are not hybrid answers, so a run with many says little about hybrid
                    result["keyword_fallbacks"] = int(summed.get(("fallback", "keyword"), 0))
                    report[name] = result
    finally:
        drop()
        redis.Redis.from_url(rurl).flushdb()
    report["conditions"]["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
