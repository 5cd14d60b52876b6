"""Batch processing with exactly-once effects.

Per batch of consumed records:

1. decode every record (malformed ones already know their reply or dead letter);
2. look their dedup keys up in the inbox with one query: a message seen before
   changes nothing, and only its stored reply is sent again;
3. let the worker load every aggregate the fresh messages touch, in as few
   queries as it can, and apply the messages in order, in memory;
4. write state, inbox entries and outbox records in one MongoDB transaction.

Offsets are committed by the caller only after ``process`` returns, so a crash
at any point replays the batch, and step 2 turns the replay into a no-op.

A message whose handling raises is answered with an internal-error reply where
it can be and dead-lettered; its neighbours go on. A batch whose write fails
for a reason that is not passing is split and written one message at a time,
so one poisonous message cannot hold the others back.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pymongo import UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential_jitter,
)

from contracts.errors import ErrorCode
from services.runtime.clock import Clock
from services.runtime.codec import dead_letter
from services.runtime.dlq import REDRIVE_COUNT
from services.runtime.mongo import is_transient, transaction_options
from services.runtime.observability import PROCESSED, handling
from services.runtime.outbox import outbox_documents
from services.runtime.records import Incoming, Outgoing

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

    def decode(self, record: Incoming) -> Work: ...

    def arrange(self, works: list[Work]) -> list[Work]:
        """The order to apply a batch in; records of one partition keep their order."""

    async def load(self, db: AsyncDatabase, messages: list[Any]) -> Any:
        """Read every aggregate the messages touch; return a unit of work."""

    def handle(self, unit: Any, message: Any) -> list[Outgoing]:
        """Apply one message to the unit of work in memory. A unit that is not a
        ``UnitOfWork`` must be left unchanged when this raises."""

    def failed(self, work: Work, error: Exception) -> list[Outgoing]:
        """The answer to a message whose handling raised (besides its dead letter)."""

    async def save(self, unit: Any, db: AsyncDatabase, session: AsyncClientSession) -> None:
        """Write what the unit of work changed, refusing to overwrite concurrent changes."""


class BatchProcessor:
    def __init__(
        self,
        logic: WorkerLogic,
        db: AsyncDatabase,
        clock: Clock,
        *,
        retry_max_seconds: float = 30.0,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.logic = logic
        self.db = db
        self.clock = clock
        self.inbox = db[f"{logic.name}.inbox"]
        self.outbox = db[f"{logic.name}.outbox"]
        self.retry_max_seconds = retry_max_seconds
        self.on_commit = on_commit or (lambda: None)
        self.processed = 0

    async def process(self, records: list[Incoming]) -> None:
        await self.process_works(self.logic.arrange([self._decode(record) for record in records]))

    def _decode(self, record: Incoming) -> Work:
        try:
            work = self.logic.decode(record)
        except Exception as exc:
            # A decoder bug must not stall the partition: set the record aside.
            log.exception("decoding a record of %s failed; dead-lettering it", record.topic)
            reason = f"{type(exc).__name__}: {exc}"
            letter = dead_letter(record, error_code=ErrorCode.INTERNAL_ERROR, reason=reason, now=self.clock.now())
            return Work(record, record.fingerprint, None, (letter,))
        redrives = dict(record.headers).get(REDRIVE_COUNT)
        if redrives:
            # Sent back from a dead-letter topic: what was set aside changed
            # nothing, so it is processed afresh rather than answered from the inbox.
            work = dataclasses.replace(work, key=f"{work.key}#redrive-{redrives.decode(errors='replace')}")
        return work

    async def process_internal(self, messages: list[Any], key: Callable[[Any], str]) -> None:
        """Process messages a worker gives itself (timers, sweeps), deduped by ``key``."""
        if messages:
            await self.process_works([Work(None, key(message), message) for message in messages])

    async def process_works(self, works: list[Work]) -> None:
        try:
            await self._retrying(lambda: self._commit(works))
        except Exception as exc:
            if is_transient(exc) or len(works) == 1:
                raise
            log.warning("batch of %d failed (%r); writing its messages one at a time", len(works), exc)
            for work in works:
                await self._commit_alone(work)
        self.processed += len(works)
        PROCESSED.labels(self.logic.name).inc(len(works))
        self.on_commit()

    async def _commit_alone(self, work: Work) -> None:
        try:
            await self._retrying(lambda: self._commit([work]))
        except Exception as exc:
            if is_transient(exc):
                raise
            log.exception("message %s could not be written; dead-lettering it", work.key)
            poison = exc
            await self._retrying(lambda: self._commit([work], poisoned=poison))

    async def _retrying(self, attempt: Callable[[], Awaitable[None]]) -> None:
        async for retry in AsyncRetrying(
            retry=retry_if_exception(is_transient),
            wait=wait_exponential_jitter(multiplier=0.05, max=2.0, jitter=0.05),
            stop=stop_after_delay(self.retry_max_seconds),
            reraise=True,
        ):
            with retry:
                await attempt()

    async def _commit(self, works: list[Work], poisoned: Exception | None = None) -> None:
        keys = list(dict.fromkeys(work.key for work in works))
        seen = {doc["_id"]: doc async for doc in self.inbox.find({"_id": {"$in": keys}})}
        fresh = [w.message for w in works if w.key not in seen and w.message is not None and poisoned is None]
        unit = await self.logic.load(self.db, fresh)
        now = self.clock.now()

        inbox_docs: list[dict[str, Any]] = []
        late_replies: dict[str, list[dict[str, Any]]] = {}
        outgoing: list[Outgoing] = []
        replies_of: dict[str, list[Outgoing]] = {
            key: [Outgoing.from_doc(reply) for reply in doc.get("replies", ())] for key, doc in seen.items()
        }
        for work in works:
            if work.key in replies_of:
                # Seen before (in an earlier batch or earlier in this one): answer again, change nothing.
                outgoing.extend(replies_of[work.key])
                continue
            if poisoned is not None:
                outputs = self._dead(work, poisoned, now)
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
                    log.exception("handling %s failed; dead-lettering it", work.key)
                    outputs = self._dead(work, exc, now)
            replies = [o for o in outputs if o.is_reply and o.answers in (None, work.key)]
            for late in outputs:
                if late.is_reply and late.answers not in (None, work.key):
                    late_replies.setdefault(late.answers, []).append(late.to_doc())
            replies_of[work.key] = replies
            inbox_docs.append(
                {
                    "_id": work.key,
                    "topic": work.record.topic if work.record else "internal",
                    "processed_at": now,
                    "replies": [reply.to_doc() for reply in replies],
                }
            )
            outgoing.extend(outputs)

        async with self.db.client.start_session() as session:
            async with await session.start_transaction(**transaction_options()):
                if poisoned is None:
                    await self.logic.save(unit, self.db, session)
                if inbox_docs:
                    await self.inbox.insert_many(inbox_docs, session=session)
                if late_replies:
                    await self.inbox.bulk_write(
                        [
                            UpdateOne({"_id": key}, {"$push": {"replies": {"$each": replies}}})
                            for key, replies in late_replies.items()
                        ],
                        session=session,
                    )
                if outgoing:
                    await self.outbox.insert_many(outbox_documents(outgoing), session=session)

    def _dead(self, work: Work, error: Exception, now) -> list[Outgoing]:
        reason = f"{type(error).__name__}: {error}"
        answer = self.logic.failed(work, error) if work.message is not None else list(work.outputs)
        answer = [output for output in answer if output.is_reply]
        if work.record is None:
            return answer
        return [*answer, dead_letter(work.record, error_code=ErrorCode.INTERNAL_ERROR, reason=reason, now=now)]
