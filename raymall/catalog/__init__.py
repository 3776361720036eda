"""The catalog: a category tree, brands, products (SPU) and SKUs.

Modules, each with one job:

- ``schemas``: validated admin input (strict pydantic, bounded, no extra fields);
- ``text``: the normalised word form behind ``products.search_text`` and query terms;
- ``repository``: read queries (detail documents, category paths, filters, summaries);
- ``listing``: the public listing (filters, sorts, page and cursor pagination);
- ``search``: keyword search, MySQL/MariaDB FULLTEXT or the SQLite fallback;
- ``service`` (products, SKUs) and ``taxonomy`` (categories, brands): admin writes, each
  one transaction with its outbox events; ``effects``: what every write does besides its
  rows (outbox, Bloom filter before commit, cache invalidation after, search text);
- ``bloom`` and ``cache``: the Redis detail cache (cache-aside, singleflight, null
  caching, TTL jitter) guarded by a shared Bloom filter of product ids;
- ``media``: image uploads checked by size, declared type and magic bytes;
- ``demo_data``/``demo_vocab``: the deterministic demo catalog;
- ``stock_admin``: stock as admins see and adjust it, through the inventory owner;
- ``skus``: SKUs for the cart, read from their products' cached documents;
- ``runtime``: all of the above wired for one Serve replica (``Services.catalog``).
"""
