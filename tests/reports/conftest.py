"""Fixtures of the report tests (helpers live in report_helpers.py)."""

from __future__ import annotations

import pytest
from report_helpers import unique_experiment


@pytest.fixture
def experiment():
    return unique_experiment("report")
