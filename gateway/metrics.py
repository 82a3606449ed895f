"""Prometheus metrics (I/O layer): one registry per gateway, served on ``/metrics``."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# No ``*_created`` series: one more series per counter and histogram child, holding the
# process start time, which no dashboard or alert here reads (Prometheus itself ignores
# them unless created-timestamp ingestion is turned on). Process-wide, as the switch is.
disable_created_metrics()  # type: ignore[no-untyped-call]


class _Read(Collector):
    """A labelled gauge read at scrape time from in-memory state (no I/O in a scrape)."""

    def __init__(
        self,
        name: str,
        doc: str,
        labels: list[str],
        read: Callable[[], Mapping[tuple[str, ...], float]],
    ) -> None:
        self._name, self._doc, self._labels, self._read = name, doc, labels, read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self._name, self._doc, labels=self._labels)
        for values, value in sorted(self._read().items()):
            family.add_metric(list(values), value)
        yield family


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
        self.task_restarts = Counter(
            "gateway_task_restarts_total",
            "Long-running tasks restarted after they failed or ended unexpectedly.",
            ["task"],
            registry=self.registry,
        )
        # The outbox monitor's latest sample: (channel, kind) -> (rows waiting, oldest age).
        self.outbox_waiting: dict[tuple[str, str], tuple[int, float]] = {}
        self.registry.register(
            _Read(
                "gateway_outbox_backlog",
                "Outbox rows queued or being sent, by channel and kind (sampled).",
                ["channel", "kind"],
                lambda: {k: float(v[0]) for k, v in self.outbox_waiting.items()},
            )
        )
        self.registry.register(
            _Read(
                "gateway_outbox_oldest_seconds",
                "Age of the oldest outbox row queued or being sent, by channel and kind.",
                ["channel", "kind"],
                lambda: {k: v[1] for k, v in self.outbox_waiting.items()},
            )
        )

    def watch_tasks(self, states: Callable[[], Mapping[str, bool]]) -> None:
        """Expose ``gateway_task_up{task}`` (1 running, 0 down) from the supervisor."""
        self.registry.register(
            _Read(
                "gateway_task_up",
                "1 while a supervised long-running task runs, 0 while it is down.",
                ["task"],
                lambda: {(name,): float(up) for name, up in states().items()},
            )
        )

    def watch_binds(self, binds: Callable[[], Mapping[str, int]]) -> None:
        """Expose ``gateway_smpp_binds_up{smsc}`` from the SMPP edge's sessions."""
        self.registry.register(
            _Read(
                "gateway_smpp_binds_up",
                "SMPP binds currently bound, per SMSC.",
                ["smsc"],
                lambda: {(smsc,): float(n) for smsc, n in binds().items()},
            )
        )
