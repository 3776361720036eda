"""Orders: server-side pricing, the order repository (creation in one transaction,
compare-and-set transitions), payments and the event-stream consumers."""
