"""raymall: an e-commerce backend for flash-sale traffic, built as an actor system on Ray."""

__version__ = "0.1.0"
