// The storefront and the payment page: plain JavaScript against the original
// carts app's REST API (/api/carts/...), as its documented client calls it.
// Product data is shown with textContent only: nothing from the API becomes markup.
"use strict";

const Api = {
  token() { return localStorage.getItem("authToken"); },

  async call(method, path, body, idempotencyKey) {
    const headers = { "Content-Type": "application/json" };
    if (this.token()) headers["Authorization"] = `Bearer ${this.token()}`;
    // One key per user action: a retry of the same action is answered, not repeated.
    headers["Idempotency-Key"] = idempotencyKey || crypto.randomUUID();
    for (let attempt = 0; ; attempt++) {
      const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      let result = {};
      try { result = await response.json(); } catch (e) { result = { success: false, error_message: `HTTP ${response.status}` }; }
      if (response.status === 401) Page.signedOut();
      // No answer in time, or not sent: ask again with the same key, which never acts twice.
      if ((response.status === 504 || response.status === 503) && attempt < 3) {
        headers["Idempotency-Key"] = result.idempotency_key || headers["Idempotency-Key"];
        await new Promise((resolve) => setTimeout(resolve, 500 * (attempt + 1)));
        continue;
      }
      return { ok: response.ok && result.success !== false, status: response.status, result };
    }
  },
};

const Page = {
  el(id) { return document.getElementById(id); },
  text(id, value) { const node = this.el(id); if (node) node.textContent = value; },
  say(message) { this.text("message", message); this.text("error", ""); },
  fail(result) { this.text("message", ""); this.text("error", result.error_message || "An error occurred"); },
  cell(row, value) { const td = document.createElement("td"); td.textContent = value ?? ""; row.appendChild(td); return td; },
  button(parent, label, onClick, cls) {
    const b = document.createElement("button"); b.textContent = label; if (cls) b.className = cls;
    b.addEventListener("click", onClick); parent.appendChild(b); return b;
  },
  signedOut() {
    localStorage.removeItem("authToken");
    if (this.el("login")) { this.el("login").hidden = false; this.el("shop").hidden = true; }
  },
};

const Storefront = {
  async start() {
    Page.el("login-form").addEventListener("submit", (e) => { e.preventDefault(); this.login(Page.el("login-user").value); });
    Page.el("token-form").addEventListener("submit", (e) => {
      e.preventDefault(); localStorage.setItem("authToken", Page.el("login-token").value.trim()); this.enter();
    });
    Page.el("accept-changes").addEventListener("click", () => this.acceptChanges());
    Page.el("checkout-full").addEventListener("click", () => this.checkout(null));
    if (Api.token()) await this.enter();
  },

  async login(user) {
    const { ok, result } = await Api.call("POST", "/api/dev/login/", { user_id: user });
    if (!ok) { Page.fail(result.error_message ? result : { error_message: "Development sign-in is not available: paste a token" }); return; }
    localStorage.setItem("authToken", result.token);
    await this.enter();
  },

  async enter() {
    Page.el("login").hidden = true;
    Page.el("shop").hidden = false;
    await Promise.all([this.loadProducts(), this.loadCart()]);
    // /cart/ is where the original front end sends a buyer back to: show the cart.
    if (window.location.pathname === "/cart/") Page.el("cart-section").scrollIntoView();
  },

  async loadProducts() {
    const { ok, result } = await Api.call("GET", "/api/products/?limit=50");
    if (!ok) { Page.fail(result); return; }
    const body = Page.el("products").querySelector("tbody");
    body.replaceChildren();
    for (const product of result.products) {
      const row = document.createElement("tr");
      row.dataset.productId = product.product_id;
      Page.cell(row, product.name);
      Page.cell(row, product.price);
      Page.cell(row, product.sizes.length ? "by size" : (product.available_quantity ?? "–"));
      const sizeCell = Page.cell(row, "");
      let sizeSelect = null;
      if (product.sizes.length) {
        sizeSelect = document.createElement("select");
        sizeSelect.className = "size";
        for (const size of product.sizes) {
          const option = document.createElement("option");
          option.value = size.size;
          option.textContent = `${size.size} (${size.price}, ${size.available_quantity ?? "?"} left)`;
          sizeSelect.appendChild(option);
        }
        sizeCell.appendChild(sizeSelect);
      }
      const quantity = document.createElement("input");
      quantity.type = "number"; quantity.min = "1"; quantity.value = "1"; quantity.className = "quantity";
      Page.cell(row, "").appendChild(quantity);
      Page.button(Page.cell(row, ""), "Add to cart", () => this.add(product.product_id, quantity.value, sizeSelect && sizeSelect.value), "add");
      body.appendChild(row);
    }
  },

  async add(productId, quantity, size) {
    const { ok, result } = await Api.call("POST", "/api/carts/add/", {
      product_id: productId, quantity: Number(quantity), size: size || null,
    });
    if (!ok) { Page.fail(result); return; }
    Page.text("cart-counter", result.cart_summary.total_items);
    Page.say("Item added to cart");
    await this.loadCart();
  },

  cartRequests: 0,

  async loadCart() {
    // Answers may overtake each other: only the latest request's answer is shown.
    const request = ++this.cartRequests;
    const { ok, result } = await Api.call("GET", "/api/carts/");
    if (request !== this.cartRequests) return;
    if (!ok) { Page.fail(result); return; }
    Page.text("cart-counter", result.total_items);
    Page.text("cart-total", result.total_amount);
    Page.text("cart-items", result.total_items);
    Page.el("changes-banner").hidden = !result.has_changes;
    this.fill(Page.el("cart").querySelector("tbody"), result.items, true);
    this.fill(Page.el("unavailable").querySelector("tbody"), result.unavailable_items, false);
  },

  fill(body, items, buyable) {
    body.replaceChildren();
    for (const item of items) {
      const row = document.createElement("tr");
      row.dataset.itemId = item.id;
      Page.cell(row, item.product.name);
      Page.cell(row, item.size || "");
      Page.cell(row, item.product.current_price);
      const quantity = document.createElement("input");
      quantity.type = "number"; quantity.min = "1"; quantity.value = item.quantity; quantity.className = "quantity";
      quantity.addEventListener("change", () => this.update(item.id, quantity.value));
      Page.cell(row, "").appendChild(quantity);
      Page.cell(row, item.line_total);
      const changes = [];
      if (item.changes.price) changes.push(`price ${item.changes.price.old} → ${item.changes.price.new}`);
      if (item.changes.name) changes.push(`renamed to ${item.changes.name.new}`);
      if (item.changes.availability) changes.push(item.changes.availability.reason);
      Page.cell(row, changes.join("; ")).className = "changed";
      const actions = Page.cell(row, "");
      if (buyable) Page.button(actions, "Check out", () => this.checkout(item.id), "checkout-single");
      Page.button(actions, "Remove", () => this.remove(item.id), "remove");
      body.appendChild(row);
    }
  },

  async update(itemId, quantity) {
    const { ok, result } = await Api.call("PUT", `/api/carts/update/${encodeURIComponent(itemId)}/`, { quantity: Number(quantity) });
    if (!ok) Page.fail(result); else Page.say(result.message);
    await this.loadCart();
  },

  async remove(itemId) {
    const { ok, result } = await Api.call("DELETE", `/api/carts/remove/${encodeURIComponent(itemId)}/`);
    if (!ok) Page.fail(result); else Page.say(result.message);
    await this.loadCart();
  },

  async acceptChanges() {
    const { ok, result } = await Api.call("POST", "/api/cart/accept_changes/", {});
    if (!ok) Page.fail(result); else Page.say(result.message);
    await this.loadCart();
  },

  async checkout(itemId) {
    const body = { payment_method: "credit_card", gateway_name: "stripe", shipping_address: { city: "Khartoum" } };
    const path = itemId ? "/api/carts/checkout/single/" : "/api/carts/checkout/full/";
    if (itemId) body.cart_item_id = itemId;
    const { ok, result } = await Api.call("POST", path, body);
    if (!ok) { Page.fail(result); await this.loadCart(); return; }
    window.location.href = `/payment/${encodeURIComponent(result.payment_id)}/`;
  },
};

const Payment = {
  paymentId: null,
  timer: null,
  // One key per outcome while the page is open: a second click on Pay is the same payment.
  keys: { succeeded: crypto.randomUUID(), failed: crypto.randomUUID() },

  async start() {
    this.paymentId = decodeURIComponent(window.location.pathname.split("/")[2] || "");
    Page.text("payment-id", this.paymentId);
    Page.el("pay").addEventListener("click", () => this.simulate("succeeded"));
    Page.el("fail").addEventListener("click", () => this.simulate("failed"));
    await this.refresh();
  },

  async refresh() {
    const { ok, result } = await Api.call("GET", `/api/payments/${encodeURIComponent(this.paymentId)}/`);
    if (!ok) { Page.fail(result); return; }
    Page.text("payment-state", result.state);
    Page.text("payment-amount", result.total_amount);
    const body = Page.el("orders").querySelector("tbody");
    body.replaceChildren();
    for (const order of result.orders) {
      const row = document.createElement("tr");
      for (const value of [order.order_id, order.product_name, order.quantity, order.total_price, order.status]) Page.cell(row, value);
      body.appendChild(row);
    }
    if (result.state === "awaiting_payment") {
      this.countdown(result.time_remaining_seconds);
    } else {
      this.stop();
      Page.el("pay").disabled = Page.el("fail").disabled = true;
      Page.text("final", result.is_paid ? "Paid: your orders are confirmed."
        : result.is_cancelled ? `Cancelled (${result.cancel_reason}): the reserved stock was released.`
        : "Payment received; confirming your orders…");
      if (!result.is_paid && !result.is_cancelled) setTimeout(() => this.refresh(), 1000);
    }
  },

  countdown(remainingSeconds) {
    // As the original's client does: a countdown from time_remaining_seconds.
    this.stop();
    const show = () => {
      const minutes = Math.floor(Math.max(remainingSeconds, 0) / 60);
      const seconds = Math.max(remainingSeconds, 0) % 60;
      Page.text("payment-timer", `${minutes}:${seconds.toString().padStart(2, "0")}`);
    };
    show();
    this.timer = setInterval(() => {
      remainingSeconds--;
      show();
      if (remainingSeconds <= 0) {
        this.stop();
        Page.text("final", "Payment time expired.");
        setTimeout(() => this.refresh(), 1500);
      }
    }, 1000);
  },

  stop() { if (this.timer) clearInterval(this.timer); this.timer = null; },

  async simulate(outcome) {
    const { ok, result } = await Api.call("POST", `/api/payments/${encodeURIComponent(this.paymentId)}/simulate/`, { outcome }, this.keys[outcome]);
    if (!ok) { Page.fail(result); return; }
    Page.say(result.message);
    setTimeout(() => this.refresh(), 800);
  },
};

// Started from here, not from an inline script: the Content-Security-Policy allows none.
document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "storefront") Storefront.start();
  else if (page === "payment") Payment.start();
});
