"""The bookkeeping every batch engine shares: which cases are left, a manifest line per finished case, and how
often a case's worker died under it before the case counts as failed."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from MedSegEfficientLib.batch.cases import Case
from MedSegEfficientLib.batch.manifest import Entry, Manifest
from MedSegEfficientLib.files import remove_leftover_temporaries

MAX_ATTEMPTS = 3  # a case whose worker dies this often (a case that kills workers) is failed, not retried forever


@dataclass
class BatchSummary:
    done: list[Entry] = field(default_factory=list)
    failed: list[Entry] = field(default_factory=list)
    skipped: int = 0
    requeued: int = 0  # cases sent to another worker after theirs died


class Ledger:
    def __init__(self, cases: list[Case], manifest: Manifest,
                 on_entry: Callable[[Entry], None] = lambda entry: None) -> None:
        self.manifest = manifest
        self.on_entry = on_entry
        self.summary = BatchSummary()
        done = manifest.done()
        self.pending = [case for case in cases if not manifest.is_done(case.input, case.output, done)]
        self.summary.skipped = len(cases) - len(self.pending)
        self._deaths: Counter = Counter()

    def record(self, case: Case, outcome: dict[str, Any]) -> None:
        """A finished case: one manifest line, written now, so that an interruption leaves the manifest true."""
        entry = Entry(str(case.input), str(case.output), **outcome)
        self.manifest.append(entry)
        (self.summary.done if entry.status == "done" else self.summary.failed).append(entry)
        self.on_entry(entry)

    def send_again(self, case: Case) -> None:
        """The case goes to a new worker; what the dead one was writing goes first (no other worker has it)."""
        remove_leftover_temporaries(case.output)
        self.summary.requeued += 1

    def worker_died(self, case: Case, reason: str = "killed or out of memory") -> bool:
        """The case's worker died while running it alone: True where it should be tried again; otherwise it is
        recorded as failed."""
        self._deaths[case] += 1
        if self._deaths[case] < MAX_ATTEMPTS:
            self.send_again(case)
            return True
        remove_leftover_temporaries(case.output)
        self.record(case, {"status": "failed", "seconds": 0.0,
                           "error": f"its worker died {MAX_ATTEMPTS} times while running it alone ({reason})"})
        return False


__all__ = ["BatchSummary", "Ledger", "MAX_ATTEMPTS"]
