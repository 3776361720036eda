"""Money back: refunds through the payment provider (``raymall.refunds.ledger`` for the
database side, ``raymall.refunds.arithmetic`` for the sums, ``raymall.refunds.money`` for
the order shard's operations)."""
