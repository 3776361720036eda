"""``raymall`` command line: serve, migrate, seed, create-admin, reindex, status, profile,
reshard, error-codes."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from raymall.errors import DomainError
from raymall.ports import PortsInUse
from raymall.settings import ConfigError, Settings, load_settings


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "host", None):
        overrides["http_host"] = args.host
    if getattr(args, "port", None):
        overrides["http_port"] = args.port
    return load_settings(**overrides)


def cmd_serve(args: argparse.Namespace) -> int:
    import ray

    from raymall.launcher import app as app_mod

    settings = _settings(args)
    stop_event = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        print(f"raymall: received {signal.Signals(signum).name}, draining", flush=True)
        stop_event.set()

    address = args.address or os.environ.get("RAY_ADDRESS") or None
    app_mod.init_ray(settings, address=address, num_cpus=args.num_cpus)
    # after ray.init, which installs its own SIGTERM handler (log and abort)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    running = None
    try:
        running = app_mod.start(settings)
        print(f"raymall: serving on {running.url} (Ctrl-C to stop)", flush=True)
        while not stop_event.wait(0.5):
            pass
    finally:
        if running is not None:
            app_mod.stop(running)
        ray.shutdown()
        app_mod.remove_haproxy_dir(settings)  # made by init_ray, even when start failed
        print("raymall: stopped", flush=True)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from raymall.launcher.migrate import downgrade, upgrade

    settings = _settings(args)
    url = settings.resolved_database_url
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    if args.downgrade:
        downgrade(url, args.downgrade)
    else:
        upgrade(url, args.revision)
    from raymall.bootstrap import ensure_reference_data

    ensure_reference_data(settings) if not args.downgrade else None
    print(f"raymall: database at {args.downgrade or args.revision}")
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    from raymall.launcher.seed import seed_demo

    if not args.demo:
        print("raymall seed: pass --demo to load the demo catalog", file=sys.stderr)
        return 2
    summary = seed_demo(_settings(args))
    print(json.dumps(summary, indent=2))
    return 0


def cmd_create_admin(args: argparse.Namespace) -> int:
    import getpass

    from raymall.bootstrap import create_admin

    password = args.password or os.environ.get("RAYMALL_ADMIN_PASSWORD")
    if not password:
        password = getpass.getpass("admin password: ")
    user_id = create_admin(
        _settings(args), email=args.email, username=args.username, password=password
    )
    print(f"raymall: admin {args.username} ready (id {user_id})")
    return 0


def cmd_reindex(args: argparse.Namespace) -> int:
    from recommend.index import IndexLocked
    from recommend.reindex import reindex

    try:
        summary = reindex(_settings(args), batch_size=args.batch_size)
    except IndexLocked as exc:
        print(f"raymall reindex: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from raymall.launcher.status import collect

    report = collect(_settings(args), address=args.address)
    print(json.dumps(report, indent=2, default=str))
    return 0 if report.get("ok") else 1


def cmd_profile(args: argparse.Namespace) -> int:
    from pathlib import Path

    from raymall.launcher.profile import ProfileError, profile

    settings = _settings(args)
    address = args.address or os.environ.get("RAY_ADDRESS") or "auto"
    try:
        target, out = profile(
            address=address,
            namespace=settings.namespace,
            var_dir=settings.var_dir,
            actor=args.actor,
            replica=args.replica,
            seconds=args.seconds,
            out=Path(args.out) if args.out else None,
            fmt=args.format,
        )
    except ProfileError as exc:
        print(f"raymall profile: {exc}", file=sys.stderr)
        return 1
    print(f"raymall: profiled {target.name} (pid {target.pid}) for {args.seconds:g} s: {out}")
    return 0


def cmd_reshard(args: argparse.Namespace) -> int:
    from actors.reshard import Layout
    from raymall.launcher.reshard import run_offline

    settings = _settings(args)
    layout = Layout(args.inventory_shards, args.order_shards)
    if min(layout.inventory_shards, layout.order_shards) < 1:
        print("raymall reshard: shard counts must be at least 1", file=sys.stderr)
        return 2
    address = args.address or os.environ.get("RAY_ADDRESS") or None
    report = run_offline(settings, layout, address=address, dry_run=args.dry_run)
    print(json.dumps(report, indent=2))
    return 0


def cmd_error_codes(args: argparse.Namespace) -> int:
    from pathlib import Path

    from raymall import errordoc

    root = Path(args.root) if args.root else Path(__file__).resolve().parents[2]
    if args.check:
        if errordoc.is_current(root):
            return 0
        print(f"raymall: {errordoc.DOC_PATH} is out of date: raymall error-codes --write")
        return 1
    if args.write:
        print(f"raymall: wrote {errordoc.write(root)}")
        return 0
    sys.stdout.write(errordoc.render())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raymall", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="start Ray (or join --address) and serve the HTTP API")
    p.add_argument("--address", help="Ray cluster address to join (e.g. auto)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs for a local Ray instance")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("migrate", help="apply database migrations")
    p.add_argument("--revision", default="head")
    p.add_argument("--downgrade", metavar="REVISION", help="downgrade to REVISION instead")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("seed", help="load data")
    p.add_argument("--demo", action="store_true", help="the deterministic demo catalog")
    p.set_defaults(func=cmd_seed)

    p = sub.add_parser("create-admin", help="create or promote an admin account")
    p.add_argument("--email", required=True)
    p.add_argument("--username", required=True)
    p.add_argument("--password", help="or RAYMALL_ADMIN_PASSWORD, or prompt")
    p.set_defaults(func=cmd_create_admin)

    p = sub.add_parser("reindex", help="rebuild the product vector index from the database")
    p.add_argument("--batch-size", type=int, default=256)
    p.set_defaults(func=cmd_reindex)

    p = sub.add_parser("status", help="configuration and store health")
    p.add_argument("--address", help="also report the Ray cluster and Serve app")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("profile", help="a flame graph of a running actor or replica (py-spy)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--actor", help="a named actor, e.g. inventory-0, order-1, outbox-relay-0")
    which.add_argument("--replica", type=int, help="the N-th live Serve replica (0 = first)")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--out", help="output file (default: var/profiles/<name>-<time>.svg)")
    p.add_argument("--format", choices=["flamegraph", "speedscope", "raw"], default="flamegraph")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or auto)")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser(
        "reshard", help="move shard ownership to new shard counts (with the app stopped)"
    )
    p.add_argument("--inventory-shards", type=int, required=True)
    p.add_argument("--order-shards", type=int, required=True)
    p.add_argument("--address", help="Ray cluster to check for live shards (default: RAY_ADDRESS)")
    p.add_argument("--dry-run", action="store_true", help="report what is out of place only")
    p.set_defaults(func=cmd_reshard)

    p = sub.add_parser("error-codes", help="the error-code dictionary (docs/errors.md)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite docs/errors.md")
    mode.add_argument("--check", action="store_true", help="exit 1 if it is out of date")
    p.add_argument("--root", help="the source tree (default: this checkout)")
    p.set_defaults(func=cmd_error_codes)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"raymall: {exc}", file=sys.stderr)
        return 2
    except DomainError as exc:  # e.g. create-admin with a weak password
        print(f"raymall: {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    except PortsInUse as exc:
        print(f"raymall: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
