"""The OpenAPI description against the running gateway: schemathesis finds no 5xx and no
response that breaks the documented schema."""

from __future__ import annotations

import asyncio
from typing import Any

import hypothesis
import requests
import schemathesis
from api_helpers import call, new_key
from schemathesis.checks import not_a_server_error, response_schema_conformance

from gateway.app import Gateway

EXAMPLES = 12  # per operation: bounded so the suite stays quick on two cores


def _fuzz(base_url: str, key: str, document: dict[str, object]) -> list[str]:
    """Every operation with generated inputs; the failures as text (runs in a thread)."""
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    with requests.Session() as session:  # closed here: no socket left for the GC to warn about
        for result in schema.get_all_operations():
            _fuzz_one(result.ok(), base_url, key, session, failures)  # type: ignore[union-attr]
    return failures


def _fuzz_one(
    operation: Any, base_url: str, key: str, session: requests.Session, failures: list[str]
) -> None:
    """One operation with up to ``EXAMPLES`` generated requests."""

    @hypothesis.given(case=operation.as_strategy())
    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    def run(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(
            base_url=base_url,
            session=session,
            headers={"Authorization": f"Bearer {key}"},
            checks=[not_a_server_error, response_schema_conformance],
            timeout=30,
        )

    try:
        run()
    except Exception as exc:  # noqa: BLE001 - every operation's failure is collected, not the first
        failures.append(f"{operation.label}: {exc}")


async def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    gateway: Gateway,
) -> None:
    """Generated requests to every documented operation, with an admin key."""
    status, document = await call(gateway, "GET", "/openapi.json")
    assert 200 == status
    key = await new_key(gateway, "admin")
    base_url = f"http://127.0.0.1:{gateway.http_port}"
    failures = await asyncio.to_thread(_fuzz, base_url, key, document)
    assert [] == failures
