"""Shipping: methods and fees, shipments with carrier tracking, delivery and completion."""
