"""Property-based fuzzing of every operation in the OpenAPI document: no input yields a 5xx."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from prescreen.app import create_app

EXAMPLES_PER_OPERATION = 60


def test_no_input_causes_a_server_error(settings, db, keys) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(settings, db))
    headers = {"Authorization": f"Bearer {keys['admin']}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        _fuzz(operation, headers)


def _fuzz(operation, headers) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case) -> None:
        case.call_and_validate(headers=headers, checks=[not_a_server_error])

    run()
