"""Store outages on purpose: a test's own ``mariadbd`` (beside ``tests.redis_process`` for
Redis), a raymall instance on them, and a flash-sale load that times every answer through a
SIGKILL of either store and its restart.

The servers are the test's own (throw-away directories, ports inside the instance's own
port block: ``store_ports``), so a test may kill and restart them without touching the
shared servers on 3306 and 6379.

    http_port, redis_port, db_port = store_ports()
    redis, mariadb = RedisProcess(redis_port), MariaDbServer(tmp / "db", db_port)
    redis.start(); mariadb.start()
    app = ServedApp(tmp / "var", http_port, mariadb.create_database("raymall"), redis.url)
    app.start()
    outage = Outage(redis, after_s=3, down_s=4, then_s=4)
    run = asyncio.run(flash_load(app.url, sale_id, buyers, concurrency=48, outage=outage))
    print(run.summary("redis"))     # refused %, first purchase after the store is back
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import random
import secrets
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from raymall import ports
from raymall.settings import Settings

READY_TIMEOUT_S = 30.0
REFUSED = frozenset({429, 502, 503, 504, 599})  # 599: no answer (connection or timeout)


def store_ports() -> tuple[int, int, int]:
    """(http port, Redis port, MariaDB port): a free raymall port block and two ports inside
    it that the block leaves unused. They are below the ephemeral range, so a connection the
    app opens while a store is down cannot take the store's port from its restart."""
    base = ports.find_free_block()
    redis_port, db_port = base + 1, base + 2
    assert not ports.taken("127.0.0.1", [redis_port, db_port]), "store ports are taken"
    return base, redis_port, db_port


def _wait(
    ready: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited {proc.returncode}: {_tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{proc.args!r} not ready in {timeout_s} s: {_tail(log)}")
        time.sleep(0.02)


def _tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else ""


class Killable(Protocol):
    """A server a test owns: ``start`` returns once it answers (again on the same port and
    data after a ``kill``, which is a SIGKILL: no shutdown of any kind)."""

    proc: subprocess.Popen[bytes] | None

    def start(self) -> None: ...

    def kill(self) -> None: ...


class MariaDbServer:
    """Debian's ``mariadbd`` on a data directory made by ``mariadb-install-db`` on first
    start, run as the current user with grant tables off (no password). Start,
    SIGKILL, start again: the kill/restart counterpart of ``tests.redis_process``."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.root.mkdir(parents=True, exist_ok=True)
        self.log = root / "mariadb.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, database: str = "") -> str:
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/{database}"

    def argv(self) -> list[str]:
        return [
            _binary("mariadbd", "mysqld"),
            "--no-defaults", f"--datadir={self.root / 'data'}", f"--port={self.port}",
            "--bind-address=127.0.0.1", f"--socket={self.root / 'mariadb.sock'}",
            f"--pid-file={self.root / 'mariadb.pid'}", f"--tmpdir={self.root}",
            f"--user={getpass.getuser()}", "--skip-grant-tables", "--skip-name-resolve",
            "--skip-log-bin", "--innodb-buffer-pool-size=128M", "--max-connections=500",
            "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci",
        ]  # fmt: skip

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "mariadbd is running"
        if not (self.root / "data" / "mysql").exists():
            subprocess.run(
                [
                    _binary("mariadb-install-db", "mysql_install_db"),
                    "--no-defaults",
                    f"--datadir={self.root / 'data'}",
                    f"--user={getpass.getuser()}",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                    "--skip-name-resolve",
                ],
                check=True,
                capture_output=True,
                timeout=120,
            )
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        _wait(self.answers, self.proc, self.log, READY_TIMEOUT_S)

    def answers(self) -> bool:
        import pymysql

        try:
            pymysql.connect(
                host="127.0.0.1", port=self.port, user="root", connect_timeout=1
            ).close()
            return True
        except pymysql.MySQLError:
            return False

    def kill(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, "mariadbd is not running"
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def create_database(self, name: str) -> str:
        import pymysql

        conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root")
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        finally:
            conn.close()
        return self.url(name)


def _binary(*names: str) -> str:
    for name in names:
        for folder in ("", "/usr/sbin/", "/usr/bin/"):
            found = shutil.which(folder + name) if folder else shutil.which(name)
            if found:
                return found
    raise RuntimeError(f"none of {names} is installed (make install adds them)")


class ServedApp:
    """``raymall serve`` in its own process (its own Ray instance) on the given stores."""

    def __init__(
        self, var: Path, http_port: int, database_url: str, redis_url: str, **settings: str
    ) -> None:
        self.var, self.http_port = var, http_port
        self.url = f"http://127.0.0.1:{http_port}"
        self.log = var / "serve.log"
        self.secrets = {
            name: secrets.token_urlsafe(48)
            for name in ("jwt_secret", "payment_secret", "flash_token_secret")
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAYMALL_")}
        env.pop("RAY_ADDRESS", None)
        self.values: dict[str, Any] = {
            "env": "test",
            "var_dir": str(var),
            "http_port": str(http_port),
            "database_url": database_url,
            "redis_url": redis_url,
            **self.secrets,
            **settings,
        }
        env.update({f"RAYMALL_{k.upper()}": str(v) for k, v in self.values.items()})
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def settings(self) -> Settings:
        """The instance's settings, as its processes read them (its secrets included)."""
        return Settings(**self.values)

    def start(self, timeout_s: float = 180.0) -> None:
        self.var.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "raymall", "serve", "--num-cpus", "2"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait(self.ready, self.proc, self.log, timeout_s)

    def ready(self) -> bool:
        return self.readiness() in ("ready", "degraded")

    def readiness(self) -> str | None:
        """``/readyz``'s status (``ready``, ``degraded``, ``not_ready``), None: no answer."""
        try:
            resp = httpx.get(self.url + "/readyz", timeout=5)
            body = resp.json()
        except (httpx.HTTPError, ValueError):
            return None
        return str(body.get("status") or body.get("error", {}).get("code"))

    def stop(self) -> None:
        """SIGKILL to the instance and every process under it (its Ray instance, HAProxy):
        its stores are thrown away with it, so nothing is left to drain or flush."""
        if self.proc is None:
            return
        import psutil

        from raymall.launcher.app import remove_haproxy_dir

        try:
            root = psutil.Process(self.proc.pid)
            family = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:  # the instance died on its own: nothing to collect
            family = []
        for proc in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        self.proc.wait(timeout=10)
        _, alive = psutil.wait_procs(family, timeout=10)
        assert not alive, f"left behind: {alive}"
        remove_haproxy_dir(self.settings())


# ---- the load ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Buyer:
    """One purchase: its own user and its own Idempotency-Key (kept across retries)."""

    user_id: int
    token: str
    key: str


@dataclass(frozen=True)
class Answer:
    buyer: int  # index into the job list
    sent: float  # monotonic seconds
    done: float
    status: int
    code: str  # error code, or the order id of a 201
    retry_after: str | None


@dataclass
class Outage:
    """Kill ``server`` ``after_s`` into the load, start it again ``down_s`` later, and
    keep the load going ``then_s`` after it answers again."""

    server: Killable
    after_s: float = 3.0
    down_s: float = 4.0
    then_s: float = 4.0
    killed_at: float = 0.0
    back_at: float = 0.0


@dataclass
class LoadRun:
    started: float
    ended: float
    answers: list[Answer] = field(default_factory=list)
    outage: Outage | None = None

    @property
    def refused(self) -> list[Answer]:
        return [a for a in self.answers if a.status in REFUSED]

    @property
    def refused_pct(self) -> float:
        return 100.0 * len(self.refused) / max(1, len(self.answers))

    def orders(self) -> dict[int, set[str]]:
        """Acknowledged purchases: buyer index -> the order ids its 201s named."""
        out: dict[int, set[str]] = {}
        for a in self.answers:
            if a.status == 201:
                out.setdefault(a.buyer, set()).add(a.code)
        return out

    def statuses(self) -> Counter[str]:
        return Counter(f"{a.status}:{a.code}" if a.status != 201 else "201" for a in self.answers)

    def recovery_s(self) -> float | None:
        """Seconds from the store answering again to the first purchase acknowledged after
        it (None: none was)."""
        assert self.outage is not None
        back = self.outage.back_at
        done = [a.done for a in self.answers if a.status == 201 and a.done >= back]
        return min(done) - back if done else None

    def longest_gap_s(self) -> float:
        """The longest time with no purchase acknowledged, from the start to the end."""
        times = sorted([self.started] + [a.done for a in self.answers if a.status == 201])
        times.append(self.ended)
        return max(b - a for a, b in zip(times, times[1:], strict=False))

    def acked_while_down(self) -> int:
        """Purchases acknowledged between the kill and the store answering again."""
        assert self.outage is not None
        down = (self.outage.killed_at, self.outage.back_at)
        return sum(a.status == 201 and down[0] < a.done < down[1] for a in self.answers)

    def summary(self, label: str) -> str:
        acked = sum(len(v) for v in self.orders().values())
        refused = Counter(f"{a.status}:{a.code}" for a in self.refused).most_common(4)
        line = (
            f"[{label}] {len(self.answers)} requests in {self.ended - self.started:.1f} s, "
            f"{acked} purchases acknowledged, {len(self.refused)} refused "
            f"({self.refused_pct:.2f}%: {refused}), longest time without a purchase "
            f"{self.longest_gap_s():.2f} s"
        )
        if self.outage is not None:
            recovery = self.recovery_s()
            shown = "none" if recovery is None else f"{recovery:.2f} s"
            line += (
                f"; {self.acked_while_down()} acknowledged while the store was down "
                f"({self.outage.back_at - self.outage.killed_at:.1f} s), first purchase "
                f"{shown} after it answered again"
            )
        return line


async def flash_load(
    url: str,
    sale_id: int,
    buyers: list[Buyer],
    *,
    concurrency: int,
    outage: Outage | None = None,
    duration_s: float = 10.0,
    timeout_s: float = 30.0,
    max_rate: float | None = None,
) -> LoadRun:
    """Purchases from ``concurrency`` clients, each buyer's request repeated with its key
    after a refusal (after its Retry-After, capped at 1 s, or 0.1-0.3 s), as a client
    should. The load ends when the buyers run out or at its end: ``duration_s``, or the
    outage's ``then_s`` after the store answers again. ``max_rate`` caps the requests per
    second (each client sends at most ``max_rate / concurrency``), so a fast machine does
    not run out of buyers. Every HTTP answer is recorded."""
    import aiohttp

    path = f"{url}/flash-sales/{sale_id}/purchase"
    queue = list(range(len(buyers)))[::-1]
    run = LoadRun(started=time.monotonic(), ended=0.0, outage=outage)
    deadline = [run.started + (duration_s if outage is None else 3600.0)]
    interval = concurrency / max_rate if max_rate else 0.0

    async def chaos() -> None:
        assert outage is not None
        await asyncio.sleep(outage.after_s)
        await asyncio.to_thread(outage.server.kill)
        outage.killed_at = time.monotonic()
        await asyncio.sleep(outage.down_s)
        await asyncio.to_thread(outage.server.start)
        outage.back_at = time.monotonic()
        deadline[0] = outage.back_at + outage.then_s

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            next_at = [0.0]
            while queue and time.monotonic() < deadline[0]:
                index = queue.pop()
                buyer = buyers[index]
                headers = {"Authorization": f"Bearer {buyer.token}", "Idempotency-Key": buyer.key}
                while True:
                    await asyncio.sleep(next_at[0] - time.monotonic())  # no wait if past
                    sent = time.monotonic()
                    next_at[0] = sent + interval
                    retry_after = None
                    try:
                        async with session.post(path, headers=headers) as resp:
                            status = resp.status
                            body = await resp.json(content_type=None)
                            retry_after = resp.headers.get("Retry-After")
                    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                        status, body = 599, {"error": {"code": type(exc).__name__}}
                    code = str(body["order_id"]) if status == 201 else _code(body)
                    run.answers.append(
                        Answer(index, sent, time.monotonic(), status, code, retry_after)
                    )
                    if status not in REFUSED or time.monotonic() >= deadline[0]:
                        break
                    pause = 0.1 + random.random() * 0.2
                    if retry_after and retry_after.isdigit():
                        pause = min(float(retry_after), 1.0)
                    await asyncio.sleep(pause)

        tasks = [worker() for _ in range(concurrency)]
        if outage is not None:
            tasks.append(chaos())
        await asyncio.gather(*tasks)
    run.ended = time.monotonic()
    return run


def _code(body: Any) -> str:
    try:
        return str(body["error"]["code"])
    except (KeyError, TypeError):
        return "no_error_shape"
