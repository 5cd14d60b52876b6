"""One decoding path for every worker: a message and its key, or what a
malformed record gets instead."""

import json

from contracts import stock as stock_contract
from services.runtime import headers as h
from services.runtime.clock import ManualClock
from services.runtime.codec import Malformed
from services.runtime.decoding import decode_record
from services.runtime.records import Incoming, Outgoing

ADAPTER, TYPES = stock_contract.stock_command_adapter, stock_contract.STOCK_COMMAND_TYPES
SET_STOCK = {
    "type": "SetStock", "message_id": "m-1", "occurred_at": "2026-01-01T00:00:00Z", "product_id": "p", "on_hand": 3
}


def record(fields: dict | None = None, raw: bytes | None = None) -> Incoming:
    return Incoming("stock.commands", 0, 7, b"p", raw if raw is not None else json.dumps(fields).encode())


def test_a_valid_record_is_keyed_by_its_message_id():
    work = decode_record(record(SET_STOCK), ADAPTER, TYPES, ManualClock())

    assert (work.key, work.message.on_hand, work.outputs, work.skip) == ("m-1", 3, (), False)


def test_a_malformed_record_is_dead_lettered_under_its_message_id_or_its_bytes():
    invalid = record({**SET_STOCK, "on_hand": -1})
    garbage = record(raw=b"not json")

    (letter,) = decode_record(invalid, ADAPTER, TYPES, ManualClock()).outputs
    assert decode_record(invalid, ADAPTER, TYPES, ManualClock()).key == "m-1"
    assert decode_record(garbage, ADAPTER, TYPES, ManualClock()).key == garbage.fingerprint
    assert dict(letter.headers)[h.ERROR_CODE] == b"INVALID_MESSAGE"
    assert letter.topic != invalid.topic and letter.value == invalid.value


def test_an_answer_replaces_the_dead_letter_when_it_can_be_addressed():
    rejection = Outgoing("replies", b"p", b"no", is_reply=True)

    def answer(incoming: Incoming, malformed: Malformed) -> Outgoing | None:
        return rejection if malformed.message_id else None

    answered = decode_record(record({**SET_STOCK, "on_hand": -1}), ADAPTER, TYPES, ManualClock(), answer=answer)
    unaddressed = decode_record(record(raw=b"[]"), ADAPTER, TYPES, ManualClock(), answer=answer)

    assert answered.outputs == (rejection,) and answered.message is None
    assert dict(unaddressed.outputs[0].headers)[h.ERROR_CODE] == b"INVALID_MESSAGE"


def test_a_topic_read_for_a_few_messages_skips_the_rest_malformed_or_not():
    def wanted(message):
        return message.on_hand > 0

    kept = decode_record(record(SET_STOCK), ADAPTER, TYPES, ManualClock(), wanted=wanted)
    unwanted = record({**SET_STOCK, "on_hand": 0})
    malformed = record(raw=b"\xff")

    assert not kept.skip and kept.key == "m-1"
    for skipped in (unwanted, malformed):
        work = decode_record(skipped, ADAPTER, TYPES, ManualClock(), wanted=wanted)
        assert (work.skip, work.key, work.outputs) == (True, skipped.fingerprint, ())


def test_a_type_that_is_not_a_string_is_an_invalid_message_not_an_internal_error():
    for kind in ([], {}, ["x"] * 10_000, 7, None):
        work = decode_record(record({**SET_STOCK, "type": kind}), ADAPTER, TYPES, ManualClock())

        (letter,) = work.outputs
        assert dict(letter.headers)[h.ERROR_CODE] == b"INVALID_MESSAGE"
        assert len(dict(letter.headers)[h.ERROR]) < 300
