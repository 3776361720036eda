"""What a failure means: third-party faults mapped to the error tree once, by type.

    fault (by type, subclasses included)          domain error
    ray.exceptions.RayActorError                  Unavailable  the actor died or restarts
    ├── ActorDiedError                            Unavailable
    └── ActorUnavailableError                     Unavailable
    ray.exceptions.GetTimeoutError                Unavailable
    ray.serve.exceptions.BackPressureError        Unavailable  a replica's queue is full
    sqlalchemy.exc.OperationalError               Unavailable  the database went away
    (and the drivers' own: pymysql, sqlite3)
    redis.exceptions.ConnectionError              Unavailable
    redis.exceptions.TimeoutError                 Unavailable
    ConnectionError, TimeoutError (builtins)      Unavailable

A domain error raised inside a Ray actor or task comes back wrapped (``RayTaskError``,
whose ``cause`` is the original): ``domain_cause`` is the one unwrap of it.

- ``to_domain(exc)``: the domain error ``exc`` stands for (its own, the one it wraps, or
  the table's), or None for a bug (answered 500 by the edge);
- ``retriable(exc)``: the retry rule of actor calls: a domain error says so itself; of the
  rest, actor faults and timeouts are retried, and ``ValueError``, which is what
  ``ray.get_actor`` raises for a name that is not registered (yet) while an actor restarts.

Used by the HTTP edge (``deployments.errors``) and by ``actors.caller.ActorCaller``.
"""

from __future__ import annotations

import functools
import sqlite3

from ray.exceptions import ActorDiedError, ActorUnavailableError, GetTimeoutError, RayActorError

from raymall.errors import DomainError, Unavailable

Table = dict[type[BaseException], type[DomainError]]

RETRIABLE: tuple[type[BaseException], ...] = (
    RayActorError,
    GetTimeoutError,
    TimeoutError,
    ValueError,
)


@functools.cache
def fault_table() -> Table:
    """The table (see the module docstring). Built on first use, so that a process that
    never meets a Serve or Redis error (an actor) never imports them."""
    from pymysql.err import OperationalError as PyMySQLOperationalError
    from ray.serve.exceptions import BackPressureError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sqlalchemy.exc import OperationalError

    return {
        RayActorError: Unavailable,
        ActorDiedError: Unavailable,
        ActorUnavailableError: Unavailable,
        GetTimeoutError: Unavailable,
        BackPressureError: Unavailable,
        OperationalError: Unavailable,
        PyMySQLOperationalError: Unavailable,
        sqlite3.OperationalError: Unavailable,
        RedisConnectionError: Unavailable,
        RedisTimeoutError: Unavailable,
        ConnectionError: Unavailable,
        TimeoutError: Unavailable,
    }


def domain_cause(exc: BaseException) -> DomainError | None:
    """The domain error ``exc`` is or wraps (a Ray task's ``cause``), else None."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, DomainError):
        return cause
    return exc if isinstance(exc, DomainError) else None


def to_domain(exc: BaseException) -> DomainError | None:
    """The domain error ``exc`` stands for, or None when it is not a known fault."""
    domain = domain_cause(exc)
    if domain is not None:
        return domain
    table = fault_table()
    for kind in type(exc).__mro__:
        mapped = table.get(kind)
        if mapped is not None:
            name = type(exc).__name__
            return mapped(f"a backing service is unavailable ({name}); retry the request")
    return None


def retriable(exc: BaseException) -> bool:
    """Whether an actor call that failed with ``exc`` may be sent again (with the same
    key: only keyed operations and reads are retried)."""
    domain = domain_cause(exc)
    if domain is not None:
        return domain.retriable
    return isinstance(exc, RETRIABLE)
