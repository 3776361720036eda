"""actors.caller.ActorCaller with fake actor handles (no Ray cluster): handles by name,
timeout, the one retry rule, backoff within a budget, domain errors unwrapped."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

import pytest
from ray.exceptions import RayActorError, RayTaskError

from actors import caller as caller_module
from actors.caller import ActorCaller
from raymall.errors import DomainError, OutOfStock, Unavailable
from raymall.retry import Backoff


class FakeMethod:
    def __init__(self, actor: FakeActor, name: str) -> None:
        self.actor = actor
        self.name = name

    def remote(self, *args: Any, **kw: Any) -> Any:
        self.actor.calls.append((self.name, args, kw))
        return self.actor.answer(self.name, args, kw)


class FakeActor:
    """A handle whose methods answer through ``answer`` (a coroutine per call)."""

    def __init__(self, behave: Callable[[int, tuple[Any, ...]], Any]) -> None:
        self.behave = behave
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    async def answer(self, name: str, args: tuple[Any, ...], kw: dict[str, Any]) -> Any:
        result = self.behave(len(self.calls), args)
        if isinstance(result, BaseException):
            raise result
        if asyncio.iscoroutine(result):
            return await result
        return result

    def __getattr__(self, name: str) -> FakeMethod:
        return FakeMethod(self, name)


class Registry:
    """Stands in for ``ray.get_actor``: names -> handles, counting lookups."""

    def __init__(self) -> None:
        self.actors: dict[tuple[str, str], Any] = {}
        self.lookups: list[tuple[str, str]] = []

    def get_actor(self, name: str, namespace: str) -> Any:
        self.lookups.append((name, namespace))
        try:
            return self.actors[(name, namespace)]
        except KeyError:
            raise ValueError(f"Failed to look up actor with name '{name}'") from None


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Registry:
    reg = Registry()
    monkeypatch.setattr(caller_module.ray, "get_actor", reg.get_actor)
    return reg


def new_caller(**kw: float) -> ActorCaller:
    options = {"timeout_s": 1.0, "retry_s": 2.0, **kw}
    return ActorCaller("ns", lambda i: f"thing-{i}", **options)


def wrapped(exc: Exception) -> Exception:
    """``exc`` as Ray raises it in the caller when the actor method raised it."""
    return RayTaskError("method", "traceback", exc).as_instanceof_cause()


async def test_a_handle_is_looked_up_by_name_once_and_kept(registry: Registry) -> None:
    actor = FakeActor(lambda n, args: args[0] * 2)
    registry.actors[("thing-3", "ns")] = actor
    caller = new_caller()
    assert await caller.call(3, "double", 4) == 8
    assert await caller.call(3, "double", 5) == 10
    assert registry.lookups == [("thing-3", "ns")]
    assert [c[0] for c in actor.calls] == ["double", "double"]


async def test_an_actor_fault_drops_the_handle_and_the_call_is_retried(
    registry: Registry,
) -> None:
    dead = FakeActor(lambda n, args: RayActorError())
    alive = FakeActor(lambda n, args: "ok")
    registry.actors[("thing-0", "ns")] = dead
    caller = new_caller()
    task = asyncio.ensure_future(caller.call(0, "ping"))
    while not dead.calls:
        await asyncio.sleep(0.001)
    registry.actors[("thing-0", "ns")] = alive  # the restarted actor
    assert await task == "ok"
    assert len(registry.lookups) >= 2  # looked up again after the fault
    assert alive.calls


async def test_a_name_not_registered_yet_is_retried_until_it_is(registry: Registry) -> None:
    caller = new_caller()
    task = asyncio.ensure_future(caller.call(1, "ping"))
    await asyncio.sleep(0.1)
    assert not task.done() and registry.lookups  # ValueError from get_actor: retried
    registry.actors[("thing-1", "ns")] = FakeActor(lambda n, args: "up")
    assert await task == "up"


async def test_a_domain_error_raised_in_the_actor_comes_back_as_itself(
    registry: Registry,
) -> None:
    refused = OutOfStock("none left", details={"sku_ids": [7]})
    actor = FakeActor(lambda n, args: wrapped(refused))
    registry.actors[("thing-0", "ns")] = actor
    with pytest.raises(OutOfStock) as info:
        await new_caller().call(0, "reserve")
    assert type(info.value) is OutOfStock and info.value.details == {"sku_ids": [7]}
    assert len(actor.calls) == 1  # not retried
    assert registry.lookups == [("thing-0", "ns")]  # the handle is kept


async def test_a_retriable_domain_error_is_retried(registry: Registry) -> None:
    actor = FakeActor(lambda n, args: wrapped(Unavailable("commit failed")) if n < 3 else "done")
    registry.actors[("thing-0", "ns")] = actor
    assert await new_caller().call(0, "submit") == "done"
    assert len(actor.calls) == 3


async def test_after_the_budget_the_caller_gets_unavailable(registry: Registry) -> None:
    actor = FakeActor(lambda n, args: RayActorError())
    registry.actors[("thing-2", "ns")] = actor
    started = time.monotonic()
    with pytest.raises(Unavailable) as info:
        await new_caller(retry_s=0.3).call(2, "ping")
    assert time.monotonic() - started < 1.0
    assert "thing-2" in str(info.value) and "RayActorError" in str(info.value)
    assert isinstance(info.value.__cause__, RayActorError)
    assert len(actor.calls) >= 2
    # a call's own budget overrides the default
    actor.calls.clear()
    with pytest.raises(Unavailable):
        await new_caller(retry_s=30).call(2, "ping", budget_s=0.01)
    assert len(actor.calls) == 1


async def test_each_attempt_times_out_and_a_timeout_is_retried(registry: Registry) -> None:
    def behave(n: int, args: tuple[Any, ...]) -> Any:
        return asyncio.sleep(10) if n < 2 else "late but fine"

    actor = FakeActor(behave)
    registry.actors[("thing-0", "ns")] = actor
    assert await new_caller(timeout_s=0.05).call(0, "slow") == "late but fine"
    assert len(actor.calls) == 2


async def test_retry_args_are_sent_on_the_attempts_after_the_first(registry: Registry) -> None:
    actor = FakeActor(lambda n, args: RayActorError() if n == 1 else args)
    registry.actors[("thing-0", "ns")] = actor
    result = await new_caller().call(0, "place", "first", retry_args=("again",), tag=1)
    assert result == ("again",)
    assert [(c[1], c[2]) for c in actor.calls] == [
        (("first",), {"tag": 1}),
        (("again",), {"tag": 1}),
    ]


async def test_a_bug_is_raised_at_once_not_retried(registry: Registry) -> None:
    actor = FakeActor(lambda n, args: wrapped(KeyError("oops")))
    registry.actors[("thing-0", "ns")] = actor
    with pytest.raises(KeyError):
        await new_caller().call(0, "broken")
    assert len(actor.calls) == 1
    assert not isinstance(KeyError(), DomainError)


def test_backoff_doubles_with_jitter_up_to_its_ceiling_within_its_budget() -> None:
    random.seed(7)
    backoff = Backoff(first_s=0.1, max_s=0.4)
    waits = [backoff.next_wait() for _ in range(5)]
    for wait, base in zip(waits, [0.1, 0.2, 0.4, 0.4, 0.4], strict=True):
        assert 0.5 * base <= wait < 1.5 * base
    assert not backoff.exhausted()  # no budget: never exhausted
    assert Backoff(first_s=0.5, budget_s=0.1).exhausted()
    assert not Backoff(first_s=0.05, budget_s=10).exhausted()
