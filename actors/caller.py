"""ActorCaller: the one way a client calls the named actors of one kind.

``ActorCaller(namespace, name_of, timeout_s=..., retry_s=...)`` calls actor ``index``
(named ``name_of(index)`` in ``namespace``). Guarantees:

- **handles by name**: looked up once (in a worker thread: ``ray.get_actor`` blocks) and
  kept; dropped after a fault, so that a restarted or re-created actor is found again;
- **timeout**: each attempt waits at most ``timeout_s``;
- **one retry rule** (``raymall.faults.retriable``): actor faults, timeouts and retriable
  domain errors are retried with jittered exponential backoff (``raymall.retry.Backoff``)
  for at most ``budget_s`` (default ``retry_s``), then ``Unavailable`` (503, retriable
  with the same key). So only keyed (idempotent) operations and reads may be sent
  through it;
- **domain errors come back as themselves**: one raised in the actor is unwrapped from
  Ray's ``RayTaskError`` (``raymall.faults.domain_cause``) and raised as is when it is
  not retriable;
- ``retry_args``: the arguments of the attempts after the first, when they differ (an
  order placement retried after a fault looks its keys up first);
- ``replayed``: for the attempts after the first, turns a domain error that shows the
  first attempt took effect into the answer (an order transition retried after a fault
  finds the order already in its target state), or None when it does not;
- **traced**: under a sampled span (``raymall.tracing``) the call is a CLIENT span
  (retries included) and reaches the actor as ``traced_call(traceparent, method, ...)``
  (``raymall.tracing.traced_actor``), which continues the trace there; otherwise the method
  is called as is, at no cost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import ray

from raymall import tracing
from raymall.errors import DomainError, Unavailable
from raymall.faults import domain_cause, retriable
from raymall.retry import Backoff


class ActorCaller:
    """Calls ``name_of(index)`` actors (see the module docstring)."""

    def __init__(
        self,
        namespace: str,
        name_of: Callable[[int], str],
        *,
        timeout_s: float,
        retry_s: float,
    ) -> None:
        self.namespace = namespace
        self.name_of = name_of
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self._handles: dict[int, Any] = {}

    async def handle(self, index: int) -> Any:
        """The handle of actor ``index`` (looked up by name once, then kept)."""
        handle = self._handles.get(index)
        if handle is None:
            handle = await asyncio.to_thread(
                ray.get_actor, self.name_of(index), namespace=self.namespace
            )
            self._handles[index] = handle
        return handle

    def forget(self, index: int) -> None:
        """Look actor ``index`` up by name again on the next call."""
        self._handles.pop(index, None)

    async def call(
        self,
        index: int,
        method: str,
        *args: Any,
        budget_s: float | None = None,
        retry_args: tuple[Any, ...] | None = None,
        replayed: Callable[[DomainError], Any] | None = None,
        **kw: Any,
    ) -> Any:
        """``method(*args, **kw)`` on actor ``index``, retried as the module docstring says."""
        if tracing.enabled:
            span = tracing.start_client(f"{self.name_of(index)} {method}")
            if span is not None:
                with tracing.use(span):
                    carrier = tracing.traceparent(span)
                    return await self._call(
                        index,
                        "traced_call",
                        (carrier, method, *args),
                        budget_s,
                        None if retry_args is None else (carrier, method, *retry_args),
                        replayed,
                        kw,
                    )
        return await self._call(index, method, args, budget_s, retry_args, replayed, kw)

    async def _call(
        self,
        index: int,
        method: str,
        args: tuple[Any, ...],
        budget_s: float | None,
        retry_args: tuple[Any, ...] | None,
        replayed: Callable[[DomainError], Any] | None,
        kw: dict[str, Any],
    ) -> Any:
        backoff = Backoff(budget_s=self.retry_s if budget_s is None else budget_s)
        call_args = args
        retried = False
        while True:
            try:
                handle = self._handles.get(index) or await self.handle(index)
                if method == "traced_call" and not hasattr(handle, method):
                    # an actor started by a version without tracing: call it plainly
                    ref = getattr(handle, call_args[1]).remote(*call_args[2:], **kw)
                else:
                    ref = getattr(handle, method).remote(*call_args, **kw)
                return await asyncio.wait_for(ref, self.timeout_s)
            except Exception as exc:
                domain = domain_cause(exc)
                if domain is not None and not domain.retriable:
                    if retried and replayed is not None:
                        answer = replayed(domain)
                        if answer is not None:
                            return answer
                    raise domain from None
                if not retriable(exc):
                    raise
                if domain is None:
                    self._handles.pop(index, None)  # the actor may be another one now
                if backoff.exhausted():
                    raise Unavailable(
                        f"{self.name_of(index)} is unavailable ({type(exc).__name__})"
                    ) from exc
                if retry_args is not None:
                    call_args = retry_args
                retried = True
                await backoff.wait()
