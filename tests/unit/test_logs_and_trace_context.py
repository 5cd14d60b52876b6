"""Worker logs are JSON lines that name the message being handled and never
show a credential."""

import io
import json
import logging

from contracts.envelope import new_message_id
from services.runtime.observability import MessageContext, handling, mask_credentials
from services.runtime.records import Outgoing


class Handled:
    type = "AddItem"

    def __init__(self) -> None:
        self.message_id = new_message_id()
        self.correlation_id = "order-flow-7"


def json_logger() -> tuple[logging.Logger, io.StringIO]:
    from pythonjsonlogger.json import JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("%(levelname)s %(name)s %(message)s"))
    handler.addFilter(MessageContext())
    logger = logging.getLogger("cartflow.test")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


def test_a_log_line_written_while_handling_a_message_names_it():
    logger, stream = json_logger()
    message = Handled()

    with handling("cart", (), message):
        logger.warning("something to look at")
    logger.warning("outside any message")

    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["message_id"] == message.message_id
    assert inside["correlation_id"] == "order-flow-7" and inside["type"] == "AddItem"
    assert "message_id" not in outside


def test_credentials_in_urls_are_masked_in_logs():
    logger, stream = json_logger()

    logger.info("connecting to %s", "mongodb://cart:s3cret@db.internal:27017/?replicaSet=rs0")

    line = json.loads(stream.getvalue())
    assert "s3cret" not in line["message"] and "mongodb://cart:***@db.internal" in line["message"]
    assert mask_credentials("kafka:9092") == "kafka:9092"


def test_records_produced_while_handling_carry_the_callers_trace():
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    headers = (("traceparent", f"00-{trace_id}-00f067aa0ba902b7-01".encode()),)

    with handling("cart", headers, Handled()) as stamp:
        (out,) = stamp([Outgoing("cart.replies", b"ann", b"{}")])

    assert dict(out.headers)["traceparent"].decode().split("-")[1] == trace_id
