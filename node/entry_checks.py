"""Checking received log entries: each parsed and its Ed25519 signature checked against the
collection owner's key, on worker threads while the next entries arrive.

libsodium releases the GIL, so the checks of one batch run on both cores; parsing there too
leaves the event loop free to receive. Only each entry's own form and signature: the chain and
the rules are checked when the entries are applied to the collection's state (`log.apply`).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

from amanah.protocol import log
from amanah.protocol.errors import FormatError
from amanah.protocol.log import Entry

# Ed25519 checks of received log entries run on this many threads: libsodium releases the GIL,
# and a log of 10,000 entries took ~0.75 s to check on one (two cores here).
VERIFY_THREADS = 2
VERIFY_PARALLEL_FROM = 64  # entries: fewer are checked on the calling thread
_verifiers: ThreadPoolExecutor | None = None
_verifiers_lock = threading.Lock()


def _verifier_pool() -> ThreadPoolExecutor:
    global _verifiers
    with _verifiers_lock:
        if _verifiers is None:
            _verifiers = ThreadPoolExecutor(VERIFY_THREADS, thread_name_prefix="amanah-verify")
        return _verifiers


def _check_all(entries: list[Entry], owner: bytes) -> None:
    for entry in entries:
        log.verify_entry(entry, owner)


def _parse_and_check(
    raws: list[bytes], first: int, owner: bytes
) -> tuple[list[Entry], FormatError | None]:
    """Parse received entries (`first`: the position of the first) and check each one's
    signature against `owner`. A malformed entry raises; the first bad signature is returned,
    as it counts only if `owner` is the collection's (EntryChecks.wait)."""
    entries: list[Entry] = []
    bad: FormatError | None = None
    for n, raw in enumerate(raws):
        try:
            entry = log.parse_entry(raw)
        except FormatError as exc:
            raise FormatError(f"invalid log entry at {first + n}: {exc}") from None
        if bad is None:
            try:
                log.verify_entry(entry, owner)
            except FormatError as exc:
                bad = exc
        entries.append(entry)
    return entries, bad


class EntryChecks:
    """Received log entries parsed and their signatures checked against one owner key, batch
    by batch as they arrive, on VERIFY_THREADS threads (libsodium releases the GIL; parsing
    there too leaves the event loop free to receive the next batches), then collected all at
    once before storing.

    Only the signatures and each entry's own form: the chain and the rules are checked when the
    entries are applied.
    """

    def __init__(self, owner: bytes) -> None:
        self.owner = owner
        self._running: list[Future[tuple[list[Entry], FormatError | None]]] = []
        self._result: tuple[list[Entry], FormatError | None] | None = None

    def start(self, raws: list[bytes], first: int) -> None:
        """Parse and check `raws`, the entries at positions `first`, `first` + 1, ..."""
        pool = _verifier_pool()
        step = max(VERIFY_PARALLEL_FROM, -(-len(raws) // VERIFY_THREADS))
        for i in range(0, len(raws), step):
            chunk = raws[i : i + step]
            self._running.append(pool.submit(_parse_and_check, chunk, first + i, self.owner))

    def wait(self) -> tuple[list[Entry], FormatError | None]:
        """Every entry started, in order, and the first bad signature among them (None if all
        verify). Raises FormatError if an entry is malformed. Blocks: call it off the event
        loop. Once done, answers again at once."""
        if self._result is None:
            entries: list[Entry] = []
            bad: FormatError | None = None
            failure: BaseException | None = None
            for done in self._running:  # every job is waited for, the first failure kept
                try:
                    got, wrong = done.result()
                except BaseException as exc:
                    failure = failure or exc
                    continue
                entries.extend(got)
                bad = bad or wrong
            if failure is not None:
                raise failure
            self._result = (entries, bad)
        return self._result


def check_signatures(entries: list[Entry], owner: bytes) -> None:
    """Check every entry's signature against the collection owner's key; a large batch on
    VERIFY_THREADS threads. Raises SignatureError (a FormatError) if any is bad."""
    if len(entries) < VERIFY_PARALLEL_FROM:
        _check_all(entries, owner)
        return
    pool = _verifier_pool()
    step = -(-len(entries) // VERIFY_THREADS)
    jobs = [
        pool.submit(_check_all, entries[i : i + step], owner) for i in range(0, len(entries), step)
    ]
    failure: BaseException | None = None
    for job in jobs:
        try:
            job.result()
        except BaseException as exc:
            failure = failure or exc
    if failure is not None:
        raise failure
