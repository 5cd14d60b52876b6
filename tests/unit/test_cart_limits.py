"""A cart cannot grow past its limits, and so no reply about it can grow past
what the broker accepts: the bounds hold by construction, on the pure domain."""

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from contracts.cart import CommandResult
from contracts.errors import ErrorCode
from services.cart_worker import domain
from services.cart_worker.domain import Accepted, Cart, CartLimits, Product, Rejected
from services.runtime.settings import Settings

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def product(number: int) -> Product:
    # Names and ids as long as the contract lets a producer make them.
    return Product(f"p{number:03d}".ljust(200, "x"), "N" * 200, Decimal("9999999999999.99"), image_url="u" * 200)


def add(cart: Cart, item: Product, limits: CartLimits, properties=None):
    return domain.add_item(
        cart, item, product_id=item.product_id, quantity=1, size=None, properties=properties,
        new_item_id=f"item-{item.product_id[:4]}".ljust(200, "i"), now=NOW, limits=limits,
    )


def test_a_cart_at_its_line_limit_refuses_a_new_product_but_still_takes_more_of_one_it_holds():
    limits = CartLimits(max_lines=2)
    cart = Cart("ada")
    for number in range(2):
        cart = add(cart, product(number), limits).cart

    refused = add(cart, product(2), limits)
    more = add(cart, product(0), limits)

    assert isinstance(refused, Rejected) and refused.code == ErrorCode.CART_LIMIT_REACHED
    assert refused.message and refused.suggested_action
    assert isinstance(more, Accepted) and more.cart.line(more.item_id).quantity == 2


def test_properties_merged_into_a_line_cannot_outgrow_the_limit():
    limits = CartLimits(max_property_bytes=100)
    cart = add(Cart("ada"), product(0), limits, properties={"a": "x" * 60}).cart

    refused = add(cart, product(0), limits, properties={"b": "y" * 60})

    assert isinstance(refused, Rejected) and refused.code == ErrorCode.CART_LIMIT_REACHED
    assert cart.lines[0].properties == {"a": "x" * 60}


def test_the_reply_to_reading_the_largest_possible_cart_stays_far_below_the_record_limits():
    settings = Settings()
    limits = CartLimits(max_lines=settings.cart_max_lines, max_property_bytes=settings.properties_max_bytes)
    catalog, cart = {}, Cart("u" * 200)
    for number in range(settings.cart_max_lines):
        item = product(number)
        catalog[item.product_id] = item
        big = {f"k{i:02d}": "v" * (settings.properties_max_bytes // 12) for i in range(10)}
        while not limits.properties_fit(big):
            big.popitem()
        outcome = add(cart, item, limits, properties=big)
        assert isinstance(outcome, Accepted), outcome
        cart = outcome.cart
    assert len(cart.lines) == settings.cart_max_lines

    reply = CommandResult(
        message_id="m" * 200, occurred_at=NOW, correlation_id="c" * 200, causation_id="m" * 200,
        command_type="GetCart", command_message_id="m" * 200, user_id=cart.user_id, success=True,
        data=domain.cart_summary(cart, catalog),
    ).to_json_bytes()

    assert len(reply) < settings.max_message_bytes < settings.producer_max_request_bytes / 2


def test_every_reply_about_the_largest_cart_with_everything_changed_fits_a_default_kafka_record():
    """The worst case a producer can build within the contract: the most lines,
    the longest names and image addresses, full properties, every product renamed
    and repriced and short of stock. Kafka's default largest record is 1 MiB."""
    settings = Settings()
    limits = CartLimits(max_lines=settings.cart_max_lines, max_property_bytes=settings.properties_max_bytes)
    catalog, cart = {}, Cart("u" * 200)
    for number in range(settings.cart_max_lines):
        item = Product(f"p{number:03d}".ljust(200, "x"), "N" * 500, Decimal("9999999999999.99"), image_url="u" * 2000)
        catalog[item.product_id] = item
        properties = {f"k{i:02d}": "v" * (settings.properties_max_bytes // 12) for i in range(10)}
        while not limits.properties_fit(properties):
            properties.popitem()
        cart = domain.add_item(
            cart, item, product_id=item.product_id, quantity=99, size=None, properties=properties,
            new_item_id=f"item-{number:03d}".ljust(200, "i"), now=NOW, limits=limits,
        ).cart
    changed = {pid: replace(p, name="M" * 500, price=Decimal("9999999999999.98")) for pid, p in catalog.items()}
    stock = {domain.stock_key(pid, None): 5 for pid in catalog}
    item_id = cart.lines[0].item_id
    replies = {
        "GetCart": domain.cart_summary(cart, changed, stock, now=NOW),
        "GetCartCount": domain.cart_count(cart, changed, stock),
        "CheckChanges": domain.check_changes(cart, changed, now=NOW, stock=stock).data,
        "AddItem": domain.added_view(cart, item_id, changed, stock, now=NOW),
        "UpdateItemQuantity": domain.updated_view(cart, item_id, changed, stock, now=NOW),
        "AcceptChanges": domain.accept_changes(cart, changed, item_ids=None, now=NOW, stock=stock).data,
        "ValidateCart": domain.validate_cart(cart, changed, item_ids=None, stock=stock).data,
    }

    for kind, data in replies.items():
        reply = CommandResult(
            message_id="m" * 200, occurred_at=NOW, correlation_id="c" * 200, causation_id="m" * 200,
            command_type=kind, command_message_id="m" * 200, user_id=cart.user_id, success=True, data=data,
        ).to_json_bytes()
        assert len(reply) < 0.75 * (1 << 20) <= settings.producer_max_request_bytes, (kind, len(reply))


def test_commands_waiting_behind_a_stock_step_are_bounded():
    from contracts import cart as cart_contract
    from services.cart_worker.domain.saga import MAX_QUEUED_COMMANDS
    from services.cart_worker.handlers import CartLogic
    from services.cart_worker.unit import CartUnit
    from services.runtime.clock import ManualClock

    logic, unit = CartLogic(Settings(), ManualClock(NOW)), CartUnit()
    unit.put_product(Product("p", "Thing", Decimal("1.00")))
    logic.handle(unit, cart_contract.AddItem(message_id="first", occurred_at=NOW, user_id="ann", product_id="p"))
    answers = [
        logic.handle(unit, cart_contract.GetCart(message_id=f"get-{n}", occurred_at=NOW, user_id="ann"))
        for n in range(MAX_QUEUED_COMMANDS + 1)
    ]

    assert all(outputs == [] for outputs in answers[:MAX_QUEUED_COMMANDS]), "queued behind the reservation"
    (refusal,) = answers[-1]
    assert b"CART_LIMIT_REACHED" in refusal.value and len(unit.cart("ann").queue) == MAX_QUEUED_COMMANDS


def test_a_catalog_page_of_products_with_many_long_sizes_ends_early_instead_of_outgrowing_a_record():
    from services.cart_worker.domain import SizeOption

    sizes = tuple(SizeOption(f"{n:03d}".ljust(200, "s"), Decimal("9999999999999.99")) for n in range(200))
    products = [
        Product(f"p{n:03d}".ljust(200, "x"), "N" * 500, Decimal("1.00"), image_url="u" * 2000, sizes=sizes)
        for n in range(51)
    ]

    page = domain.product_page(products, {}, limit=50)
    reply = CommandResult(
        message_id="m", occurred_at=NOW, correlation_id="c", command_type="ListProducts", success=True, data=page
    ).to_json_bytes()

    assert 1 <= len(page["products"]) < 50 and page["next_after"] == page["products"][-1]["product_id"]
    assert len(reply) < (1 << 20) / 2
