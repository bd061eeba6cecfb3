"""The public data types of the Python host."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PreJobMetrics:
    timestamp: float
    workflow: str
    workflow_run_id: str
    repository: str | None
    event: str
    #: ``GITHUB_RUN_ATTEMPT``, when the pre-job hook wrote one.
    workflow_run_attempt: int | None = None


@dataclass(frozen=True)
class PostJobMetrics:
    timestamp: float
    status: str  #: ``normal``, ``abnormal``, ``repo-policy-check-failure``, ...
    status_code: int | None  #: ``status_info.code``, when known


@dataclass(frozen=True)
class RunnerMetrics:
    """What one runner's storage held (spec section 4)."""

    installation_start_timestamp: float | None
    installed_timestamp: float
    pre_job: PreJobMetrics | None
    post_job: PostJobMetrics | None
    runner_name: str


@dataclass(frozen=True)
class GithubJobMetrics:
    """The job as GitHub saw it (spec 5); ``conclusion`` spelt ``timed_out`` or ``timed-out``."""

    queue_duration: float
    conclusion: str | None = None


@dataclass(frozen=True)
class FsError:
    """A filesystem error a report names (the WIT's ``fs-error``), spelt as the WIT spells it."""

    operation: str  #: what was done: ``open-directory``, ``remove``, ``move``, ...
    path: str  #: relative to the storage root; empty for the root itself
    code: str  #: ``not-found``, ``permission-denied``, ``symlink``, ...
    cause: str  #: the system's words


@dataclass(frozen=True)
class StorageReport:
    """What happened to one root entry, and the lines written for it."""

    name: str
    outcome: str  #: ``extracted``, ``no-data``, ``quarantined``, ``skipped`` or ``failed``
    detail: str  #: why, and what was done (deleted, moved where, kept)
    events: int = 0
    reason: str | None = None  #: the quarantine or skip reason (kebab-case)
    file: str | None = None  #: the file to blame for a quarantine
    #: the filesystem errors ``detail`` names (a failed storage's), so a caller need not parse it
    errors: tuple[FsError, ...] = ()


@dataclass
class Summary:
    """Counts for a whole run, and every report in order."""

    extracted: int = 0
    no_data: int = 0
    quarantined: int = 0
    skipped: int = 0
    failed: int = 0
    lines_written: int = 0
    reports: list[StorageReport] = field(default_factory=list)

    def add(self, report: StorageReport) -> None:
        attr = report.outcome.replace("-", "_")
        setattr(self, attr, getattr(self, attr) + 1)
        self.lines_written += report.events
        self.reports.append(report)

    @property
    def total(self) -> int:
        return self.extracted + self.no_data + self.quarantined + self.skipped + self.failed

    def counts(self) -> dict[str, int]:
        return {
            k: getattr(self, k) for k in ("extracted", "no_data", "quarantined", "skipped", "failed", "lines_written")
        }


class CollectError(RuntimeError):
    """The run could not start or had to stop; ``summary`` holds the reports so far."""

    def __init__(self, message: str, summary: Summary):
        super().__init__(message)
        self.summary = summary


class GuestFailure(RuntimeError):
    """A guest call that did not return: a trap (panic, deadline, fuel, memory)."""


@dataclass(frozen=True)
class Limits:
    """What one sandbox may use: memory per instance, time and fuel per storage."""

    memory_bytes: int = 64 * 1024 * 1024
    timeout: float = 10.0  #: seconds, re-armed at each host call (epoch interruption)
    fuel: int | None = 10_000_000_000  #: re-armed at each host call; None: unlimited
    tick: float = 0.01  #: epoch tick, seconds


def job_answer(answer: Any) -> tuple[float, str | None] | None:
    """``job_metrics``'s answer (a GithubJobMetrics, a ``(queue, conclusion)`` tuple, a dict, or
    None) as ``(queue_duration, conclusion in lower case)``; both hosts take it this way."""
    if answer is None:
        return None
    job = GithubJobMetrics(*answer) if isinstance(answer, tuple) else answer
    job = GithubJobMetrics(job["queue_duration"], job.get("conclusion")) if isinstance(job, dict) else job
    if not math.isfinite(queue := float(job.queue_duration)):
        raise ValueError(f"queue duration {queue} is not finite")
    return queue, job.conclusion and str(getattr(job.conclusion, "value", job.conclusion)).lower()
