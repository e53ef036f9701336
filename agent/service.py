"""The agent's RPC methods: thin adapters from params to store, jobs and facts."""

from __future__ import annotations

import functools
import time
from typing import Any, Callable, Dict, TypeVar

from . import AGENT_VERSION, PROTOCOL_VERSION, commands, facts
from .buildinfo import build_hash
from .errors import AgentError, bad_params
from .jobs import Job, JobManager
from .policy import Policy
from .store import Store, StoreError

T = TypeVar("T")
PAGE_BYTES = 16000       # ~4,000 tokens
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

    def methods(self) -> Dict[str, Callable[[Dict[str, Any]], Any]]:
        return {"hello": self.hello, "ping": lambda p: {"time": time.time()},
                "facts": self.facts, "page": self.page, "search": self.search,
                "outputs.list": lambda p: {"outputs": self.store.list()},
                "commands.list": lambda p: {"commands": commands.describe()},
                "run": self.run, "job.status": self.job_status, "job.cancel": self.job_cancel,
                "jobs.list": lambda p: {"jobs": self.jobs.list()}}

    def hello(self, params: Dict[str, Any]) -> Dict[str, Any]:
        return {"protocol": PROTOCOL_VERSION, "build": build_hash(), "version": AGENT_VERSION,
                "policy": self.policy.summary(), "facts": self.facts(params)}

    def facts(self, params: Dict[str, Any]) -> Dict[str, Any]:
        refresh = _param(params, "refresh", bool, False)
        return facts.gather(self.store.root, self.facts_cache, refresh)

    @staticmethod
    def _store_call(call: Callable[[], T]) -> T:
        try:
            return call()
        except StoreError as exc:
            raise AgentError(exc.code, exc.message, hint=_STORE_HINTS.get(exc.code)) from None

    def page(self, params: Dict[str, Any]) -> Dict[str, Any]:
        output_id = _param(params, "output_id", str)
        cursor = _param(params, "cursor", str, None)
        max_bytes = _bounded(params, "max_bytes", PAGE_BYTES, 256, MAX_PAGE_BYTES)
        return self._store_call(lambda: self.store.page(output_id, cursor, max_bytes=max_bytes))

    def search(self, params: Dict[str, Any]) -> Dict[str, Any]:
        call = functools.partial(
            self.store.search, _param(params, "output_id", str), _param(params, "pattern", str),
            context=_bounded(params, "context", 0, 0, 20),
            max_matches=_bounded(params, "max_matches", 50, 1, 1000),
            ignore_case=_param(params, "ignore_case", bool, False),
            cursor=_param(params, "cursor", str, None))
        return self._store_call(call)

    def run(self, params: Dict[str, Any]) -> Dict[str, Any]:
        """Start a catalogue command as a job; answer with its result if it ends within `wait`."""
        name = _param(params, "command", str)
        spec = commands.resolve(name, self.policy.allow_commands, self.policy.deny_commands)
        duration = _param(params, "duration", (int, float), spec.default_duration)
        if duration is not None:
            duration = self.policy.check_duration(float(duration))
        job = self.jobs.start("command", list(spec.argv), duration=duration, meta={"command": name})
        return self._settle(job, params)

    def job_status(self, params: Dict[str, Any]) -> Dict[str, Any]:
        return self._settle(self.jobs.get(_param(params, "job_id", str)), params)

    def job_cancel(self, params: Dict[str, Any]) -> Dict[str, Any]:
        job_id = _param(params, "job_id", str)
        self.jobs.cancel(job_id)
        return self._settle(self.jobs.get(job_id), dict(params, wait=0))

    def _settle(self, job: Job, params: Dict[str, Any]) -> Dict[str, Any]:
        """Wait up to `wait` seconds; a finished job comes with its first page."""
        wait = _bounded(params, "wait", 0.0, 0.0, MAX_WAIT)
        self.jobs.wait(job, wait)
        status = job.status()
        if status["state"] != "running":
            page_bytes = _bounded(params, "page_bytes", PAGE_BYTES, 256, MAX_PAGE_BYTES)
            status["page"] = self.store.page(job.output_id, None, max_bytes=page_bytes)
        return status


_STORE_HINTS = {
    "unknown_output": "the output may have been evicted; run the command again",
    "bad_cursor": "pass the next_cursor exactly as a previous page returned it",
    "stale_cursor": "call page without a cursor to start over",
    "bad_regex": "use Python regular expression syntax",
}
_MISSING = object()


def _param(params: Dict[str, Any], name: str, kind: Any, default: Any = _MISSING) -> Any:
    value = params.get(name, _MISSING)
    if value is _MISSING or value is None:
        if default is _MISSING:
            raise bad_params("missing parameter %r" % name)
        return default
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise bad_params("parameter %r has the wrong type (%s)" % (name, type(value).__name__))
    return value


def _bounded(params: Dict[str, Any], name: str, default: Any, low: float, high: float) -> Any:
    value = _param(params, name, (int, float), default)
    if not low <= value <= high:
        raise bad_params("parameter %r must be between %s and %s, got %s" % (name, low, high, value))
    return value
