"""Alembic migrations; ``raymall.migrate`` runs them programmatically."""
