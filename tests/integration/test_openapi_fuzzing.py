"""The gateway's OpenAPI document as a new client finds it: Schemathesis with
every check and a fixed seed against a gateway on the real broker and workers,
every phase included (examples, coverage, fuzzing, stateful along the
document's links). What the configuration accepts beside the defaults, and why,
is written in tests/integration/schemathesis.toml."""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
import uuid
from pathlib import Path

import jwt
import pytest

from harness.deployment import running
from harness.support import stock_product

pytestmark = pytest.mark.integration

CONFIG = Path(__file__).with_name("schemathesis.toml")
SECRET = "schemathesis-secret-" + uuid.uuid4().hex
SCHEMATHESIS = shutil.which("schemathesis", path=str(Path(sys.executable).parent))


async def test_schemathesis_finds_no_failure_in_any_phase_of_the_gateway_s_document(backends):
    async with running(
        backends, CARTFLOW_GATEWAY_JWT_SECRET=SECRET, CARTFLOW_STRIPE_WEBHOOK_SECRET="whsec_" + uuid.uuid4().hex
    ) as deployment:
        url = await deployment.gateway()
        # The products the document's examples name, so that its examples (and the links from them) succeed.
        await stock_product(deployment, {"42": 10_000, "43": 10_000}, price="74.99", product_id="sku-trail-shoe")
        token = jwt.encode({"sub": "schemathesis", "exp": int(time.time()) + 3600}, SECRET, algorithm="HS256")
        run = await asyncio.create_subprocess_exec(
            SCHEMATHESIS or "schemathesis", "--config-file", str(CONFIG), "run", f"{url}/openapi.json", "--url", url,
            "--checks", "all", "--seed", "20261207", "-H", f"Authorization: Bearer {token}", "--no-color",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await run.communicate()

    report = output.decode(errors="replace")
    assert run.returncode == 0, report[-6000:]
    assert "Stateful" in report, "every phase ran, the stateful one included"
