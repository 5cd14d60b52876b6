"""The checkout worker's handlers.

In: ``StartCheckout`` from the cart worker, payment events from the gateway
adapter, ``PaymentDeadlineReached`` from the delayed timeout consumer (and from
the safety-net sweep when a timeout message was lost), and the stock worker's
answers to the saga's own stock commands (``stock.events``, matched by
``causation_id``; every other stock event is skipped unread).
Out: order events, the upstream's ``CommandResult``, the delayed timeout event,
and the stock commands that take over or reserve (at the start), commit (on
payment) or release (on cancellation).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from collections.abc import Iterable
from typing import Any, Protocol

from contracts import order as order_contract
from contracts import stock as stock_contract
from contracts.cart import CommandResult
from contracts.checkout import (
    CHECKOUT_QUERY_TYPES,
    CheckoutAccepted,
    CheckoutRefused,
    GetCheckout,
    GetPayment,
    PaymentDeadlineReached,
    StartCheckout,
    checkout_query_adapter,
    deadline_adapter,
    start_checkout_adapter,
)
from contracts.envelope import is_identifier, message_id_for
from contracts.errors import ERROR_MESSAGES, ErrorCode
from contracts.holders import is_order_holder
from contracts.payment import PAYMENT_EVENT_TYPES, PaymentFailed, PaymentSucceeded, payment_event_adapter
from contracts.topics import (
    CART_REPLIES,
    CHECKOUT_COMMANDS,
    CHECKOUT_HANDOVERS,
    CHECKOUT_QUERIES,
    CHECKOUT_TIMEOUTS,
    ORDER_EVENTS,
    PAYMENT_EVENTS,
    STOCK_COMMANDS,
    STOCK_EVENTS,
)
from services.checkout_worker import domain, published
from services.checkout_worker.domain import (
    Checkout,
    CommitStock,
    Order,
    OverdueDeadline,
    ReleaseStock,
    ReserveStock,
    ScheduleDeadline,
    Step,
    StockAnswer,
    TransferStock,
    stock_command_id,
)
from services.runtime.clock import Clock
from services.runtime.decoding import decode_record, invalid_command_reply
from services.runtime.emit import causal_envelope, event_records
from services.runtime.headers import REDRIVE_TOKEN
from services.runtime.observability import DEADLINE_LATENESS
from services.runtime.processing import UnitOfWork, Work
from services.runtime.records import Incoming, Outgoing
from services.runtime.routing import Routes, received_on
from services.runtime.settings import Settings


class UnknownPayment(LookupError):
    """A payment event for a checkout that does not exist (dead-lettered for an operator)."""


@dataclass
class CheckoutUnit(UnitOfWork):
    checkouts: dict[str, Checkout] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    #: Charges already answered (reference -> payment id), as ``checkout.charges`` has them.
    charges: dict[str, str] = field(default_factory=dict)
    #: Charges answered by this batch, for ``checkout.charges``.
    answered: dict[str, str] = field(default_factory=dict)

    def put(self, checkout: Checkout) -> None:
        self.checkouts[checkout.payment_id] = checkout
        self.dirty.add(checkout.payment_id)


#: The contract topics the checkout worker's main consumer group reads (its spec's
#: ``consumes``); its timer consumer reads ``checkout.timeouts``.
CONSUMED = (CHECKOUT_COMMANDS, CHECKOUT_QUERIES, PAYMENT_EVENTS, STOCK_EVENTS)


#: What the answer to a query is derived as (never the id of a command's answer).
QUERY_RESULT = "QueryResult"


class CheckoutStore(Protocol):
    """Where ``CheckoutLogic`` reads and writes checkouts and answered charges
    (on MongoDB: ``services.checkout_worker.repository.CheckoutStore``)."""

    async def checkouts(self, payment_ids: Iterable[str]) -> dict[str, Checkout]: ...
    async def waiting_on(self, command_ids: Iterable[str]) -> dict[str, Checkout]: ...
    async def holding(self, reservation_ids: Iterable[str]) -> dict[str, Checkout]: ...
    async def charges(self, references: Iterable[str]) -> dict[str, str]: ...
    async def save(self, checkouts: Iterable[Checkout], charges: dict[str, str], now: datetime) -> None: ...


class CheckoutLogic:
    name = "checkout"

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.topics = {
            name: settings.topic(name)
            for name in (CHECKOUT_COMMANDS, PAYMENT_EVENTS, CHECKOUT_TIMEOUTS, CHECKOUT_QUERIES)
        }
        self.order_events = settings.topic(ORDER_EVENTS)
        self.timeouts = settings.topic(CHECKOUT_TIMEOUTS)
        self.stock_commands = settings.topic(STOCK_COMMANDS)
        self.replies = settings.topic(CART_REPLIES)
        self.stock_events = settings.topic(STOCK_EVENTS)
        self.handovers = settings.topic(CHECKOUT_HANDOVERS)
        self.routes = Routes(
            {
                StartCheckout: self._start,
                **{kind: self._on_stock_answer for kind in STOCK_ANSWERS},
                **{kind: self._ignore for kind in stock_contract.STOCK_EVENTS if kind not in STOCK_ANSWERS},
                GetCheckout: self._on_query,
                GetPayment: self._on_query,
                PaymentSucceeded: self._on_payment_or_deadline,
                PaymentFailed: self._on_payment_or_deadline,
                PaymentDeadlineReached: self._on_payment_or_deadline,
                OverdueDeadline: self._on_payment_or_deadline,
            },
            receives=(*received_on((*CONSUMED, CHECKOUT_TIMEOUTS)), OverdueDeadline),
        )

    def decode(self, record: Incoming) -> Work:
        if record.topic == self.stock_events:
            return self._decode_stock_answer(record)
        if record.topic == self.topics[PAYMENT_EVENTS]:
            return decode_record(record, payment_event_adapter, PAYMENT_EVENT_TYPES, self.clock)
        if record.topic == self.topics[CHECKOUT_TIMEOUTS]:
            return decode_record(record, deadline_adapter, frozenset({"PaymentDeadlineReached"}), self.clock)
        if record.topic == self.topics[CHECKOUT_QUERIES]:
            return decode_record(
                record,
                checkout_query_adapter,
                CHECKOUT_QUERY_TYPES,
                self.clock,
                settings=self.settings,
                answer=functools.partial(
                    invalid_command_reply, self.settings, self.clock, self.replies, result_kind=QUERY_RESULT
                ),
                namespace="query:",
            )
        work = decode_record(
            record, start_checkout_adapter, frozenset({"StartCheckout"}), self.clock, settings=self.settings
        )
        if isinstance(work.message, StartCheckout) and record.header(REDRIVE_TOKEN):
            # A hand-over set aside once was refused to the cart then, which told
            # the buyer: sent back by an operator, it starts nothing.
            refusal = self._answer_handover(
                work.message, CheckoutRefused, error_code=ErrorCode.CHECKOUT_NOT_AVAILABLE,
                message="A checkout refused once is not started later; check out again",
            )
            return dataclasses.replace(work, message=None, outputs=(refusal,))
        if work.message is None and (refusal := self._refuse_unreadable(record)) is not None:
            # Set aside for an operator, and the cart told: it keeps the lines.
            work = dataclasses.replace(work, outputs=(*work.outputs, refusal))
        return work

    def _refuse_unreadable(self, record: Incoming) -> Outgoing | None:
        """The refusal of a hand-over that does not read as a ``StartCheckout``,
        when what it holds still says whose cart it came from."""
        try:
            fields = json.loads(record.value or b"")
        except ValueError:
            return None
        if not isinstance(fields, dict):
            return None
        lines = fields.get("lines") if isinstance(fields.get("lines"), list) else []
        item_ids = [line.get("item_id") for line in lines[:500] if isinstance(line, dict)]
        return self._handover_answer(
            CheckoutRefused,
            fields.get("message_id"),
            fields.get("correlation_id"),
            fields.get("payment_id"),
            fields.get("user_id"),
            [item_id for item_id in item_ids if is_identifier(item_id)],
            error_code=ErrorCode.INVALID_MESSAGE,
            message="The checkout could not be started: its details are not valid",
        )

    def _handover_answer(
        self,
        kind: type,
        start_message_id: Any,
        correlation_id: Any,
        payment_id: Any,
        user_id: Any,
        item_ids: list[str],
        **fields: Any,
    ) -> Outgoing | None:
        """The answer to the cart on ``checkout.handovers``: None when the
        hand-over does not say whose it is."""
        if not (is_identifier(start_message_id) and is_identifier(payment_id) and is_identifier(user_id)):
            return None
        answer = kind(
            message_id=message_id_for(start_message_id, kind.__name__, payment_id),
            **causal_envelope(start_message_id, correlation_id if is_identifier(correlation_id) else None, self.clock.now()),
            payment_id=payment_id,
            user_id=user_id,
            item_ids=item_ids,
            **fields,
        )
        return Outgoing(self.handovers, user_id.encode(), answer.to_json_bytes(), is_reply=True)

    def _answer_handover(self, command: StartCheckout, kind: type, **fields: Any) -> Outgoing:
        """The answer to a ``StartCheckout`` that reads: accepted or refused."""
        answer = self._handover_answer(
            kind,
            command.message_id,
            command.correlation_id,
            command.payment_id,
            command.user_id,
            [line.item_id for line in command.lines],
            **fields,
        )
        assert answer is not None  # a StartCheckout's ids are identifiers
        return answer

    def _decode_stock_answer(self, record: Incoming) -> Work:
        """Only answers to a saga's own commands matter here; the cart worker,
        which reads the same topic, dead-letters what is malformed."""
        return decode_record(
            record,
            stock_contract.stock_event_adapter,
            stock_contract.STOCK_EVENT_TYPES,
            self.clock,
            wanted=_may_answer_a_saga,
        )

    def arrange(self, works: list[Work]) -> list[Work]:
        return works

    async def load(self, store: CheckoutStore, messages: list[Any]) -> CheckoutUnit:
        answers = [m.causation_id for m in messages if _is_stock_answer(m) and m.causation_id and not _takes_units_back(m)]
        # Four independent reads, side by side. Charges already answered are read
        # whether or not their checkout is still kept.
        by_payment, waiting, holding, charges = await asyncio.gather(
            store.checkouts([m.payment_id for m in messages if not _is_stock_answer(m)]),
            store.waiting_on(answers),
            store.holding([m.reservation_id for m in messages if _takes_units_back(m)]),
            store.charges([_charge(m) for m in messages if isinstance(m, PaymentSucceeded)]),
        )
        return CheckoutUnit({**by_payment, **waiting, **holding}, charges=charges)

    async def save(self, unit: CheckoutUnit, store: CheckoutStore) -> None:
        await store.save([unit.checkouts[p] for p in sorted(unit.dirty)], unit.answered, self.clock.now())

    def failed(self, work: Work, error: Exception) -> list[Outgoing]:
        message = work.message
        if isinstance(message, StartCheckout):
            # It could not be taken (stored, say): the cart keeps its lines and answers the buyer.
            return [self._answer_handover(message, CheckoutRefused, error_code=ErrorCode.INTERNAL_ERROR,
                                          message="The checkout could not be started; nothing was charged")]
        if isinstance(error, UnknownPayment) and isinstance(message, PaymentSucceeded):
            # Dead-lettered for a redrive once its checkout exists; announced so
            # that a payments team refunds it if none ever does.
            # Its id comes from the charge, not from this announcement of it: the
            # provider announcing it again is one refund to a downstream that
            # dedups on message_id.
            event = order_contract.UnmatchedPaymentReceived(
                message_id=message_id_for(_charge(message), "UnmatchedPaymentReceived", message.payment_id),
                **causal_envelope(message.message_id, message.correlation_id, self.clock.now()),
                payment_id=message.payment_id,
                amount=message.amount,
                gateway_reference=message.gateway_reference,
            )
            return [Outgoing(self.order_events, message.payment_id.encode(), event.to_json_bytes())]
        return []

    def handle(self, unit: CheckoutUnit, message: Any) -> list[Outgoing]:
        return self.routes(unit, message, self.clock.now())

    def _on_query(self, unit: CheckoutUnit, query: GetCheckout | GetPayment, now: datetime) -> list[Outgoing]:
        return [self._status(unit, query, now)]

    def _ignore(self, unit: CheckoutUnit, message: Any, now: datetime) -> list[Outgoing]:
        return []  # skipped when decoded (it answers no saga): never here

    def _on_payment_or_deadline(self, unit: CheckoutUnit, message: Any, now: datetime) -> list[Outgoing]:
        if isinstance(message, PaymentSucceeded) and unit.charges.get(_charge(message)) == message.payment_id:
            return []  # answered already (its checkout may have been pruned since): answered once
        checkout = unit.checkouts.get(message.payment_id)
        if checkout is None:
            if isinstance(message, PaymentSucceeded | PaymentFailed):
                raise UnknownPayment(f"no checkout has payment id {message.payment_id}")
            return []
        match message:
            case PaymentSucceeded():
                step = domain.payment_succeeded(checkout, message.amount, now=now, reference=_charge(message))
            case PaymentFailed():
                cancel = self.settings.checkout_cancel_on_payment_failure
                step = domain.payment_failed(checkout, message.reason, now=now, cancel=cancel)
            case PaymentDeadlineReached() | OverdueDeadline():
                step = domain.deadline_reached(checkout, now=now)
                if step.checkout.state == domain.CANCELLED and checkout.state == domain.AWAITING_PAYMENT:
                    DEADLINE_LATENESS.observe((now - checkout.deadline).total_seconds())
        if step.checkout is not checkout:
            unit.put(step.checkout)
            for charge in set(domain.charges_of(step.checkout)) - set(domain.charges_of(checkout)):
                unit.answered[charge] = unit.charges[charge] = checkout.payment_id
        cause_id = message.dedup_key if isinstance(message, OverdueDeadline) else message.message_id
        correlation_id = None if isinstance(message, OverdueDeadline) else message.correlation_id
        return self._outputs(step, cause_id, correlation_id, now)

    def _on_stock_answer(self, unit: CheckoutUnit, event: Any, now: datetime) -> list[Outgoing]:
        if _takes_units_back(event):
            return self._on_units_taken_back(unit, event, now)
        checkout = next(
            (c for c in unit.checkouts.values() if any(o.stock_command_id == event.causation_id for o in c.orders)),
            None,
        )
        if checkout is None:
            return []
        granted = isinstance(event, stock_contract.ReservationTransferred | stock_contract.StockReserved)
        answer = StockAnswer(
            event.causation_id,
            event.reservation_id,
            granted,
            product_id=event.product_id,
            quantity=event.quantity if granted else None,
        )
        step = domain.stock_answered(checkout, answer, now=now)
        if step.checkout is not checkout:
            unit.put(step.checkout)
        return self._outputs(step, event.message_id, event.correlation_id, now)

    def _on_units_taken_back(self, unit: CheckoutUnit, event: Any, now: datetime) -> list[Outgoing]:
        checkout = next(
            (c for c in unit.checkouts.values() if any(o.reservation_id == event.reservation_id for o in c.orders)),
            None,
        )
        if checkout is None:
            return []
        step = domain.units_taken_back(checkout, event.reservation_id, now=now)
        if step.checkout is not checkout:
            unit.put(step.checkout)
        return self._outputs(step, event.message_id, event.correlation_id, now)

    def _start(self, unit: CheckoutUnit, command: StartCheckout, now: datetime) -> list[Outgoing]:
        existing = unit.checkouts.get(command.payment_id)
        if existing is not None and (existing.user_id, existing.payment_hash) != (command.user_id, command.payment_hash):
            # Another checkout has this id (another buyer's, or other lines under a
            # checkout command's id used again): neither shown nor taken over.
            return [self._answer_handover(command, CheckoutRefused, error_code=ErrorCode.CHECKOUT_NOT_AVAILABLE,
                                          message="This checkout cannot be started; send it again with a new message_id")]
        if existing is not None:
            return [self._reply(command, existing, now), self._answer_handover(command, CheckoutAccepted)]
        checkout = Checkout(
            payment_id=command.payment_id,
            payment_hash=command.payment_hash,
            user_id=command.user_id,
            checkout_type=command.checkout_type,
            orders=tuple(
                Order(
                    line.order_id,
                    line.item_id,
                    line.product_id,
                    line.product_name,
                    line.size,
                    line.quantity,
                    line.unit_price,
                    line.total_price,
                    line.reservation_id,
                )
                for line in command.lines
            ),
            total_amount=command.total_amount,
            payment_method=command.payment_method,
            gateway_name=command.gateway_name,
            shipping_address=command.shipping_address,
            created_at=now,
            deadline=now + timedelta(seconds=self.settings.payment_timeout_seconds),
        )
        step = domain.start(checkout)
        unit.put(step.checkout)
        outputs = self._outputs(step, command.message_id, command.correlation_id, now)
        return [self._reply(command, step.checkout, now), self._answer_handover(command, CheckoutAccepted), *outputs]

    def _reply(self, command: StartCheckout, checkout: Checkout, now: datetime) -> Outgoing:
        result = CommandResult(
            message_id=message_id_for(command.command_message_id, "CommandResult"),
            **causal_envelope(command.command_message_id, command.correlation_id, now),
            command_type=command.command_type,
            command_message_id=command.command_message_id,
            user_id=command.user_id,
            success=True,
            data=domain.checkout_response(checkout, now=now),
        )
        return Outgoing(command.reply_to or self.replies, command.user_id.encode(), result.to_json_bytes(), is_reply=True)

    def _status(self, unit: CheckoutUnit, query: GetCheckout | GetPayment, now: datetime) -> Outgoing:
        """Where the user's checkout stands (another user's is not found, as an
        unknown one); or, for the payment webhook, where its payment stands."""
        checkout = unit.checkouts.get(query.payment_id)
        user_id = query.user_id if isinstance(query, GetCheckout) else None
        common: dict[str, Any] = {
            "message_id": message_id_for(query.message_id, QUERY_RESULT),
            **causal_envelope(query.message_id, query.correlation_id, now),
            "command_type": query.type,
            "command_message_id": query.message_id,
            "user_id": user_id,
        }
        if checkout is None or (user_id is not None and checkout.user_id != user_id):
            result = CommandResult(
                success=False,
                error_code=ErrorCode.CHECKOUT_NOT_FOUND,
                error_message=ERROR_MESSAGES[ErrorCode.CHECKOUT_NOT_FOUND],
                suggested_action="Check the payment id: it is the one the checkout answered with",
                **common,
            )
        else:
            status = domain.checkout_status(checkout, now=now)
            if user_id is None:
                status = {name: status[name] for name in ("payment_id", "state", "total_amount", "payment_expires_at")}
            result = CommandResult(success=True, data=status, **common)
        key = (user_id or query.payment_id).encode()
        return Outgoing(query.reply_to or self.replies, key, result.to_json_bytes(), is_reply=True)

    def _outputs(self, step: Step, cause_id: str, correlation_id: str | None, now: datetime) -> list[Outgoing]:
        envelope = causal_envelope(cause_id, correlation_id, now)
        payment_id = step.checkout.payment_id
        outputs = event_records(
            step.events, published.ORDER_EVENTS, topic=self.order_events, key=payment_id, cause_id=cause_id, envelope=envelope
        )
        for effect in step.effects:
            # Each effect's fields are those of the message that carries it.
            contract, topic = {
                ScheduleDeadline: (PaymentDeadlineReached, self.timeouts),
                TransferStock: (stock_contract.TransferReservation, self.stock_commands),
                ReserveStock: (stock_contract.ReserveStock, self.stock_commands),
                CommitStock: (stock_contract.CommitReservation, self.stock_commands),
                ReleaseStock: (stock_contract.ReleaseReservation, self.stock_commands),
            }[type(effect)]
            if isinstance(effect, ScheduleDeadline):
                message_id = message_id_for(cause_id, contract.__name__, payment_id)
            else:
                # The saga knows the id of each of its stock commands, to match the answer.
                message_id = stock_command_id(payment_id, contract.__name__, effect.reservation_id)
            message = contract(message_id=message_id, **envelope, **asdict(effect))
            # Stock commands are keyed by product, the deadline by its checkout.
            key = getattr(effect, "product_id", payment_id)
            outputs.append(Outgoing(topic, key.encode(), message.to_json_bytes()))
        return outputs


def _charge(payment: PaymentSucceeded) -> str:
    """What names a charge: the gateway's reference, else the announcement's id."""
    return payment.gateway_reference or payment.message_id


def _is_stock_answer(message: Any) -> bool:
    return isinstance(message, STOCK_ANSWERS)


STOCK_ANSWERS = (
    stock_contract.ReservationTransferred,
    stock_contract.StockReserved,
    stock_contract.StockReservationRejected,
    stock_contract.StockCommandRejected,
    stock_contract.StockReleased,
)
#: Why the stock worker gives back units it was not asked to (a recount below
#: what is held): the saga loses the order that held them.
STOCK_REDUCED = "stock_reduced"


def _takes_units_back(event: Any) -> bool:
    return isinstance(event, stock_contract.StockReleased) and event.reason == STOCK_REDUCED and not event.no_op


def _may_answer_a_saga(event: Any) -> bool:
    """Cheap, without the database: could this event answer one of a saga's commands?"""
    if not isinstance(event, STOCK_ANSWERS) or not event.causation_id:
        return False
    if isinstance(event, stock_contract.StockReleased):
        # Releases answer the saga's own cancellations, which need no answer;
        # only units taken back by a recount change a saga.
        return _takes_units_back(event) and is_order_holder(event.holder)
    if isinstance(event, stock_contract.StockCommandRejected):
        return event.command_type == "TransferReservation"
    return is_order_holder(event.holder)
