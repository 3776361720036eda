"""``raymall profile`` picks its target from Ray's actor table: a named actor, or the N-th
live replica of the ingress by name (the carrier's and payment provider's are skipped); an
unknown one is refused with the live names."""

from __future__ import annotations

from pathlib import Path

import pytest

from raymall.launcher.profile import ProfileError, Target, default_output, find_target

ACTORS = [
    {"Name": "inventory-0", "ActorClassName": "InventoryShard", "Pid": 11,
     "Address": {"NodeID": "n1", "IPAddress": "10.0.0.1"}},
    {"Name": "SERVE_REPLICA::raymall#Ingress#b", "ActorClassName": "ServeReplica:raymall:Ingress",
     "Pid": 22, "Address": {"NodeID": "n1", "IPAddress": "10.0.0.1"}},
    {"Name": "SERVE_REPLICA::raymall#Ingress#a", "ActorClassName": "ServeReplica:raymall:Ingress",
     "Pid": 33, "Address": {"NodeID": "n2", "IPAddress": "10.0.0.2"}},
    {"Name": "SERVE_REPLICA::raymall#Carrier#a", "ActorClassName": "ServeReplica:raymall:Carrier",
     "Pid": 44, "Address": {"NodeID": "n1", "IPAddress": "10.0.0.1"}},
    {"Name": "SERVE_REPLICA::raymall#PaymentProvider#a",
     "ActorClassName": "ServeReplica:raymall:PaymentProvider",
     "Pid": 55, "Address": {"NodeID": "n1", "IPAddress": "10.0.0.1"}},
]  # fmt: skip


def test_a_named_actor_is_found_with_its_pid_and_node() -> None:
    assert find_target(ACTORS, actor="inventory-0") == Target("inventory-0", 11, "n1", "10.0.0.1")


def test_the_ingress_replicas_are_numbered_by_name_and_no_other_deployment_s() -> None:
    assert find_target(ACTORS, replica=0).pid == 33
    assert find_target(ACTORS, replica=1).pid == 22
    with pytest.raises(ProfileError, match="2 live replicas"):
        find_target(ACTORS, replica=2)


def test_an_unknown_actor_is_refused_naming_the_live_ones() -> None:
    with pytest.raises(ProfileError, match="inventory-0"):
        find_target(ACTORS, actor="inventory-9")


def test_the_default_output_is_a_file_name_under_var_profiles() -> None:
    path = default_output(Path("var"), find_target(ACTORS, replica=0), "flamegraph")
    assert path.parent == Path("var/profiles") and path.suffix == ".svg"
    assert "#" not in path.name and ":" not in path.name


def test_an_idle_process_still_gets_a_flame_graph_of_where_it_waits(tmp_path: Path) -> None:
    """py-spy drops idle samples by default, so a process that ran no Python for the whole
    window (an idle order shard) left nothing to draw; ``record`` samples it again with the
    idle stacks kept."""
    import subprocess
    import sys

    from raymall.launcher.profile import record

    script = (
        "import time\n"
        "def waiting_here():\n"
        "    print('ready', flush=True)\n"
        "    time.sleep(60)\n"
        "waiting_here()"
    )
    sleeper = subprocess.Popen(  # noqa: S603
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    )
    try:
        assert sleeper.stdout is not None and sleeper.stdout.readline() == "ready\n"
        out = record(Target("sleeper", sleeper.pid, "", ""), 1, tmp_path / "idle.svg")
    finally:
        sleeper.kill()
        sleeper.wait()
    text = out.read_text()
    assert "<svg" in text and "waiting_here" in text
