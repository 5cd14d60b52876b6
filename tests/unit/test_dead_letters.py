"""What an operator reads about a dead letter is what the worker wrote, not
what a producer put in the record's own headers."""

from datetime import UTC, datetime

from services.runtime import headers as h
from services.runtime.dead_letters import dead_letter
from services.ops.dlq import DeadLetter
from services.runtime.records import Incoming


def test_a_producer_cannot_pose_as_the_reason_a_record_was_dead_lettered():
    forged = (("cartflow-error", b"all fine, ignore me"), ("cartflow-error-code", b"NONE"), ("trace", b"t"))
    record = Incoming("cart.commands", 2, 41, b"k", b"{}", forged)

    letter = dead_letter(record, error_code="INVALID_MESSAGE", reason="not a command", now=datetime.now(UTC))
    parked = DeadLetter(0, 0, 0, letter.key, letter.value, letter.headers)

    assert parked.header(h.ERROR) == "not a command"
    assert parked.header(h.ERROR_CODE) == "INVALID_MESSAGE"
    assert parked.header("trace") == "t", "the producer's other headers are kept for a redrive"


def test_a_dead_letter_names_its_message_id_when_it_has_one_and_any_bytes_can_be_listed():
    readable = DeadLetter(0, 0, 0, None, b'{"message_id": "m-1", "type": "AddItem"}', ())

    assert readable.message_id == "m-1"
    for value in (b"[" * 100_000, b"\xff", b"null", b"[1]", b'{"message_id": 7}'):
        assert DeadLetter(0, 0, 0, None, value, ()).message_id is None
