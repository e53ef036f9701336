"""The dump fleet of tests/dumps, for reports that include triage groups."""

from tests.dumps.conftest import dump_fixture, dump_fleet  # noqa: F401 - fixtures re-exported
