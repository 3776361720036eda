"""The drain flag's poll interval fits inside the grace period shutdown waits for it."""

from __future__ import annotations

from deployments.drain import POLL_S
from raymall.launcher.app import DRAIN_GRACE_S


def test_the_drain_grace_outlasts_two_polls_of_the_flag() -> None:
    # a replica sees the flag within one poll (plus a round trip) after it is raised
    assert DRAIN_GRACE_S >= 2 * POLL_S
