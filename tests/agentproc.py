"""A real agent (the zipapp) on pipes with its own policy file, spoken to as the controller's link would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from crashfleet.controller.bundle import write_bundle
from tests.dumps.agentproc import Agent, hermetic


class PolicyAgent(Agent):
    """`python3 agent.pyz serve --dir BASE/agent --policy BASE/policy.json`, with the policy given."""

    def __init__(self, base: Path, **policy: Any) -> None:
        self.dir = base / "agent"
        path = base / "policy.json"
        path.write_text(json.dumps(hermetic(policy, base)))
        path.chmod(0o644)
        zipapp = base / "agent.pyz"
        write_bundle(zipapp)
        super().__init__(zipapp, self.dir, path, base / "agent.log")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
