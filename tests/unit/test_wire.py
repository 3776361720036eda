"""The inventory shard's wire format (actors.wire): typed operations and results travel as
msgpack and come back as their types; what cannot be read comes back Malformed and is
answered invalid."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from actors.wire import pack_batch, pack_results, unpack_batch, unpack_results
from raymall.domain.flash_desk import FlashDesk
from raymall.domain.ledger import Ledger
from raymall.domain.shard_ops import (
    Adjust,
    BuyResult,
    Confirm,
    Expire,
    FlashBuy,
    FlashEnd,
    FlashReturn,
    FlashWarm,
    GiveBack,
    Malformed,
    Release,
    Reserve,
    Transfer,
    kind_of,
    kinds_of,
)
from raymall.domain.stock import R_INVALID, R_OK, R_OUT_OF_STOCK, Stock


def test_a_packed_batch_comes_back_as_sent_with_its_types() -> None:
    ops = [
        Reserve("k@0", {12: 1, 7: 3}, None),
        Release("k@0"),
        Confirm("k@0"),
        Adjust("a", 5, -2, "restock \u00e9", 9),
        Expire("k@0", 2**62),
        Transfer("h@1", "o@1", 5, 2, None),
        GiveBack("o@1", "h@1"),
        FlashBuy("h@1", 3, 4, "key", 1),
        FlashBuy("h@1", 3, 4, None, 2),
        FlashReturn("order:9@1", "h@1", 3, 9),
        FlashEnd("h@1", 3),
        FlashWarm("h@1", 3),
    ]
    back = unpack_batch(pack_batch(ops))
    assert back == ops
    assert [type(op) for op in back] == [type(op) for op in ops]
    assert back[0].items == {12: 1, 7: 3}  # int keys survive
    assert unpack_batch(pack_batch([])) == []


def test_results_come_back_as_codes_and_buy_results() -> None:
    buy = BuyResult("ok", 2**63 - 1, None, True, 5, 1000, 7)
    results: list[Any] = [R_OK, buy, R_OUT_OF_STOCK]
    back = unpack_results(pack_results(results))
    assert back == results
    assert type(back[1]) is BuyResult and back[1].order_id == 2**63 - 1
    assert unpack_results(pack_results([])) == []


def test_only_typed_operations_are_packed() -> None:
    with pytest.raises(KeyError):
        pack_batch([("reserve", "k", {1: 1}, None)])  # type: ignore[list-item]


@pytest.mark.parametrize(
    "raw",
    [
        ("reserve", "k"),  # too few fields
        ("reserve", "k", {1: 1}),  # every field travels, defaults included
        ("release", "k", "extra"),  # too many
        ("nonsense", "k"),
        (),
        "reserve",
        7,
        None,
        {"kind": "reserve"},
    ],
)
def test_an_operation_that_cannot_be_read_is_malformed_and_answered_invalid(raw: Any) -> None:
    good = Release("k@0")
    blob = msgpack.packb([("release", "k@0"), raw], use_bin_type=True)
    ops = unpack_batch(blob)
    assert ops[0] == good and type(ops[0]) is Release
    assert type(ops[1]) is Malformed
    ledger = Ledger()
    ledger.load_stock(1, Stock(5, 5))
    desk = FlashDesk(ledger, 0, next_id=lambda: 1, order_shard_of=lambda u: 0, order_timeout_ms=1)
    assert ledger.apply(ops[1]) == R_INVALID
    assert desk.apply(ops[1]) == R_INVALID
    assert ledger.records == {} and ledger.stock[1].available == 5


def test_a_blob_that_is_not_a_sequence_is_refused() -> None:
    with pytest.raises(TypeError):
        unpack_batch(msgpack.packb({"not": "a batch"}))
    with pytest.raises(TypeError):
        unpack_results(msgpack.packb({"not": "a batch"}))


def test_metrics_label_each_operation_by_its_kind() -> None:
    ops: list[Any] = [Reserve("k", {1: 1}), FlashBuy("h", 1, 2, None, 1), Malformed(7), ("x",)]
    assert list(kinds_of(ops)) == ["reserve", "flash_buy", "malformed", "malformed"]
    assert list(kinds_of(ops)) == [kind_of(op) for op in ops]
