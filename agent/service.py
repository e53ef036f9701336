"""The agent's RPC methods: thin adapters from params to store, jobs and facts."""

from __future__ import annotations

import functools
import shutil
import time
from typing import Any, Callable, Dict, Optional, Tuple, TypeVar

from . import AGENT_VERSION, PROTOCOL_VERSION, commands, domains, facts, profiles, protocol, regexbox, sandbox
from .buildinfo import build_hash
from .errors import AgentError
from .jobs import Job, JobManager
from .params import bounded, param
from .policy import Policy
from .store import Store, StoreError

T = TypeVar("T")
PAGE_BYTES = 16000  # ~4,000 tokens
MAX_PAGE_BYTES = 100000  # ~25,000 tokens: the hard cap
MAX_WAIT = 120.0


class Agent:
    """State of one agent process: its store, jobs and policy."""

    def __init__(self, base_dir: str, store: Store, jobs: JobManager, policy: Policy) -> None:
        self.base_dir = base_dir
        self.store = store
        self.jobs = jobs
        self.policy = policy
        self.facts_cache = base_dir + "/facts-cache.json"
        self.lifeline: Any = None  # agent.lease.Lifeline, set by main

    def methods(self) -> Dict[str, Callable[[Dict[str, Any]], Any]]:
        """Every method, the domains' included (tests; the server loads domains lazily)."""
        methods = self.core_methods()
        for domain in domains.declared():
            methods.update(domains.load(domain, self))
        return methods

    def domain_methods(self, method: str) -> Dict[str, Callable[[Dict[str, Any]], Any]]:
        """The methods of the domain serving `method`, imported at its first call: an agent that
        only says hello (a fleet_check of hundreds of hosts) never pays for importing domains."""
        try:
            domain = domains.owner(method)
        except KeyError:
            return {}
        return domains.load(domain, self)

    def core_methods(self) -> Dict[str, Callable[[Dict[str, Any]], Any]]:
        return {
            protocol.HELLO: self.hello,
            protocol.PING: lambda p: {"time": time.time()},
            protocol.FACTS: self.facts,
            protocol.PAGE: self.page,
            protocol.SEARCH: self.search,
            protocol.RUN: self.run,
            protocol.JOB_STATUS: self.job_status,
            protocol.JOB_CANCEL: self.job_cancel,
            protocol.JOBS_LIST: lambda p: {"jobs": self.jobs.list()},
        }

    def hello(self, params: Dict[str, Any]) -> Dict[str, Any]:
        return {
            "protocol": PROTOCOL_VERSION,
            "build": build_hash(),
            "version": AGENT_VERSION,
            "policy": self.policy.summary(),
            "facts": facts.gather(self.store.root, self.facts_cache, drgn=self.drgn(), probe=False),
            "lease": self.lifeline.status() if self.lifeline is not None else None,
            "running_jobs": self.jobs.running(),
        }

    def drgn(self) -> Tuple[Optional[str], str]:
        """Where drgn is looked for (policy drgn_python, else drgn_venv and the pythons found)."""
        settings = self.policy.settings
        return settings["drgn_python"], str(settings["drgn_venv"])

    def facts(self, params: Dict[str, Any]) -> Dict[str, Any]:
        refresh = param(params, "refresh", bool, False)
        return facts.gather(self.store.root, self.facts_cache, refresh, self.drgn())

    @staticmethod
    def store_call(call: Callable[[], T]) -> T:
        try:
            return call()
        except StoreError as exc:
            raise AgentError(exc.code, exc.message, hint=_STORE_HINTS.get(exc.code)) from None

    def page(self, params: Dict[str, Any]) -> Dict[str, Any]:
        output_id = param(params, "output_id", str)
        cursor = param(params, "cursor", str, None)
        max_bytes = bounded(params, "max_bytes", PAGE_BYTES, 256, MAX_PAGE_BYTES)
        return self.store_call(lambda: self.store.page(output_id, cursor, max_bytes=max_bytes))

    def search(self, params: Dict[str, Any]) -> Dict[str, Any]:
        """A plain string is searched here (bytes.find cannot blow up); a regex in a sandboxed
        child with a CPU limit, so one catastrophic pattern stops only itself."""
        pattern = param(params, "pattern", str)
        cpu = float(self.policy.settings["regex_cpu_seconds"])
        isolated = not regexbox.is_literal(pattern)
        call = functools.partial(
            self.store.search,
            param(params, "output_id", str),
            pattern,
            context=bounded(params, "context", 0, 0, 20),
            max_matches=bounded(params, "max_matches", 50, 1, 1000),
            ignore_case=param(params, "ignore_case", bool, False),
            cursor=param(params, "cursor", str, None),
            time_budget=cpu * 0.6 if isolated else 10.0,
            isolate=functools.partial(regexbox.run_scan, self.policy, pattern) if isolated else None,
        )
        return self.store_call(call)

    def run(self, params: Dict[str, Any]) -> Dict[str, Any]:
        """Start a catalogue command as a job; answer with its result if it ends within `wait`."""
        name = param(params, "command", str)
        spec = commands.resolve(name, self.policy.allow_commands, self.policy.deny_commands)
        duration = param(params, "duration", (int, float), spec.default_duration)
        if duration is not None:
            duration = self.policy.check_duration(float(duration))
        self.settle_params(params)
        argv = list(spec.argv)
        argv[0] = shutil.which(argv[0], path=facts.SBIN_PATH) or argv[0]
        job = self.jobs.start(
            "command",
            argv,
            duration=duration,
            meta={"command": name},
            preexec=sandbox.child_setup(self.policy.settings, profiles.command(self.policy), argv[0]),
        )
        return self.settle(job, params)

    def job_status(self, params: Dict[str, Any]) -> Dict[str, Any]:
        return self.settle(self.jobs.get(param(params, "job_id", str)), params)

    def job_cancel(self, params: Dict[str, Any]) -> Dict[str, Any]:
        job_id = param(params, "job_id", str)
        self.jobs.cancel(job_id)
        return self.settle(self.jobs.get(job_id), dict(params, wait=0))

    @staticmethod
    def settle_params(params: Dict[str, Any]) -> Tuple[float, int]:
        """(wait, page_bytes), checked before a job starts too: a bad one must not leave it running."""
        return bounded(params, "wait", 0.0, 0.0, MAX_WAIT), bounded(
            params, "page_bytes", PAGE_BYTES, 256, MAX_PAGE_BYTES
        )

    def settle(self, job: Job, params: Dict[str, Any]) -> Dict[str, Any]:
        """Wait up to `wait` seconds; a finished job comes with its first page."""
        wait, page_bytes = self.settle_params(params)
        self.jobs.wait(job, wait)
        status = job.status()
        if status["state"] != "running":
            status["page"] = self.store.page(job.output_id, None, max_bytes=page_bytes)
        return status


_STORE_HINTS = {
    protocol.UNKNOWN_OUTPUT: "the output may have been evicted; run the command again",
    protocol.BAD_CURSOR: "pass the next_cursor exactly as a previous page returned it",
    protocol.STALE_CURSOR: "call page without a cursor to start over",
    protocol.BAD_REGEX: "use Python regular expression syntax",
}
