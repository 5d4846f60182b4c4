"""Property-based fuzzing of every operation in the OpenAPI document, with valid and invalid
inputs (including a bank that exists): no input yields a 5xx."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from prescreen.app import create_app
from prescreen.banks.service import NewEntry, add_entries, create_bank

EXAMPLES_PER_OPERATION = 12  # x2 modes x ~150 operations; the whole suite has 10 minutes


def test_no_input_causes_a_server_error(settings, db, keys) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(settings, db))
    headers = {"Authorization": f"Bearer {keys['admin']}"}
    with db.session() as session:
        bank = create_bank(session, "0", labels=["terrorism"])
        add_entries(session, bank, [NewEntry.validated({"md5": "0" * 32})], added_by="test")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(operation, mode, headers)


def _fuzz(operation, mode: GenerationMode, headers) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case) -> None:
        case.call_and_validate(headers=headers, checks=[not_a_server_error])

    try:
        run()
    except Unsatisfiable:
        assert mode is GenerationMode.NEGATIVE  # nothing to make invalid, e.g. GET /healthz
