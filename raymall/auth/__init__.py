"""Accounts and authentication: tokens, refresh-token families, the revocation index,
brute-force limits, RBAC grants, profiles and addresses.

Layers: ``tokens`` (pure, no I/O) -> ``families``/``users``/``addresses`` (database
functions) -> ``revocations``/``guard``/``permissions`` (Redis and caches) -> ``service``
and ``profile`` (async orchestration used by ``deployments/auth_routes.py``).
"""
