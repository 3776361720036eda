"""Flash sales: the shard-side desk (plain Python), its SQL, and the replica-side service."""
