"""Batch processing with exactly-once effects.

Per batch of consumed records:

1. decode every record (malformed ones already know their reply or dead letter);
2. look their dedup keys up in the inbox with one query: a message seen before
   changes nothing, and only its stored reply is sent again;
3. at the same time, let the worker load every aggregate the messages touch,
   in as few queries as it can; then apply the fresh messages in order, in memory;
4. write state, inbox entries and outbox records in one transaction of the
   storage (``services.runtime.storage``: MongoDB in production, memory in tests).

Offsets are committed by the caller only after ``process`` returns, so a crash
at any point replays the batch, and step 2 turns the replay into a no-op (for
a message marked ``Work.idempotent``, the worker's own rules do).

What a record holds is checked to be storable when it is decoded
(``codec.unstorable``), so nothing a producer sends can fail a batch's write.
A message whose handling raises is answered with an internal-error reply where
it can be and dead-lettered; its neighbours go on. A batch whose write fails
for a reason that is not passing is split and written one message at a time,
so one poisonous message cannot hold the others back; a single message whose
write keeps failing is dead-lettered the same way, never fetched again in a loop.

Dedup keys live in two places no producer can confuse: the inbox holds the
``message_id`` of consumed records (the producer's own namespace), the
internal inbox holds the keys of work a worker gives itself (timers, sweeps).
An internal item whose handling failed is not recorded there, so it is tried
again; the sweep backs off from it so that it cannot starve the items behind it.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential_jitter,
)

from contracts.errors import ErrorCode
from services.runtime.clock import Clock
from services.runtime.dead_letters import dead_letter
from services.runtime.headers import REDRIVE_TOKEN
from services.runtime.observability import BATCH_SECONDS, PROCESSED, SKIPPED, handling
from services.runtime.records import Incoming, Outgoing
from services.runtime.routing import Routes
from services.runtime.storage import InboxEntry, Storage

def _storable(key: object) -> bool:
    """Whether ``key`` can be an inbox ``_id`` (a decoder may pass on what a producer wrote)."""
    if not isinstance(key, str) or len(key) > 1000:
        return False
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Work:
    """One decoded record, ready to process."""

    #: The consumed record; None for work a worker gives itself (a timer firing).
    record: Incoming | None
    #: The dedup key: the message_id, or a fingerprint of the bytes when there is none.
    key: str
    #: The contract message, or None for a malformed record.
    message: Any | None = None
    #: For a malformed record, what to send instead (a rejection reply or a dead letter).
    outputs: tuple[Outgoing, ...] = ()
    #: A record that is none of this worker's business (an event of a topic it
    #: reads for a few types only): no effect, no inbox entry.
    skip: bool = False
    #: A message whose repeat the worker's rules already ignore (an answer that
    #: resolves only the step waiting for it): handled without a dedup entry,
    #: unless its handling failed (so that its dead letter is not written twice).
    idempotent: bool = False

    @property
    def ident(self) -> tuple[bool, str]:
        """The key with its namespace: internal keys and producers' ids never meet."""
        return (self.record is None, self.key)


class UnitOfWork:
    """Base for the in-memory state of one batch (a dataclass of dicts and sets
    of immutable aggregates).

    The processor checkpoints it before each message and rolls back to the
    checkpoint when handling raises, so a failed message leaves no half-applied
    change behind for its neighbours' transaction. Shallow copies suffice
    because the aggregates themselves are never mutated.
    """

    def checkpoint(self) -> dict[str, Any]:
        return {f.name: copy.copy(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def rollback(self, checkpoint: dict[str, Any]) -> None:
        for name, value in checkpoint.items():
            setattr(self, name, value)


class WorkerLogic(Protocol):
    """What a worker plugs into the batch processor."""

    name: str
    #: Message type to handler (``services.runtime.routing``), complete for what the worker receives.
    routes: Routes

    def decode(self, record: Incoming) -> Work: ...

    def arrange(self, works: list[Work]) -> list[Work]:
        """The order to apply a batch in; records of one partition keep their order."""

    async def load(self, store: Any, messages: list[Any]) -> Any:
        """Read every aggregate the messages touch from the worker's ``store``; return a unit of work."""

    def handle(self, unit: Any, message: Any) -> list[Outgoing]:
        """Apply one message to the unit of work in memory. A unit that is not a
        ``UnitOfWork`` must be left unchanged when this raises."""

    def failed(self, work: Work, error: Exception) -> list[Outgoing]:
        """The answer to a message whose handling raised (besides its dead letter)."""

    # Optional: ``finish(unit) -> list[Outgoing]``, what the batch publishes after
    # its messages, written in the same transaction (events that sum up several
    # messages, such as one level per product instead of one per change).

    async def save(self, unit: Any, store: Any) -> None:
        """Write what the unit of work changed to ``store`` (bound to the batch's
        transaction), refusing to overwrite concurrent changes."""


@dataclass
class BatchTimes:
    """Where the batches' time went, summed over the batches this process committed."""

    batches: int = 0
    read: float = 0.0  # inbox entries, stored replies, the state the messages touch
    handle: float = 0.0  # the worker's rules
    write: float = 0.0  # the transaction: state, outbox, inbox

    def add(self, worker: str, read: float, handle: float, write: float) -> None:
        self.batches += 1
        self.read, self.handle, self.write = self.read + read, self.handle + handle, self.write + write
        for stage, seconds in (("read", read), ("handle", handle), ("write", write)):
            BATCH_SECONDS.labels(worker, stage).observe(seconds)

    def summary(self, processed: int) -> str:
        if not self.batches:
            return "no batches"
        per = 1000 / self.batches
        return (
            f"{self.batches} batches of {processed / self.batches:.1f} on average, per batch "
            f"{self.read * per:.1f} ms reading, {self.handle * per:.1f} ms handling, {self.write * per:.1f} ms writing"
        )


class BatchProcessor:
    def __init__(
        self,
        logic: WorkerLogic,
        storage: Storage[Any],
        clock: Clock,
        *,
        store: Callable[[Any], Any] = lambda state: state,
        retry_max_seconds: float = 30.0,
        on_commit: Callable[[dict[int, list[dict[str, Any]]]], None] | None = None,
        max_message_bytes: int | None = None,
    ) -> None:
        self.logic = logic
        self.storage = storage
        #: The worker's aggregate store, made from the storage's native state
        #: (outside the transaction to load, inside it to save).
        self.store = store
        self.clock = clock
        self.retry_max_seconds = retry_max_seconds
        #: Told of each batch's commit, with the outbox chunks it wrote (see OutboxRelay.wake).
        self.on_commit = on_commit or (lambda written: None)
        self._written: dict[int, list[dict[str, Any]]] = {}
        self.max_message_bytes = max_message_bytes
        self.processed = 0
        self.times = BatchTimes()

    async def process(self, records: list[Incoming]) -> None:
        redrives = await self._redrive_tokens(records)
        await self.process_works(self.logic.arrange([self._decode(record, redrives) for record in records]))

    async def _redrive_tokens(self, records: list[Incoming]) -> dict[str, str]:
        """The operator's redrive tokens among these records' headers, with the
        fingerprint of the record each was issued for (one query, only when a
        record carries one). A header alone proves nothing: anyone can set it."""
        tokens = {token for record in records if (token := record.header(REDRIVE_TOKEN))}
        if not tokens:
            return {}
        found = await self.storage.redrive_fingerprints(sorted(tokens)[:1000])
        return {token: fingerprint for token, fingerprint in found.items() if fingerprint is not None}

    def _decode(self, record: Incoming, redrives: dict[str, str]) -> Work:
        if self.max_message_bytes is not None and len(record.value or b"") > self.max_message_bytes:
            reason = f"record of {len(record.value or b'')} bytes exceeds the limit of {self.max_message_bytes}"
            letter = dead_letter(record, error_code=ErrorCode.INVALID_MESSAGE, reason=reason, now=self.clock.now())
            return Work(record, record.fingerprint, None, (letter,))
        try:
            work = self.logic.decode(record)
        except Exception as exc:
            # A decoder bug must not stall the partition: set the record aside.
            log.exception("decoding a record of %s failed; dead-lettering it", record.topic)
            reason = f"{type(exc).__name__}: {exc}"
            letter = dead_letter(record, error_code=ErrorCode.INTERNAL_ERROR, reason=reason, now=self.clock.now())
            return Work(record, record.fingerprint, None, (letter,))
        if not _storable(work.key):
            work = dataclasses.replace(work, key=record.fingerprint)
        token = record.header(REDRIVE_TOKEN)
        if token and redrives.get(token) == record.fingerprint:
            # Sent back from a dead-letter topic by an operator: what was set
            # aside changed nothing, so it is processed afresh rather than
            # answered from the inbox (once per redrive: a repeat of the same
            # redriven record is deduped under the same key).
            work = dataclasses.replace(work, key=f"{work.key}#redrive-{token}")
        return work

    async def process_internal(self, messages: list[Any], key: Callable[[Any], str]) -> set[str]:
        """Process messages a worker gives itself (timers, sweeps), deduped by
        ``key`` in the internal inbox; returns the keys whose handling failed."""
        if not messages:
            return set()
        return await self.process_works([Work(None, key(message), message) for message in messages])

    async def process_works(self, works: list[Work]) -> set[str]:
        """Process ``works``; returns the keys of internal work whose handling failed
        (not recorded as done, so a later attempt runs it again)."""
        try:
            failed = await self._retrying(lambda: self._commit(works))
        except Exception as exc:
            if self.storage.is_transient(exc):
                raise
            if len(works) > 1:
                log.warning("batch of %d failed (%r); writing its messages one at a time", len(works), exc)
            failed = set()
            for work in works:
                failed |= await self._commit_alone(work)
        self.processed += len(works)
        PROCESSED.labels(self.logic.name).inc(len(works))
        written, self._written = self._written, {}
        self.on_commit(written)
        return failed

    async def _commit_alone(self, work: Work) -> set[str]:
        try:
            return await self._retrying(lambda: self._commit([work]))
        except Exception as exc:
            if self.storage.is_transient(exc):
                raise
            log.exception("message %s could not be written; dead-lettering it", work.key)
            if work.record is None:
                return {work.key}  # not recorded as done: tried again later
            poison = exc
        try:
            return await self._retrying(lambda: self._commit([work], poisoned=poison))
        except Exception as exc:
            if self.storage.is_transient(exc):
                raise
        # Not even its dead letter can be written (a record no store accepts in
        # any form): the record stays in its topic at its offset, and the loud
        # log line and counter are all that can be done without stalling.
        log.critical("record %s:%s@%s can be neither processed nor dead-lettered; skipped",
                     work.record.topic, work.record.partition, work.record.offset)
        SKIPPED.labels(self.logic.name).inc()
        return set()

    async def _retrying(self, attempt: Callable[[], Awaitable[set[str]]]) -> set[str]:
        async for retry in AsyncRetrying(
            retry=retry_if_exception(self.storage.is_transient),
            wait=wait_exponential_jitter(multiplier=0.05, max=2.0, jitter=0.05),
            stop=stop_after_delay(self.retry_max_seconds),
            reraise=True,
        ):
            with retry:
                return await attempt()
        raise AssertionError("unreachable: tenacity either returns or reraises")

    async def _seen(self, works: list[Work]) -> dict[tuple[bool, str], InboxEntry]:
        """Inbox entries of these works, from the inbox of their namespace."""
        seen: dict[tuple[bool, str], InboxEntry] = {}
        for internal in (False, True):
            keys = list(dict.fromkeys(w.key for w in works if (w.record is None) == internal and not w.skip))
            if keys:
                for key, entry in (await self.storage.inbox_entries(internal, keys)).items():
                    seen[(internal, key)] = entry
        return seen

    async def _stored_replies(self, seen: dict[tuple[bool, str], InboxEntry]) -> dict[tuple[bool, str], list[Outgoing]]:
        """The replies of commands seen before, from the outbox chunks their inbox
        entries point at (entries of an earlier release hold copies instead)."""
        places = [ref for entry in seen.values() for ref in entry.replies if isinstance(ref, tuple)]
        kept = await self.storage.stored_records(places) if places else {}
        if lost := [place for place in places if place not in kept]:
            # Pruned with the window while its entry was read: the repeat changes nothing, unanswered.
            log.warning("%d stored repl(ies) no longer kept (first at %s); not sent again", len(lost), lost[0])
        return {
            ident: [
                Outgoing.from_doc(ref) if isinstance(ref, dict) else kept[ref]
                for ref in entry.replies
                if isinstance(ref, dict) or ref in kept
            ]
            for ident, entry in seen.items()
        }

    async def _commit(self, works: list[Work], poisoned: Exception | None = None) -> set[str]:
        started = time.perf_counter()
        # Dedup entries and the state the batch touches, read side by side: the
        # state of every message with a body, as most are fresh (what a repeat
        # loads as well is only read, never written).
        candidates = [w.message for w in works if w.message is not None and not w.skip] if poisoned is None else []
        seen, unit = await asyncio.gather(self._seen(works), self.logic.load(self.store(self.storage.state), candidates))
        now = self.clock.now()

        # Inbox entries, and the replies each will point at (by position in ``outgoing`` until written).
        entries: dict[bool, list[tuple[str, list[int]]]] = {False: [], True: []}
        late_replies: dict[str, list[int]] = {}
        outgoing: list[Outgoing] = []
        failed_internal: set[str] = set()
        replies_of = await self._stored_replies(seen)
        read = time.perf_counter()
        for work in works:
            if work.skip:
                continue
            if work.ident in replies_of:
                # Seen before (in an earlier batch or earlier in this one): answer again, change nothing.
                outgoing.extend(replies_of[work.ident])
                continue
            needs_entry = not work.idempotent
            if poisoned is not None:
                outputs = self._dead(work, poisoned, now)
                needs_entry = True
            elif work.message is None:
                outputs = list(work.outputs)
            else:
                checkpoint = unit.checkpoint() if isinstance(unit, UnitOfWork) else None
                try:
                    headers = work.record.headers if work.record else ()
                    with handling(self.logic.name, headers, work.message) as stamp:
                        outputs = stamp(self.logic.handle(unit, work.message))
                except Exception as exc:
                    if checkpoint is not None:
                        unit.rollback(checkpoint)
                    if work.record is None:
                        # Internal work that failed is not done: no inbox entry, tried again later.
                        log.exception("internal work %s failed; it will be tried again", work.key)
                        failed_internal.add(work.key)
                        continue
                    log.exception("handling %s failed; dead-lettering it", work.key)
                    outputs = self._dead(work, exc, now)
                    needs_entry = True
            own: list[int] = []
            for position, output in enumerate(outputs, start=len(outgoing)):
                if not output.is_reply:
                    continue
                if output.answers in (None, work.key):
                    own.append(position)
                else:
                    late_replies.setdefault(output.answers, []).append(position)
            if needs_entry:
                replies_of[work.ident] = [outputs[p - len(outgoing)] for p in own]
                entries[work.record is None].append((work.key, own))
            outgoing.extend(outputs)
        finish = getattr(self.logic, "finish", None)
        if finish is not None and poisoned is None:
            outgoing.extend(finish(unit))

        handled = time.perf_counter()
        async with self.storage.transaction() as transaction:
            if poisoned is None:
                await self.logic.save(unit, self.store(transaction.state))
            places = await transaction.append_outbox(outgoing, now) if outgoing else []
            for internal in (False, True):
                if entries[internal]:
                    await transaction.add_inbox_entries(
                        internal,
                        [InboxEntry(key, now, tuple(places[p] for p in own)) for key, own in entries[internal]],
                    )
            if late_replies:
                await transaction.add_late_replies(
                    {key: [places[p] for p in positions] for key, positions in late_replies.items()}
                )
        written = transaction.written
        self._written.update(written)  # committed
        self.times.add(self.logic.name, read - started, handled - read, time.perf_counter() - handled)
        return failed_internal

    def _dead(self, work: Work, error: Exception, now) -> list[Outgoing]:
        reason = f"{type(error).__name__}: {error}"
        answer = self.logic.failed(work, error) if work.message is not None else list(work.outputs)
        if work.message is None:
            answer = [output for output in answer if output.is_reply]
        if work.record is None:
            return answer
        return [*answer, dead_letter(work.record, error_code=ErrorCode.INTERNAL_ERROR, reason=reason, now=now)]
