"""A short chaos run: a mixed workload while workers and MongoDB are SIGKILLed and
timer messages are lost, then every invariant of harness/chaos.py must hold.
``make chaos`` runs the same harness longer."""

from __future__ import annotations

import pytest

from harness.chaos import ChaosConfig, run_chaos
from services.ops.embedded import EmbeddedMongo
from harness.deployment import LOG_DIR

pytestmark = pytest.mark.chaos


async def test_every_invariant_holds_after_workers_and_the_database_are_killed_under_load(backends, tmp_path):
    if backends.kind != "embedded":
        pytest.skip("needs a database this test can kill and restart")
    mongo = EmbeddedMongo(storage_path=tmp_path / "mongo", log_path=LOG_DIR / "chaos-mongo.log")
    mongo.start()
    try:
        # A fault every 4 to 8 s: enough of each kind in a minute, with time between
        # them for buyers to reach checkouts (a killed worker takes seconds to rejoin).
        config = ChaosConfig(duration=60, users=10, fault_every=(4.0, 8.0), seed=11)
        report = await run_chaos(backends.kafka_bootstrap, mongo, LOG_DIR, config, echo=print)
    finally:
        mongo.stop()

    print(report.markdown())
    assert sum(report.faults.values()) >= 4, report.faults
    # Enough happened for the invariants to mean something; how much happens in
    # 60 s with the database killed every few seconds depends on the machine.
    assert report.checkouts > 0 and report.commands >= 30, (report.checkouts, report.commands)
    charges = next(i for i in report.invariants if i.name.startswith("per distinct charge"))
    assert charges.checked > 0, "no charge was made: the money invariant saw nothing"
    for invariant in report.invariants:
        assert invariant.holds, (invariant.name, invariant.violations[:5])
