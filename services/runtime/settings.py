"""Settings, read from ``CARTFLOW_*`` environment variables (documented in docs/settings.md)."""

from __future__ import annotations

import re
from functools import cached_property
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts import free_form
from contracts.topics import CART_REPLIES, CLIENT_REPLIES_PREFIX, GATEWAY_REPLIES


_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


def default_reply_topic_pattern(prefix: str) -> str:
    """The reply topics a command may name: ``cart.replies``, ``gateway.replies``
    and ``replies.<name>``, under the deployment's prefix."""
    fixed = "|".join(re.escape(name) for name in (CART_REPLIES, GATEWAY_REPLIES))
    return rf"{re.escape(prefix)}(?:{fixed}|{re.escape(CLIENT_REPLIES_PREFIX)}[A-Za-z0-9._-]+)"


def is_topic_name(name: object) -> bool:
    """Whether ``name`` is a legal Kafka topic name ("." and ".." are not)."""
    return isinstance(name, str) and name not in (".", "..") and _TOPIC_NAME.fullmatch(name) is not None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CARTFLOW_", extra="ignore")

    # Backends. Unset URLs mean "start or find them" (see services.ops.backends).
    kafka_bootstrap: str | None = None
    mongo_url: str | None = None
    mongo_db: str = "cartflow"
    backend: Literal["auto", "embedded", "containers", "external"] = Field(
        default="auto", validation_alias="CARTFLOW_TEST_BACKEND"
    )
    data_dir: str = ".cartflow"

    # Kafka client security, passed straight to aiokafka.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None

    # Topics: a prefix lets several deployments (or test runs) share one cluster.
    topic_prefix: str = ""
    topic_partitions: int = Field(default=4, ge=1)
    #: Appended to every consumer group name: a new suffix makes a fresh set of
    #: groups that read every topic from the start (a full replay).
    consumer_group_suffix: str = ""

    # Consumption.
    #: How long a fetch may wait for records. Brokers that answer a fetch only
    #: when this runs out, not when data arrives (Tansu), add up to this much to
    #: every hop; real Kafka answers early, so a low value costs only idle requests.
    kafka_fetch_max_wait_ms: int = Field(default=20, ge=0, le=10_000)
    batch_max_records: int = Field(default=500, ge=1)
    batch_timeout_ms: int = Field(default=2, ge=0)
    retry_max_seconds: float = Field(default=30.0, gt=0)

    # Outbox relay.
    relay_batch_size: int = Field(default=1000, ge=1)
    relay_poll_seconds: float = Field(default=0.5, gt=0)
    relay_lease_seconds: float = Field(default=5.0, gt=0)
    #: How long the relay's lookup of a topic it has not seen may take before it
    #: parks the records addressed to it (one lookup for all such topics of a round).
    relay_topic_wait_seconds: float = Field(default=5.0, gt=0)
    #: Use Kafka's idempotent producer for the relay: no batch is ever given up,
    #: so no later record of a key can overtake an earlier one. Needs a broker
    #: that supports it (Kafka does; the embedded Tansu does not).
    kafka_idempotent_producer: bool = False
    #: Largest record the relay hands to the broker (Kafka's default broker limit
    #: is 1 MiB); a larger one is parked instead of blocking the ones behind it.
    producer_max_request_bytes: int = Field(default=1 << 20, ge=1024)

    # Limits on what producers send.
    #: Largest consumed record; larger ones are dead-lettered unread.
    max_message_bytes: int = Field(default=256 * 1024, ge=1024)
    #: ``reply_to`` must fully match this regular expression (default: the two
    #: reply topics of the contract, ``cart.replies`` and ``gateway.replies``, or
    #: a topic of the client's own under ``replies.``, all under the topic prefix:
    #: what literal and prefixed Kafka ACLs express); otherwise the command is
    #: refused with INVALID_MESSAGE on the default reply topic.
    reply_topic_pattern: str | None = None
    #: Free-form objects (an item's ``properties``, a shipping address): at most
    #: this many keys, this many bytes as JSON and this much nesting. The
    #: gateway holds requests to the same limits (see contracts.free_form).
    properties_max_keys: int = Field(default=free_form.MAX_KEYS, ge=1)
    properties_max_bytes: int = Field(default=free_form.MAX_BYTES, ge=64)
    properties_max_depth: int = Field(default=free_form.MAX_DEPTH, ge=1, le=50)

    # Cart rules.
    #: The dedup window: inbox entries older than this are pruned, and a message
    #: seen again after that is processed afresh.
    inbox_retention_hours: float = Field(default=168, gt=0)
    inbox_prune_interval_seconds: float = Field(default=600, gt=0)
    #: How long what is finished stays, for operators and late questions (pruned
    #: with the inbox): paid or cancelled checkouts (``GetCheckout`` then answers
    #: CHECKOUT_NOT_FOUND), released or expired reservations (a late command
    #: about one then gets RESERVATION_NOT_FOUND), and empty carts.
    #: Count the bytes of every MongoDB write (logged when the worker stops; the
    #: benchmarks turn it on: it costs one more encoding of each write).
    mongo_measure_write_bytes: bool = False
    finished_checkout_retention_hours: float = Field(default=720, gt=0)
    #: How long a charge is remembered as answered (a year by default): well
    #: beyond the checkouts, so a charge the payment provider announces again
    #: after its checkout was pruned is not refunded a second time.
    charge_retention_hours: float = Field(default=8760, gt=0)
    closed_reservation_retention_hours: float = Field(default=168, gt=0)
    empty_cart_retention_hours: float = Field(default=168, gt=0)
    cart_item_max_quantity: int = Field(default=99, ge=1)
    #: The payment gateway of a checkout command that names none.
    checkout_default_gateway: str = Field(default="stripe", min_length=1, max_length=200)
    #: Lines one cart may hold; an add beyond it is refused with CART_LINE_LIMIT_REACHED.
    cart_max_lines: int = Field(default=100, ge=1, le=1000)
    #: Reserve stock when an item goes into a cart (off: stock is reserved at checkout).
    cart_stock_reservation_enabled: bool = True
    #: Seconds a cart reservation lives without the line changing.
    cart_reservation_ttl: int = Field(default=3600, ge=1)
    #: Seconds a command waits for the stock worker before RESERVATION_FAILED.
    stock_reply_timeout_seconds: float = Field(default=10.0, gt=0)
    cart_pending_sweep_seconds: float = Field(default=0.5, gt=0)

    # Cart housekeeping and notifications (notifications.events).
    #: Alert buyers to changes found by the periodic check (CartChangeAlert, StockAlert).
    cart_change_notifications_enabled: bool = True
    #: Hours between two change checks of a cart with items.
    cart_change_check_interval_hours: float = Field(default=1.0, gt=0)
    #: Take lines that became unavailable out of the cart during the change check.
    cart_auto_remove_unavailable: bool = False
    #: Send AbandonedCartReminder after this many days without activity.
    cart_abandoned_notifications_enabled: bool = True
    cart_abandoned_threshold_days: float = Field(default=7.0, gt=0)
    #: Empty a cart (releasing its stock) after this many days without activity.
    cart_session_timeout_days: float = Field(default=30.0, gt=0)
    #: Seconds between two looks for carts whose housekeeping moment has come.
    cart_housekeeping_sweep_seconds: float = Field(default=30.0, gt=0)

    # Stock.
    stock_expiry_sweep_seconds: float = Field(default=1.0, gt=0)

    # Checkout.
    #: Seconds a buyer has to pay after checking out.
    payment_timeout_seconds: float = Field(default=900, gt=0)
    #: Whether a failed payment cancels at once (otherwise the buyer may retry until the deadline).
    checkout_cancel_on_payment_failure: bool = False
    #: The safety net fires deadlines this long overdue whose timeout message was lost.
    checkout_deadline_grace_seconds: float = Field(default=5.0, ge=0)
    checkout_deadline_sweep_seconds: float = Field(default=5.0, gt=0)

    # Observability.
    log_level: str = "INFO"
    #: "json" (one object per line, with correlation_id, message_id and type) or "text".
    log_format: Literal["json", "text"] = "json"
    #: Serve /metrics, /healthz and /readyz on this port (off when unset).
    http_port: int | None = Field(default=None, ge=0, le=65535)
    http_host: str = "0.0.0.0"

    # The HTTP gateway (services/gateway): the original carts app's REST API.
    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8000, ge=0, le=65535)
    #: HS256 key of the bearer tokens; or, for RS256, the PEM public key below.
    gateway_jwt_secret: SecretStr | None = None
    gateway_jwt_public_key: str | None = None
    gateway_jwt_audience: str | None = None
    gateway_jwt_issuer: str | None = None
    #: How long a request waits for its reply before answering 504 (retry with its Idempotency-Key).
    gateway_reply_timeout_seconds: float = Field(default=10.0, gt=0)
    #: Largest request body, in bytes (larger: 413).
    gateway_max_body_bytes: int = Field(default=64 << 10, ge=1024)
    #: Seconds a client may take over a request's headers, and then over its body
    #: (a slower one is closed: 408 for a body).
    gateway_header_timeout_seconds: float = Field(default=10.0, gt=0)
    gateway_body_timeout_seconds: float = Field(default=10.0, gt=0)
    #: Connections one gateway process holds at once; beyond them a request is answered 503.
    gateway_max_connections: int = Field(default=1000, ge=1)
    #: Development only: POST /api/payments/<id>/simulate/ publishes a payment outcome.
    #: Off unless set; the gateway refuses to start with it on a non-loopback address.
    payment_simulator: bool = False
    #: The signing secret of the Stripe webhook endpoint (``whsec_…``): POST
    #: /api/payments/webhook/ answers 404 until it is set.
    stripe_webhook_secret: SecretStr | None = None
    #: Seconds a Stripe-Signature timestamp may lie in the past (Stripe's own default).
    stripe_webhook_tolerance_seconds: int = Field(default=300, ge=1)
    #: The ISO 4217 code of the shop's prices (cartflow's amounts carry none): a
    #: payment the provider reports in another currency is refused, not taken.
    currency: str = Field(default="usd", pattern=r"^[A-Za-z]{3}$")
    #: A background task (relay, sweep, timer consumer) failing without a break
    #: for this long makes /healthz fail, so that an orchestrator restarts the worker.
    task_unhealthy_after_seconds: float = Field(default=120.0, gt=0)
    #: Seconds between two refreshes of the lag, outbox and dead-letter gauges.
    metrics_refresh_seconds: float = Field(default=10.0, gt=0)
    #: Export OpenTelemetry spans: "none", "otlp" (OTEL_EXPORTER_OTLP_* variables) or "console".
    tracing_exporter: Literal["none", "otlp", "console"] = "none"

    def topic(self, name: str) -> str:
        return self.topic_prefix + name

    @field_validator("stripe_webhook_secret", mode="before")
    @classmethod
    def _blank_is_unset(cls, secret: object) -> object:
        # ``CARTFLOW_STRIPE_WEBHOOK_SECRET=`` in an env file means no secret, not an empty one.
        if isinstance(secret, str):
            return secret.strip() or None
        return secret

    @field_validator("reply_topic_pattern")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            re.compile(pattern)  # a typo fails at start-up, not on the first command
        return pattern

    @cached_property
    def reply_topic_regex(self) -> re.Pattern[str]:
        pattern = self.reply_topic_pattern or default_reply_topic_pattern(self.topic_prefix)
        return re.compile(pattern)

    def reply_topic_allowed(self, name: object) -> bool:
        """Whether a producer may have its answers sent to topic ``name``."""
        return is_topic_name(name) and self.reply_topic_regex.fullmatch(name) is not None  # type: ignore[arg-type]

    @cached_property
    def free_form_limits(self) -> free_form.FreeFormLimits:
        return free_form.FreeFormLimits(self.properties_max_keys, self.properties_max_bytes, self.properties_max_depth)

    def group_id(self, worker: str) -> str:
        return f"{self.topic_prefix}cartflow-{worker}{self.consumer_group_suffix}"

    @cached_property
    def kafka_client_options(self) -> dict[str, object]:
        options: dict[str, object] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_sasl_mechanism:
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = self.kafka_sasl_username
            options["sasl_plain_password"] = (
                self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None
            )
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            options["ssl_context"] = create_ssl_context()
        return options
