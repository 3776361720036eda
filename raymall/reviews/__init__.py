"""Reviews from verified buyers: one per delivered order line, and the product's rating."""
