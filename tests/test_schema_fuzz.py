"""Schemathesis over ``/openapi.json``: bounded examples of every operation, checked for
no 5xx and no schema-valid request rejected (the document states what the server
accepts, so a schema-driven client never sends what it refuses)."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.settings import Settings

schemathesis = pytest.importorskip("schemathesis")

EXAMPLES = 20  # per operation: bounded, so the suite stays quick


def _check_operation(operation: Any) -> None:
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hypothesis_settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    @given(case=operation.as_strategy())
    @hypothesis_settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                         suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        case.call_and_validate(checks=[not_a_server_error, positive_data_acceptance])

    run()


def test_no_server_error_and_no_valid_request_refused(settings: Settings):
    from api.app import create_app

    schema = schemathesis.openapi.from_wsgi("/openapi.json", create_app(settings))
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()
        try:
            _check_operation(operation)
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure
            failures.append(f"{operation.label}: {str(exc)[:600]}")
    assert not failures, "\n\n".join(failures)
