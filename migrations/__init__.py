"""Alembic migrations; ``raymall.launcher.migrate`` runs them programmatically."""
