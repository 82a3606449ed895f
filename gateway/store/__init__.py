"""Store (I/O layer): PostgreSQL as the source of truth, Redis as the shared consent cache."""
