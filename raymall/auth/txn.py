"""Run a unit of database work in a worker thread, inside one transaction.

SQLAlchemy here is synchronous; the event loop must never wait on it. ``in_tx`` commits
when ``fn`` returns and rolls back when it raises (the exception then propagates).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from raymall.db import transaction

P = ParamSpec("P")
T = TypeVar("T")


async def in_tx(
    sessions: sessionmaker[Session],
    fn: Callable[Concatenate[Session, P], T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    def run() -> T:
        with transaction(sessions) as session:
            return fn(session, *args, **kwargs)

    return await asyncio.to_thread(run)
