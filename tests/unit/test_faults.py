"""raymall.faults: third-party faults map to the error tree by type (subclasses included,
look-alike names not), Ray's wrapping of a domain error is undone once, and the retry rule
of actor calls."""

from __future__ import annotations

import sqlite3

import pymysql.err
import pytest
import redis.exceptions
from ray.exceptions import (
    ActorDiedError,
    ActorUnavailableError,
    GetTimeoutError,
    RayActorError,
    RayTaskError,
)
from ray.serve.exceptions import BackPressureError
from sqlalchemy.exc import OperationalError

from raymall.errors import DomainError, NotFound, OutOfStock, Unavailable
from raymall.faults import domain_cause, retriable, to_domain


def wrapped(exc: Exception) -> Exception:
    """``exc`` as Ray raises it in the caller when an actor method raised it."""
    return RayTaskError("method", "traceback", exc).as_instanceof_cause()


FAULTS = [
    RayActorError(),
    ActorDiedError(),
    ActorUnavailableError("restarting", None),
    GetTimeoutError("late"),
    BackPressureError(num_queued_requests=9, max_queued_requests=8),
    OperationalError("SELECT 1", {}, Exception("gone away")),
    pymysql.err.OperationalError(2013, "Lost connection"),
    sqlite3.OperationalError("database is locked"),
    redis.exceptions.ConnectionError("refused"),
    redis.exceptions.BusyLoadingError("loading"),  # a redis ConnectionError subclass
    redis.exceptions.TimeoutError("slow"),
    ConnectionRefusedError("refused"),  # a builtin ConnectionError subclass
    TimeoutError("slow"),
]


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: type(f).__name__)
def test_each_fault_of_the_table_is_a_retriable_503(fault: BaseException) -> None:
    mapped = to_domain(fault)
    assert isinstance(mapped, Unavailable) and mapped.status == 503 and mapped.retriable
    assert type(fault).__name__ in mapped.message


def test_a_look_alike_name_is_not_a_fault() -> None:
    class OperationalError(Exception):  # same name, another type
        pass

    class RayActorError(Exception):
        pass

    assert to_domain(OperationalError("x")) is None
    assert to_domain(RayActorError("x")) is None
    assert to_domain(KeyError("bug")) is None


def test_a_domain_error_raised_in_an_actor_is_unwrapped_once() -> None:
    refused = OutOfStock("none left", details={"sku_ids": [3]})
    assert domain_cause(wrapped(refused)) is refused
    assert to_domain(wrapped(refused)) is refused
    assert domain_cause(refused) is refused and to_domain(refused) is refused
    assert domain_cause(wrapped(KeyError("bug"))) is None
    assert domain_cause(RuntimeError("plain")) is None
    assert to_domain(wrapped(KeyError("bug"))) is None  # a bug in the actor stays a 500


def test_the_retry_rule_of_actor_calls() -> None:
    # domain errors decide for themselves, wrapped or not
    assert retriable(Unavailable("commit failed"))
    assert retriable(wrapped(Unavailable("commit failed")))
    assert not retriable(OutOfStock("none"))
    assert not retriable(wrapped(NotFound("no such key")))
    # actor faults, timeouts and an actor name not registered yet are retried
    for fault in (RayActorError(), ActorDiedError(), GetTimeoutError("x"), TimeoutError()):
        assert retriable(fault)
    assert retriable(ValueError("Failed to look up actor with name 'inventory-0'"))
    # bugs are not
    assert not retriable(KeyError("bug"))
    assert not retriable(wrapped(KeyError("bug")))
    assert not retriable(DomainError("generic"))
