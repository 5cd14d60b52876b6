"""The storefront and the payment page in a real browser: Playwright drives
Debian's Chromium through the gateway on the real broker and workers. A buyer
signs in, adds two products, changes a quantity, checks out one line and pays
it, then checks out the rest and watches the countdown run out. Screenshots
land in docs/."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from harness.deployment import running
from harness.support import stock_product, stocked

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DOCS = Path(__file__).resolve().parents[2] / "docs"
DEADLINE_SECONDS = 8
#: Flags for a machine without a display or outside network (Chromium's background
#: connections would only be refused).
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed (make test installs it)")
async def test_a_buyer_shops_checks_out_pays_and_watches_a_second_checkout_expire(backends, tmp_path):
    from playwright.async_api import async_playwright, expect

    async with running(
        backends,
        CARTFLOW_PAYMENT_TIMEOUT_SECONDS=str(DEADLINE_SECONDS),
        CARTFLOW_CHECKOUT_DEADLINE_GRACE_SECONDS="2",
        CARTFLOW_CHECKOUT_DEADLINE_SWEEP_SECONDS="1",
        CARTFLOW_PAYMENT_SIMULATOR="true",
        CARTFLOW_DATA_DIR=str(tmp_path),  # no key configured: the development secret and its login
    ) as deployment:
        mug = await stocked(deployment, 10, "12.50", "Enamel mug")
        shirt = await stock_product(deployment, {"M": 5, "L": 5}, price="30.00")
        url = await deployment.gateway()

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = await browser.new_page(viewport={"width": 1100, "height": 800})
            try:
                await page.goto(url + "/")
                await page.fill("#login-user", "ada")
                await page.click("#login-button")
                mug_row = page.locator(f'#products tr[data-product-id="{mug}"]')
                shirt_row = page.locator(f'#products tr[data-product-id="{shirt}"]')
                await expect(mug_row).to_be_visible()

                await mug_row.locator("input.quantity").fill("2")
                await mug_row.locator("button.add").click()
                await expect(page.locator("#cart-counter")).to_have_text("2")
                await shirt_row.locator("select.size").select_option("L")
                await shirt_row.locator("button.add").click()
                await expect(page.locator("#cart-counter")).to_have_text("3")
                await expect(page.locator("#cart tbody tr")).to_have_count(2)
                await expect(page.locator("#cart-total")).to_have_text("55.00")

                mug_line = page.locator("#cart tbody tr", has_text="Enamel mug")
                await mug_line.locator("input.quantity").fill("3")
                await mug_line.locator("input.quantity").dispatch_event("change")
                await expect(page.locator("#message")).to_have_text("Cart item updated successfully")
                await expect(page.locator("#cart-total")).to_have_text("67.50")
                await page.screenshot(path=str(DOCS / "storefront.png"))

                too_many = shirt_row.locator("input.quantity")
                await too_many.fill("50")
                await shirt_row.locator("button.add").click()
                await expect(page.locator("#error")).to_have_text("Cannot add 50 more. Only 4 more available")

                await mug_line.locator("button.checkout-single").click()
                await page.wait_for_url("**/payment/**")
                await expect(page.locator("#payment-state")).to_have_text("awaiting_payment")
                await expect(page.locator("#payment-amount")).to_have_text("37.50")
                await page.screenshot(path=str(DOCS / "payment.png"))
                await page.click("#pay")
                await expect(page.locator("#payment-state")).to_have_text("paid", timeout=30_000)
                await expect(page.locator("#final")).to_contain_text("Paid")

                await page.goto(url + "/")
                await expect(page.locator("#cart-counter")).to_have_text("1")
                await page.click("#checkout-full")
                await page.wait_for_url("**/payment/**")
                await expect(page.locator("#payment-timer")).to_have_text(re.compile(r"^0:0[0-8]$"))
                await expect(page.locator("#payment-state")).to_have_text("cancelled", timeout=60_000)
                await expect(page.locator("#final")).to_contain_text("released")
                await page.screenshot(path=str(DOCS / "payment-expired.png"))
            finally:
                await browser.close()

        level = await deployment.db["stock.levels"].find_one({"_id": f"{shirt}|L"})
        assert level["reserved"] == 0 and level["sold"] == 0, "the expired checkout gave its shirt back"
        sold = await deployment.db["stock.levels"].find_one({"_id": f"{mug}|"})
        assert sold["sold"] == 3
