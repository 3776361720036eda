// raymall storefront: hash routes over the public JSON API (see deployments/web_routes.py).
"use strict";

const view = () => document.getElementById("main");
let leaving = []; // cleanups of the current page (event streams, timers)

function show(title, ...nodes) {
  const main = view();
  main.replaceChildren(h("h1", { tabindex: "-1", id: "page-title" }, title), ...nodes.filter(n => n !== null && n !== undefined));
  document.title = title + " · raymall";
  document.getElementById("page-title").focus({ preventScroll: true });
}
function loading() { view().replaceChildren(h("p", { class: "muted", role: "status" }, "Loading…")); }
function go(hash) { location.hash = hash; }
function thumb(src, alt) {
  return h("div", { class: "thumb" }, src ? h("img", { src, alt: alt || "" }) : h("span", {}, "no image"));
}
function productCard(p) {
  const id = p.id || p.product_id;
  return h("li", { class: "card", "data-product-id": id },
    thumb(p.image || (p.images || [])[0], ""),
    h("h3", {}, h("a", { href: "#/p/" + id }, p.title)),
    h("div", { class: "price" }, money(p.min_price_cents !== undefined ? p.min_price_cents : p.price_cents)),
    p.in_stock === false ? h("div", { class: "bad" }, "Out of stock") : null);
}

function renderNav() {
  const nav = document.getElementById("account-links");
  const c = Api.claims();
  nav.replaceChildren(
    h("a", { href: "#/flash" }, "Flash sales"),
    h("a", { href: "#/cart" }, "Cart"),
    ...(c ? [h("a", { href: "#/orders" }, "Orders"), h("a", { href: "#/notifications" }, "Notifications"),
      h("a", { href: "#/account" }, "Account"),
      h("a", { href: "#/", id: "sign-out", onclick: async (e) => { e.preventDefault(); await Api.logout(); renderNav(); go("#/"); } }, "Sign out")]
      : [h("a", { href: "#/login", id: "sign-in-link" }, "Sign in")]));
}

// ---- browse -------------------------------------------------------------------------
async function pageHome(params) {
  const [cats, brands] = await Promise.all([
    Api.call("GET", "/categories").catch(() => ({ items: [] })),
    Api.call("GET", "/brands").catch(() => ({ items: [] }))]);
  const flat = [];
  (function walk(nodes, depth) {
    for (const n of nodes || []) { flat.push([n.id, "\u00a0".repeat(depth * 2) + n.name]); walk(n.children, depth + 1); }
  })(cats.items || cats, 0);
  const sel = (id, label, options, value) => field(label, h("select", { id, name: id },
    h("option", { value: "" }, "All"),
    options.map(([v, t]) => h("option", { value: v, selected: String(v) === value }, t))));
  const sort = params.get("sort") || "newest";
  const form = h("form", { class: "filters row", "aria-label": "Filter products" },
    sel("category_id", "Category", flat, params.get("category_id") || ""),
    sel("brand_id", "Brand", (brands.items || brands).map(b => [b.id, b.name]), params.get("brand_id") || ""),
    field("Sort by", h("select", { id: "sort", name: "sort" },
      [["newest", "Newest"], ["sales", "Best selling"], ["price_asc", "Price: low to high"], ["price_desc", "Price: high to low"]]
        .map(([v, t]) => h("option", { value: v, selected: v === sort }, t)))),
    h("div", {}, h("button", { type: "submit" }, "Apply")));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const k of ["category_id", "brand_id", "sort"]) { const v = form.elements[k].value; if (v) q.set(k, v); }
    go("#/?" + q.toString());
  });
  const q = new URLSearchParams();
  for (const k of ["category_id", "brand_id", "sort", "page"]) if (params.get(k)) q.set(k, params.get(k));
  q.set("size", "12");
  const data = await Api.call("GET", "/products?" + q.toString());
  const page = Number(params.get("page") || 1);
  const pager = h("div", { class: "pager" },
    page > 1 ? h("a", { href: "#/?" + withParam(params, "page", page - 1) }, "Previous page") : null,
    data.items.length === 12 ? h("a", { href: "#/?" + withParam(params, "page", page + 1) }, "Next page") : null);
  const sales = await Api.call("GET", "/flash-sales").catch(() => ({ items: [] }));
  show("Shop", flashBanner(sales), form,
    h("p", { class: "muted", id: "result-count" }, `${data.total} products`),
    h("ul", { class: "grid", id: "products" }, data.items.map(productCard)), pager);
}
function withParam(params, k, v) { const q = new URLSearchParams(params); q.set(k, v); return q.toString(); }
function flashBanner(sales) {
  if (!sales.items || !sales.items.length) return null;
  const s = sales.items[0];
  return h("p", { class: "notice" }, h("span", { class: "hot" }, "Flash sale: "),
    h("a", { href: "#/flash/" + s.id }, s.title || s.product_title), ` at ${money(s.price_cents)} (${s.status})`);
}

async function pageSearch(params) {
  const q = params.get("q") || "";
  const data = await Api.call("GET", "/search?" + new URLSearchParams({ q, mode: "hybrid", size: "20" }));
  show(`Search: ${q}`, h("p", { class: "muted", id: "result-count" }, `${data.total} results (${data.mode})`),
    h("ul", { class: "grid", id: "products" }, data.items.map(productCard)));
}

async function pageProduct(id) {
  const p = await Api.call("GET", "/products/" + id);
  const skus = p.skus || [];
  const choose = h("select", { id: "sku", name: "sku" }, skus.map(s => h("option", { value: s.id },
    `${Object.values(s.specs || {}).join(" / ") || s.code} · ${money(s.price_cents)}`)));
  const avail = h("p", { id: "availability", "aria-live": "polite" });
  const qty = h("input", { id: "qty", type: "number", min: "1", value: "1", inputmode: "numeric" });
  const msg = h("div", { "aria-live": "polite" });
  const price = h("p", { class: "price big", id: "price" });
  function update() {
    const s = skus.find(x => String(x.id) === choose.value);
    if (!s) return;
    price.textContent = money(s.price_cents);
    avail.className = s.available > 0 ? "ok" : "bad";
    avail.textContent = s.available > 0 ? `In stock: ${s.available} available` : "Out of stock";
  }
  choose.addEventListener("change", update);
  const add = h("button", { id: "add-to-cart", type: "button", onclick: async () => {
    msg.replaceChildren();
    try {
      await Api.ensureGuestCart();
      await Api.call("POST", "/cart/items", { sku_id: Number(choose.value), quantity: Number(qty.value) || 1 });
      msg.append(h("p", { class: "notice", role: "status" }, "Added to cart. ", h("a", { href: "#/cart" }, "View cart")));
    } catch (e) { msg.append(errorBox(e)); }
  } }, "Add to cart");
  const similar = h("ul", { class: "grid", id: "similar" });
  show(p.title,
    h("div", { class: "media" },
      thumb((p.images || [])[0], p.title),
      h("div", {},
        h("p", { class: "muted" }, [p.brand && p.brand.name, p.category && p.category.name].filter(Boolean).join(" · ")),
        price, field("Option", choose), field("Quantity", qty), avail, h("p", {}, add), msg)),
    h("p", {}, p.description || ""),
    h("h2", {}, "Similar products"), similar);
  update();
  Api.call("GET", `/products/${id}/similar?k=6`).then(r => similar.replaceChildren(...r.items.map(productCard)))
    .catch(() => similar.replaceChildren(h("li", { class: "muted" }, "No suggestions right now.")));
  // live availability: the detail read follows the shards' read model; look again every 5 s
  const timer = setInterval(async () => {
    try {
      const fresh = await Api.call("GET", "/products/" + id);
      for (const s of fresh.skus || []) { const old = skus.find(x => x.id === s.id); if (old) old.available = s.available; }
      update();
    } catch (e) { /* keep the last */ }
  }, 5000);
  leaving.push(() => clearInterval(timer));
}

// ---- cart, sign-in, checkout ---------------------------------------------------------
async function pageCart() {
  if (!Api.signedIn() && !Api.cartToken()) { show("Cart", h("p", {}, "Your cart is empty.")); return; }
  const cart = await Api.call("GET", "/cart");
  if (!cart.items.length) { show("Cart", h("p", { id: "cart-empty" }, "Your cart is empty.")); return; }
  const rows = cart.items.map(line => {
    const qty = h("input", { type: "number", min: "1", value: line.quantity, "aria-label": `Quantity of ${line.title}` });
    qty.addEventListener("change", async () => {
      await Api.call("PUT", `/cart/items/${line.sku_id}`, { quantity: Number(qty.value) }); route();
    });
    return h("tr", {},
      h("td", {}, h("a", { href: "#/p/" + line.product_id }, line.title || ("SKU " + line.sku_id)),
        line.problem ? h("div", { class: "bad" }, line.problem.replace(/_/g, " ")) : null),
      h("td", {}, qty), h("td", {}, money(line.unit_price_cents)), h("td", {}, money(line.line_total_cents)),
      h("td", {}, h("button", { class: "secondary", type: "button", onclick: async () => {
        await Api.call("DELETE", `/cart/items/${line.sku_id}`); route(); } }, "Remove")));
  });
  show("Cart",
    h("table", { id: "cart" }, h("thead", {}, h("tr", {}, ["Item", "Quantity", "Price", "Total", ""].map(t => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows)),
    h("p", { class: "big", id: "cart-total" }, money(cart.total_cents)),
    Api.signedIn() ? h("a", { class: "button", href: "#/checkout", id: "checkout" }, "Checkout")
      : h("p", {}, h("a", { class: "button", href: "#/login?next=checkout", id: "checkout" }, "Sign in to check out")));
}

async function pageLogin(params) {
  const ident = h("input", { id: "login-identity", autocomplete: "username", required: true });
  const pw = h("input", { id: "login-password", type: "password", autocomplete: "current-password", required: true });
  const msg = h("div", { "aria-live": "assertive" });
  const form = h("form", { id: "login-form", "aria-label": "Sign in" },
    field("Email or username", ident), field("Password", pw), h("p", {}, h("button", { type: "submit" }, "Sign in")), msg);
  form.addEventListener("submit", async (e) => {
    e.preventDefault(); msg.replaceChildren();
    try {
      await Api.login(ident.value.trim(), pw.value);
      renderNav();
      go(params.get("next") ? "#/" + params.get("next") : "#/");
    } catch (err) { msg.append(errorBox(err)); }
  });
  const reg = {
    email: h("input", { id: "reg-email", type: "email", autocomplete: "email", required: true }),
    username: h("input", { id: "reg-username", autocomplete: "username", required: true }),
    password: h("input", { id: "reg-password", type: "password", autocomplete: "new-password", required: true }),
  };
  const rmsg = h("div", { "aria-live": "assertive" });
  const rform = h("form", { id: "register-form", "aria-label": "Register" },
    field("Email", reg.email), field("Username", reg.username), field("Password", reg.password),
    h("p", {}, h("button", { type: "submit" }, "Create account")), rmsg);
  rform.addEventListener("submit", async (e) => {
    e.preventDefault(); rmsg.replaceChildren();
    try {
      await Api.call("POST", "/auth/register", { email: reg.email.value, username: reg.username.value, password: reg.password.value }, { anonymous: true });
      await Api.login(reg.username.value, reg.password.value);
      renderNav(); go(params.get("next") ? "#/" + params.get("next") : "#/");
    } catch (err) { rmsg.append(errorBox(err)); }
  });
  show("Sign in", form, h("h2", {}, "New here?"), rform);
}

function addressForm(onSaved) {
  const f = {};
  const spec = [["recipient", "Recipient"], ["phone", "Phone"], ["line1", "Address line 1"], ["line2", "Address line 2"],
    ["city", "City"], ["region", "Region"], ["postal_code", "Postal code"], ["country", "Country (2 letters)"]];
  const form = h("form", { id: "address-form", class: "panel", "aria-label": "New address" },
    h("div", { class: "row" }, spec.map(([k, label]) => field(label, f[k] = h("input", { id: "addr-" + k, name: k, required: k !== "line2" && k !== "region" })))),
    h("p", {}, h("button", { type: "submit" }, "Save address")));
  const msg = h("div");
  form.append(msg);
  form.addEventListener("submit", async (e) => {
    e.preventDefault(); msg.replaceChildren();
    const body = { is_default: true };
    for (const [k] of spec) body[k] = f[k].value.trim();
    try { await Api.call("POST", "/me/addresses", body); onSaved(); } catch (err) { msg.append(errorBox(err)); }
  });
  return form;
}

async function shippingMethods() {
  try { const r = await Api.call("GET", "/shipping-methods"); return r.items || r; } catch (e) { return null; }
}

async function pageCheckout() {
  if (!Api.signedIn()) { go("#/login?next=checkout"); return; }
  const [cart, addrs, methods] = await Promise.all([Api.call("GET", "/cart"), Api.call("GET", "/me/addresses"), shippingMethods()]);
  const list = addrs.items || addrs;
  if (!cart.items.length) { show("Checkout", h("p", {}, "Your cart is empty.")); return; }
  const addr = h("select", { id: "address" }, list.map(a => h("option", { value: a.id, selected: a.is_default },
    `${a.recipient}, ${a.line1}, ${a.city} ${a.postal_code}`)));
  const coupon = h("input", { id: "coupon", placeholder: "optional", inputmode: "numeric" });
  const ship = methods && methods.length ? h("select", { id: "shipping-method" }, methods.map(m =>
    h("option", { value: m.id }, `${m.name} · ${money(m.fee_cents !== undefined ? m.fee_cents : m.price_cents)}`))) : null;
  const quoteBox = h("div", { id: "quote", "aria-live": "polite" });
  const msg = h("div", { "aria-live": "assertive" });
  function body() {
    const b = {};
    if (addr.value) b.address_id = Number(addr.value);
    if (coupon.value.trim()) b.coupon_id = coupon.value.trim();
    if (ship) b.shipping_method_id = Number(ship.value);
    return b;
  }
  async function quote() {
    quoteBox.replaceChildren();
    try {
      const q = await Api.call("POST", "/orders/quote", body());
      quoteBox.append(h("p", {}, "Total: ", h("span", { class: "big", id: "quote-total" }, money(q.total_cents)),
        q.discount_cents ? h("span", { class: "ok" }, ` (you save ${money(q.discount_cents)})`) : null,
        q.shipping_cents ? h("span", {}, ` (shipping ${money(q.shipping_cents)})`) : null));
    } catch (e) { quoteBox.append(errorBox(e)); }
  }
  const place = h("button", { id: "place-order", type: "button", onclick: async () => {
    msg.replaceChildren(); place.disabled = true;
    try {
      const order = await Api.call("POST", "/orders", body(), { headers: { "Idempotency-Key": sessionStorage.getItem("raymall.checkout") || idemKey() } });
      sessionStorage.removeItem("raymall.checkout");
      go("#/orders/" + order.id);
    } catch (e) { msg.append(errorBox(e)); place.disabled = false; }
  } }, "Place order");
  sessionStorage.setItem("raymall.checkout", idemKey());
  for (const el of [addr, coupon, ship]) if (el) el.addEventListener("change", quote);
  show("Checkout",
    h("table", {}, h("tbody", {}, cart.items.map(l => h("tr", {}, h("td", {}, l.title), h("td", {}, "× " + l.quantity), h("td", {}, money(l.line_total_cents)))))),
    list.length ? field("Ship to", addr) : h("p", { class: "notice" }, "Add an address to check out."),
    ship ? field("Shipping method", ship) : null,
    field("Coupon id", coupon), quoteBox,
    list.length ? h("p", {}, place) : null, msg,
    h("details", { open: !list.length }, h("summary", {}, "Add a new address"), addressForm(() => route())));
  if (list.length) quote();
}

// ---- orders ---------------------------------------------------------------------------
async function pageOrders() {
  const data = await Api.call("GET", "/orders?limit=20");
  show("Your orders", data.items.length ? h("table", { id: "orders" },
    h("thead", {}, h("tr", {}, ["Order", "Placed", "Status", "Total"].map(t => h("th", { scope: "col" }, t)))),
    h("tbody", {}, data.items.map(o => h("tr", {}, h("td", {}, h("a", { href: "#/orders/" + o.id }, "#" + o.id)),
      h("td", {}, when(o.created_ms)), h("td", { class: "status" }, o.status), h("td", {}, money(o.total_cents))))))
    : h("p", {}, "No orders yet."));
}

async function pageOrder(id) {
  const [o, hist] = await Promise.all([Api.call("GET", "/orders/" + id), Api.call("GET", `/orders/${id}/history`)]);
  const msg = h("div", { "aria-live": "assertive" });
  const actions = h("p", { class: "row" });
  if (o.status === "pending_payment") {
    actions.append(h("button", { id: "pay", type: "button", onclick: async (e) => {
      e.target.disabled = true; msg.replaceChildren(h("p", { class: "notice", role: "status" }, "Paying…"));
      try { await Api.call("POST", `/orders/${id}/pay`, { outcome: "succeed" }); waitPaid(id, msg); }
      catch (err) { msg.replaceChildren(errorBox(err)); e.target.disabled = false; }
    } }, `Pay ${money(o.total_cents)}`),
    h("button", { class: "secondary", type: "button", onclick: async () => {
      try { await Api.call("POST", `/orders/${id}/cancel`); route(); } catch (err) { msg.replaceChildren(errorBox(err)); }
    } }, "Cancel order"));
  }
  if (o.status === "delivered" || o.status === "shipped") {
    actions.append(h("button", { type: "button", onclick: async () => {
      try { await Api.call("POST", `/orders/${id}/confirm-receipt`); route(); } catch (err) { msg.replaceChildren(errorBox(err)); }
    } }, "Confirm receipt"));
  }
  const shipments = (o.shipments || []).map(s => h("div", { class: "panel" },
    h("strong", {}, `${s.carrier || "Carrier"} ${s.tracking_number || s.tracking || ""}`), ` · ${s.status || ""}`,
    h("ol", {}, (s.events || []).map(ev => h("li", {}, `${when(ev.occurred_ms || ev.created_ms)}: ${ev.status || ev.kind || ""} ${ev.location || ""}`)))));
  show(`Order #${o.id}`,
    h("p", {}, "Status: ", h("strong", { id: "order-status" }, o.status), ` · placed ${when(o.created_ms)}`),
    h("table", {}, h("tbody", {}, (o.items || []).map(i => h("tr", {},
      h("td", {}, h("a", { href: "#/p/" + i.product_id }, i.title)), h("td", {}, "× " + i.quantity),
      h("td", {}, money(i.line_total_cents)))))),
    h("p", {}, "Total: ", h("strong", { id: "order-total" }, money(o.total_cents)),
      o.discount_cents ? ` (discount ${money(o.discount_cents)})` : "",
      o.shipping_cents ? ` (shipping ${money(o.shipping_cents)})` : ""),
    actions, msg,
    shipments.length ? h("h2", {}, "Tracking") : null, ...shipments,
    ...(["delivered", "completed"].includes(o.status) ? await returnsPart(o) : []),
    h("h2", {}, "Status history"),
    h("ol", { class: "history", id: "history" }, (hist.items || []).map(ev =>
      h("li", {}, `${when(ev.created_ms || ev.at_ms)}: ${ev.from_status || "—"} → ${ev.to_status} (${ev.reason || ""})`))));
}

const RETURN_REASONS = ["damaged", "defective", "wrong_item", "not_as_described", "no_longer_needed", "other"];
async function returnsPart(o) {
  const mine = await Api.call("GET", `/orders/${o.id}/returns`).catch(() => ({ items: [] }));
  const qty = {};
  const reason = h("select", { id: "return-reason" }, RETURN_REASONS.map(r => h("option", { value: r }, r.replace(/_/g, " "))));
  const note = h("input", { id: "return-note", maxlength: "1000" });
  const msg = h("div", { "aria-live": "assertive" });
  const form = h("form", { id: "return-form", class: "panel", "aria-label": "Request a return" },
    h("div", { class: "row" }, (o.items || []).map(i => field(`Return units of ${i.title}`,
      qty[i.id] = h("input", { type: "number", min: "0", max: String(i.quantity), value: "0" }))),
      field("Reason", reason), field("Note", note)),
    h("p", {}, h("button", { type: "submit" }, "Request a return")), msg);
  form.addEventListener("submit", async (e) => {
    e.preventDefault(); msg.replaceChildren();
    const lines = Object.entries(qty).filter(([, el]) => Number(el.value) > 0)
      .map(([id, el]) => ({ order_item_id: String(id), quantity: Number(el.value) }));
    if (!lines.length) { msg.append(h("p", { class: "error" }, "Choose at least one unit to return.")); return; }
    try {
      await Api.call("POST", `/orders/${o.id}/returns`, { lines, reason: reason.value, note: note.value }, { headers: { "Idempotency-Key": idemKey() } });
      route();
    } catch (err) { msg.append(errorBox(err)); }
  });
  return [h("h2", {}, "Returns"),
    h("ul", { id: "returns" }, (mine.items || []).map(r => h("li", {}, `Return #${r.id}: ${r.status}`))), form];
}

function waitPaid(id, msg) {
  let tries = 0;
  const timer = setInterval(async () => {
    tries += 1;
    try {
      const o = await Api.call("GET", "/orders/" + id);
      if (o.status !== "pending_payment" || tries > 120) { clearInterval(timer); route(); }
    } catch (e) { clearInterval(timer); msg.replaceChildren(errorBox(e)); }
  }, 250);
  leaving.push(() => clearInterval(timer));
}

async function pageNotifications() {
  const data = await Api.call("GET", "/me/notifications?limit=30");
  show("Notifications", data.items.length ? h("ul", { id: "notifications" }, data.items.map(n =>
    h("li", {}, h("strong", {}, n.subject), ` · ${when(n.created_ms)}`, h("div", { class: "muted" }, n.body))))
    : h("p", {}, "Nothing new."));
}

async function pageAccount() {
  const [me, addrs] = await Promise.all([Api.call("GET", "/me"), Api.call("GET", "/me/addresses")]);
  const list = addrs.items || addrs;
  show("Account", h("p", {}, `${me.display_name || me.username} · ${me.email}`),
    h("h2", {}, "Addresses"),
    h("ul", { id: "addresses" }, list.map(a => h("li", {}, `${a.recipient}, ${a.line1}, ${a.city} ${a.postal_code} ${a.country}`,
      a.is_default ? h("span", { class: "ok" }, " (default)") : null,
      " ", h("button", { class: "secondary", type: "button", onclick: async () => { await Api.call("DELETE", "/me/addresses/" + a.id); route(); } }, "Delete")))),
    addressForm(() => route()));
}

// ---- flash sales ----------------------------------------------------------------------
async function pageFlashList() {
  const data = await Api.call("GET", "/flash-sales");
  show("Flash sales", data.items.length ? h("ul", { class: "grid", id: "flash-sales" }, data.items.map(s =>
    h("li", { class: "card" }, thumb(s.image, ""), h("h3", {}, h("a", { href: "#/flash/" + s.id }, s.title || s.product_title)),
      h("div", { class: "price hot" }, money(s.price_cents)),
      h("div", {}, s.status === "scheduled" ? `Starts ${when(s.starts_at_ms)}` : `${s.remaining} of ${s.quantity} left`))))
    : h("p", {}, "No flash sales right now."));
}

async function pageFlash(id) {
  const sales = await Api.call("GET", "/flash-sales");
  let sale = sales.items.find(s => String(s.id) === String(id));
  if (!sale) sale = await Api.call("GET", "/flash-sales/" + id);
  const clock = h("p", { class: "countdown", id: "countdown", role: "timer", "aria-live": "off" });
  const remaining = h("p", { class: "big", id: "remaining", "aria-live": "polite" });
  const status = h("p", { id: "sale-status", "aria-live": "polite" });
  const msg = h("div", { "aria-live": "assertive" });
  const similar = h("ul", { class: "grid", id: "similar" });
  const similarHead = h("h2", { hidden: true }, "In stock and similar");
  let state = { status: sale.status, remaining: sale.remaining, starts_at_ms: sale.starts_at_ms, ends_at_ms: sale.ends_at_ms };
  const buy = h("button", { id: "buy", type: "button", disabled: true, onclick: async () => {
    if (!Api.signedIn()) { go("#/login?next=" + encodeURIComponent("flash/" + id)); return; }
    buy.disabled = true; msg.replaceChildren();
    try {
      const headers = { "Idempotency-Key": idemKey() };
      if (sale.require_token) headers["X-Flash-Token"] = (await Api.call("GET", `/flash-sales/${id}/token`)).token;
      const r = await Api.call("POST", `/flash-sales/${id}/purchase`, undefined, { headers });
      msg.append(h("p", { class: "notice", role: "status" }, "You got one! ", h("a", { href: "#/orders/" + r.order_id, id: "flash-order" }, "Pay for your order")));
    } catch (e) { msg.append(errorBox(e)); tick(); }
  } }, "Buy now");
  function tick() {
    const now = Api.serverNow();
    if (state.status === "ended" || now >= state.ends_at_ms) {
      clock.textContent = "Ended"; buy.disabled = true; return;
    }
    if (now < state.starts_at_ms) {
      clock.textContent = "Starts in " + countdownText(state.starts_at_ms - now); buy.disabled = true;
    } else {
      clock.textContent = "Ends in " + countdownText(state.ends_at_ms - now);
      buy.disabled = state.remaining <= 0 || msg.querySelector("#flash-order") !== null;
    }
  }
  function paint() {
    remaining.textContent = `${state.remaining} of ${sale.quantity} left`;
    const words = { scheduled: "Not started yet", active: "On sale now", sold_out: "Sold out", ended: "Ended" };
    status.textContent = words[state.status] || state.status;
    status.className = state.status === "active" ? "ok" : state.status === "sold_out" ? "bad" : "";
    tick();
    if ((state.status === "sold_out" || state.status === "ended") && sale.product_id && !similar.childElementCount) {
      similarHead.hidden = false;
      Api.call("GET", `/products/${sale.product_id}/similar?k=6&in_stock_only=true`)
        .then(r => similar.replaceChildren(...r.items.map(productCard))).catch(() => {});
    }
  }
  show(sale.title || sale.product_title || `Flash sale ${id}`,
    h("div", { class: "media" }, thumb(sale.image, sale.title || ""),
      h("div", {}, h("p", { class: "price big hot" }, money(sale.price_cents)),
        sale.product_id ? h("p", {}, h("a", { href: "#/p/" + sale.product_id }, "About the product")) : null,
        clock, remaining, status, h("p", {}, buy), msg)),
    similarHead, similar);
  paint();
  const timer = setInterval(tick, 250);
  const sent = Date.now();
  const stream = new EventSource(`/flash-sales/${id}/events`);
  let first = true;
  const onEvent = (ev) => {
    const d = JSON.parse(ev.data);
    if (first) { Api.setServerTime(d.server_time_ms, (sent + Date.now()) / 2); first = false; }
    state = d;
    if (ev.type === "returned") msg.replaceChildren(h("p", { class: "notice" }, `${d.units} unit(s) came back!`));
    paint();
  };
  for (const kind of ["sale", "remaining", "sold_out", "returned", "ended"]) stream.addEventListener(kind, onEvent);
  stream.addEventListener("ended", () => stream.close());
  leaving.push(() => { clearInterval(timer); stream.close(); });
}

// ---- routing ----------------------------------------------------------------------------
const routes = [
  [/^#?\/?$/, pageHome], [/^#\/search$/, pageSearch], [/^#\/p\/(\d+)$/, pageProduct],
  [/^#\/cart$/, pageCart], [/^#\/login$/, pageLogin], [/^#\/checkout$/, pageCheckout],
  [/^#\/orders$/, pageOrders], [/^#\/orders\/(\d+)$/, pageOrder], [/^#\/notifications$/, pageNotifications],
  [/^#\/account$/, pageAccount], [/^#\/flash$/, pageFlashList], [/^#\/flash\/(\d+)$/, pageFlash],
];
async function route() {
  for (const stop of leaving) stop();
  leaving = [];
  const [path, query] = (location.hash || "#/").split("?");
  const params = new URLSearchParams(query || "");
  for (const [re, page] of routes) {
    const m = path.match(re);
    if (!m) continue;
    loading();
    try { await (m[1] ? page(m[1], params) : page(params)); }
    catch (e) {
      if (e instanceof Api.ApiError && e.status === 401) { go("#/login"); return; }
      show("Something went wrong", errorBox(e));
    }
    return;
  }
  show("Not found", h("p", {}, "No such page. ", h("a", { href: "#/" }, "Back to the shop")));
}

document.getElementById("search-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const q = document.getElementById("search-q").value.trim();
  if (q) go("#/search?" + new URLSearchParams({ q }));
});
window.addEventListener("hashchange", route);
renderNav();
route();
