"""Prometheus metrics (I/O layer): one registry per gateway, served on ``/metrics``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """The gateway's counters; one instance per running gateway, so tests never share them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.inbound = Counter(
            "gateway_inbound_total",
            "Inbound messages by outcome (committed, duplicate, rejected, temporary_failure).",
            ["outcome"],
            registry=self.registry,
        )
        self.ledger_events = Counter(
            "gateway_ledger_events_total",
            "Consent changes written to the ledger, by action.",
            ["action"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "gateway_commit_batch_size",
            "Inbound messages per group-commit transaction.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "gateway_commit_seconds",
            "Time to apply and commit one batch.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        self.commit_retries = Counter(
            "gateway_commit_retries_total",
            "Batches run again in a new transaction, by reason (head_moved: another writer"
            " appended to the ledger first; deadlock; serialization; stale_connection: the"
            " connection held since an earlier batch had died).",
            ["reason"],
            registry=self.registry,
        )
        self.gate_checks = Counter(
            "gateway_gate_checks_total",
            "Send-gate answers by result and source (cache or postgres).",
            ["allowed", "source"],
            registry=self.registry,
        )
        self.cache_usable = Gauge(
            "gateway_cache_usable",
            "1 when the gate trusts the cache, 0 while it reads Postgres.",
            registry=self.registry,
        )
        self.cache_failures = Counter(
            "gateway_cache_failures_total",
            "Cache operations that failed (the gate then reads Postgres).",
            ["operation"],
            registry=self.registry,
        )
        self.outbox = Counter(
            "gateway_outbox_total",
            "Outbox rows by result (sent, retry, failed).",
            ["channel", "result"],
            registry=self.registry,
        )
