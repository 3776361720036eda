"""The composition root: the one place under ``raymall/`` that knows the actors, the Serve
deployments and the recommender, and puts them together.

- ``app``: resolve settings, prepare the stores, launch the actors, run Serve;
- ``cli``: the ``raymall`` command (serve, migrate, seed, create-admin, reindex, status,
  reshard);
- ``reshard``: changing the shard counts (stop the old owners, re-own, start the new);
- ``migrate``: Alembic run programmatically against a URL;
- ``seed``: the demo catalog and accounts;
- ``status``: the resolved configuration and whether each store answers;
- ``shop``: shop rows written straight to the tables (the seed, benches and tests);
- ``scratch``: a private database and Redis db for a test session or a bench run.

Nothing in the package imports it but the ``python -m raymall`` entry point
(``tests/unit/test_import_rules.py``).
"""
