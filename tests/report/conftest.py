"""The report tests' example study, written once per test into its own folder."""

import pytest

from harness.report import markdown
from tests.helpers import EXAMPLE, runs_from


@pytest.fixture
def example(tmp_path):
    """The example study's report.md text and the folder it was written to."""
    return markdown.write(runs_from(EXAMPLE), "example", tmp_path).read_text(), tmp_path
