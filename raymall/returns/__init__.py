"""Returns (RMAs): the state machine (``states``), the database side (``repo``), the order
shard's operations (``desk``) and the replica's service (``service``)."""
