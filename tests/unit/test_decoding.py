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


def cart_command(**fields) -> Incoming:
    body = {"type": "AddItem", "message_id": "m-9", "occurred_at": "2026-01-01T00:00:00Z", "user_id": "ada",
            "product_id": "p", "reply_to": "replies.storefront", **fields}
    return Incoming("cart.commands", 0, 7, b"ada", json.dumps(body).encode())


def decode_cart_command(incoming: Incoming):
    import functools

    from contracts import cart as cart_contract
    from services.runtime.decoding import invalid_command_reply
    from services.runtime.settings import Settings

    settings, clock = Settings(), ManualClock()
    return decode_record(
        incoming, cart_contract.cart_command_adapter, cart_contract.CART_COMMAND_TYPES, clock, settings=settings,
        answer=functools.partial(invalid_command_reply, settings, clock, "cart.replies"),
    )


import pytest  # noqa: E402


@pytest.mark.parametrize(
    "fields",
    [
        {"properties": {"note": "x" * 1100}},
        {"properties": {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}},
        {"type": "CheckoutCart", "shipping_address": "é" * 600},
    ],
    ids=["over-1-KiB", "deeper-than-5", "600-e-acute-address"],
)
def test_a_command_beyond_the_free_form_limits_is_refused_on_its_own_reply_topic(fields):
    (refusal,) = decode_cart_command(cart_command(**fields)).outputs

    assert refusal.topic == "replies.storefront"
    assert json.loads(refusal.value)["error_code"] == "INVALID_MESSAGE"


def test_a_command_whose_reply_to_is_not_allowed_is_refused_on_the_default_reply_topic():
    (refusal,) = decode_cart_command(cart_command(reply_to="cart.events")).outputs

    assert refusal.topic == "cart.replies" and json.loads(refusal.value)["error_code"] == "INVALID_MESSAGE"


@pytest.mark.parametrize(
    "fields",
    [
        {"properties": {"col\u0000or": "red"}},
        {"properties": {"$where": "1"}},
        {"properties": {"a.b": 1}},
        {"properties": {"": 1}},
        {"properties": {"outer": [{"in\u0000ner": 1}]}},
        {"properties": {"outer": {"$gt": ""}}},
        {"type": "CheckoutCart", "shipping_address": {"city": {"$ne": None}}},
    ],
    ids=["nul", "dollar", "dot", "empty", "nul-in-a-list", "nested-dollar", "address-key"],
)
def test_a_free_form_key_that_a_database_would_refuse_or_read_specially_is_an_invalid_message(fields):
    work = decode_cart_command(cart_command(**fields))

    (refusal,) = work.outputs
    assert work.message is None and json.loads(refusal.value)["error_code"] == "INVALID_MESSAGE"
    assert refusal.topic == "replies.storefront"


def test_every_free_form_object_a_command_carries_is_held_to_the_key_rule_and_the_limits():
    import inspect

    from pydantic import TypeAdapter

    from contracts import cart, catalog, checkout, payment, stock
    from contracts.envelope import Command
    from contracts.free_form import FREE_FORM_FIELDS

    for module in (cart, catalog, checkout, payment, stock):
        for _, model in inspect.getmembers(module, lambda m: inspect.isclass(m) and issubclass(m, Command)):
            for name, info in model.model_fields.items():
                if "dict" not in str(info.annotation):
                    continue
                assert name in FREE_FORM_FIELDS, f"{model.__name__}.{name} is free-form but not held to the limits"
                adapter = TypeAdapter(info.annotation)
                with pytest.raises(ValueError):
                    adapter.validate_python({"a\u0000": 1})
