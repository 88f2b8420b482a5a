"""A property-based run over the service's OpenAPI schema (schemathesis): no request gets a 5xx,
and every answer is one the schema documents."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="needs schemathesis (the dev extra)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)


@pytest.mark.slow
def test_no_request_gets_a_server_error(server) -> None:
    api = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) == 9
    headers = {"Authorization": f"Bearer {server.token}"}
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    statuses: list[int] = []
    for operation in operations:
        # 40 examples per operation: about 15 s in all on a loaded 2-core CPU.
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def run(case: schemathesis.Case) -> None:
            response = case.call_and_validate(headers=headers, checks=checks)
            statuses.append(response.status_code)

        run()
    assert len(statuses) > 150 and {200, 404, 422} <= set(statuses)  # it did explore
