"""Promotions and coupons on the replicas: campaign and coupon rows, claims, the wallet,
pricing of carts and orders, and the coupon moves of an order's transitions."""
