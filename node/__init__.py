"""The Amanah node: identity, store, ingest and read-back (and, later, replication and mirror)."""
