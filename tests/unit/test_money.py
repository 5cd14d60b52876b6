"""Money on the wire: a plain decimal string with at most two decimals, never
negative. Read from raw JSON bytes, as a foreign client's message arrives."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from pydantic import TypeAdapter, ValidationError

from contracts.catalog import ProductUpserted, SizeOption
from contracts.checkout import CheckoutLine
from contracts.envelope import Money
from contracts.order import PaymentAmountMismatch

ENVELOPE = {
    "message_id": "5f0c2f1e-0d7b-4c41-9a39-0f3f3c1d2b01",
    "occurred_at": "2026-11-25T10:00:00Z",
    "type": "ProductUpserted",
    "product_id": "shoe-1",
    "name": "Trail shoe",
}


def product_with_raw_price(raw_price: str) -> bytes:
    """A ProductUpserted whose ``price`` is the JSON text ``raw_price``, verbatim."""
    body = json.dumps({**ENVELOPE, "price": "PRICE"})
    return body.replace('"PRICE"', raw_price).encode()


def product_with_price(price: str) -> bytes:
    return product_with_raw_price(json.dumps(price))


def assert_refused(raw: bytes) -> None:
    with pytest.raises(ValidationError) as caught:
        ProductUpserted.model_validate_json(raw)
    assert [error["loc"] for error in caught.value.errors()] == [("price",)]


# --- refused --------------------------------------------------------------------


def test_a_price_with_underscores_between_digits_is_refused():
    assert_refused(product_with_price("7_499"))


def test_a_price_with_an_exponent_is_refused():
    assert_refused(product_with_price("1E+2"))


def test_a_price_with_a_lower_case_exponent_is_refused():
    assert_refused(product_with_price("1e2"))


def test_a_negative_zero_price_is_refused():
    assert_refused(product_with_price("-0"))


def test_a_negative_price_is_refused():
    assert_refused(product_with_price("-1.00"))


def test_a_price_with_a_leading_space_is_refused():
    assert_refused(product_with_price(" 1.00"))


def test_a_price_with_a_trailing_space_is_refused():
    assert_refused(product_with_price("1.00 "))


def test_a_price_with_a_trailing_newline_is_refused():
    assert_refused(product_with_price("1.00\n"))


def test_a_price_with_a_plus_sign_is_refused():
    assert_refused(product_with_price("+1"))


def test_a_price_with_three_decimals_is_refused():
    assert_refused(product_with_price("1.001"))


def test_a_price_with_a_trailing_zero_third_decimal_is_refused():
    assert_refused(product_with_price("1.000"))


@pytest.mark.parametrize("text", ["NaN", "nan", "sNaN", "Infinity", "-Infinity", "inf"])
def test_a_price_that_is_not_a_number_or_infinite_is_refused(text):
    assert_refused(product_with_price(text))


def test_an_empty_price_is_refused():
    assert_refused(product_with_price(""))


def test_a_price_ending_in_a_dot_is_refused():
    assert_refused(product_with_price("1."))


def test_a_price_starting_with_a_dot_is_refused():
    assert_refused(product_with_price(".5"))


def test_a_price_with_a_comma_for_the_decimal_point_is_refused():
    assert_refused(product_with_price("74,99"))


def test_a_price_written_with_non_ascii_digits_is_refused():
    assert_refused(product_with_price("\u0667\u0664.\u0669\u0669"))


def test_a_price_with_more_than_thirteen_integer_digits_is_refused():
    assert_refused(product_with_price("12345678901234"))


@pytest.mark.parametrize("raw", ["74.99", "7499", "0", "1e2", "null", "true", '["74.99"]'])
def test_a_price_that_is_a_json_number_or_other_non_string_is_refused(raw):
    assert_refused(product_with_raw_price(raw))


def test_a_bad_amount_in_a_nested_field_is_refused_too():
    raw = json.dumps({**ENVELOPE, "price": "74.99", "sizes": [{"size": "42", "price": "-0"}]}).encode()
    with pytest.raises(ValidationError) as caught:
        ProductUpserted.model_validate_json(raw)
    assert [error["loc"] for error in caught.value.errors()] == [("sizes", 0, "price")]


def test_every_money_field_of_the_contract_refuses_a_negative_amount():
    raw = json.dumps({
        "message_id": "m-1", "occurred_at": "2026-11-25T10:00:00Z", "type": "PaymentAmountMismatch",
        "payment_id": "pay-1", "expected": "149.98", "received": "-149.98",
    }).encode()
    with pytest.raises(ValidationError):
        PaymentAmountMismatch.model_validate_json(raw)


# --- accepted -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", Decimal("0")),
        ("7499", Decimal("7499")),
        ("74.99", Decimal("74.99")),
        ("74.9", Decimal("74.9")),
        ("0.05", Decimal("0.05")),
        ("1.00", Decimal("1.00")),
        ("9999999999999.99", Decimal("9999999999999.99")),
    ],
)
def test_a_plain_decimal_price_with_at_most_two_decimals_is_accepted(text, value):
    product = ProductUpserted.model_validate_json(product_with_price(text))

    assert product.price == value
    assert json.loads(product.model_dump_json())["price"] == text


# --- Decimals built in Python ---------------------------------------------------


def test_a_decimal_built_in_code_with_two_decimals_is_kept():
    line = SizeOption(size="42", price=Decimal("74.99"))

    assert line.price == Decimal("74.99")


def test_a_computed_line_total_of_two_decimal_prices_is_kept():
    unit_price = Decimal("74.99")
    line = CheckoutLine(
        order_id="o-1", item_id="i-1", product_id="p-1", product_name="Trail shoe",
        quantity=3, unit_price=unit_price, total_price=unit_price * 3,
    )

    assert line.model_dump(mode="json")["total_price"] == "224.97"


def test_a_decimal_built_in_code_with_more_than_two_decimals_is_an_error():
    with pytest.raises(ValidationError):
        SizeOption(size="42", price=Decimal("74.995"))


def test_a_divided_amount_is_an_error_until_it_is_rounded():
    with pytest.raises(ValidationError):
        SizeOption(size="42", price=Decimal("100") / 3)


@pytest.mark.parametrize("value", [Decimal("-0"), Decimal("-0.00"), Decimal("-1"), Decimal("NaN"), Decimal("Infinity")])
def test_a_negative_or_non_finite_decimal_built_in_code_is_an_error(value):
    with pytest.raises(ValidationError):
        SizeOption(size="42", price=value)


def test_a_decimal_with_a_positive_exponent_is_written_out_in_plain_digits():
    option = SizeOption(size="42", price=Decimal("1E+2"))

    assert option.model_dump(mode="json")["price"] == "100"


def test_the_json_schema_states_the_plain_decimal_rule_and_offers_no_json_number():
    for mode in ("validation", "serialization"):
        assert TypeAdapter(Money).json_schema(mode=mode) == {"type": "string", "pattern": r"^\d{1,13}(\.\d{1,2})?$"}
