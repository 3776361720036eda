"""Sharded Ray actors. Each actor is a thin shell over a plain-Python domain object."""
