"""The security tests use the dump tests' cached vmcore and agent zipapp."""

from tests.dumps.agentproc import zipapp  # noqa: F401 (a fixture)
from tests.dumps.conftest import dump_fixture  # noqa: F401 (a fixture)
