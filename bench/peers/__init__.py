"""The seeds' approaches to a hot SKU, measured beside the inventory engine.

- ``mysql_conditional``: one transaction per attempt, a conditional
  ``UPDATE ... WHERE available >= 1`` plus an operation row (row lock on the hot row);
- ``redis_lua``: a Lua script that pre-decrements a counter and pushes the operation onto a
  queue for later persistence (not durable at ack time).
"""
