"""Consent keyword gateway (I/O layer): edges, store, send gate, outbox and the CLI."""
