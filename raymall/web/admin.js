// raymall admin console: the same JSON API and permissions as any client.
"use strict";

const main = () => document.getElementById("main");
let stops = [];

function page(title, ...nodes) {
  main().replaceChildren(h("h1", { tabindex: "-1", id: "page-title" }, title), ...nodes.filter(n => n !== null && n !== undefined));
  document.title = title + " · raymall admin";
  document.getElementById("page-title").focus({ preventScroll: true });
  for (const a of document.querySelectorAll(".tabs a")) {
    if (a.getAttribute("href") === (location.hash.split("?")[0] || "#/")) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}
function table(id, heads, rows) {
  return h("table", { id }, h("thead", {}, h("tr", {}, heads.map(t => h("th", { scope: "col" }, t)))), h("tbody", {}, rows));
}
function act(label, fn, cls) {
  const b = h("button", { type: "button", class: cls || "secondary" }, label);
  b.addEventListener("click", async () => {
    b.disabled = true;
    try { await fn(); } catch (e) { b.after(errorBox(e)); } finally { b.disabled = false; }
  });
  return b;
}
function form(id, label, fields, submit, onSubmit) {
  const f = h("form", { id, class: "panel", "aria-label": label }, h("div", { class: "row" }, fields), h("p", {}, h("button", { type: "submit" }, submit)));
  const msg = h("div", { "aria-live": "assertive" });
  f.append(msg);
  f.addEventListener("submit", async (e) => {
    e.preventDefault(); msg.replaceChildren();
    try { await onSubmit(f, msg); } catch (err) { msg.append(errorBox(err)); }
  });
  return f;
}
const input = (id, attrs) => h("input", Object.assign({ id, name: id }, attrs || {}));

// ---- sign in --------------------------------------------------------------------------
function signIn() {
  const f = form("admin-login", "Sign in", [field("Email or username", input("admin-identity", { autocomplete: "username", required: true })),
    field("Password", input("admin-password", { type: "password", autocomplete: "current-password", required: true }))], "Sign in",
  async (el) => {
    await Api.login(el.elements["admin-identity"].value.trim(), el.elements["admin-password"].value);
    renderHeader(); route();
  });
  page("Admin sign in", f);
}
function renderHeader() {
  const who = document.getElementById("who");
  const c = Api.claims();
  who.replaceChildren(c ? h("span", {}, `signed in (${c.role}) `, h("button", { type: "button", class: "secondary", id: "admin-sign-out",
    onclick: async () => { await Api.logout(); renderHeader(); route(); } }, "Sign out")) : "");
}

// ---- dashboard: key metrics, live ----------------------------------------------------------
const KEY_METRICS = [
  ["raymall_http_requests_total", "HTTP requests"],
  ["raymall_orders_placed_total", "Orders placed"],
  ["raymall_flash_purchases_total", "Flash purchases"],
  ["raymall_payments_total", "Payments"],
  ["raymall_inventory_ops_total", "Inventory operations"],
  ["raymall_feed_connected", "Replica feeds connected"],
];
function parseMetrics(text) {
  const sums = {};
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const name = line.split(/[{ ]/)[0];
    const value = Number(line.slice(line.lastIndexOf(" ") + 1));
    if (!Number.isNaN(value)) sums[name] = (sums[name] || 0) + value;
  }
  return sums;
}
async function pageDashboard() {
  const box = h("div", { class: "stats", id: "metrics", "aria-live": "off" });
  const note = h("p", { class: "muted" }, "Totals since start and the rate over the last 2 s, from /metrics.");
  page("Dashboard", note, box);
  let last = null;
  async function poll() {
    const r = await fetch("/metrics", { headers: Api.tokens() ? {} : {} });
    if (!r.ok) { box.replaceChildren(h("p", { class: "error" }, `metrics: HTTP ${r.status}`)); return; }
    const sums = parseMetrics(await r.text());
    const t = Date.now();
    box.replaceChildren(...KEY_METRICS.map(([name, label]) => {
      const v = sums[name] || 0;
      const rate = last ? ((v - (last.sums[name] || 0)) / ((t - last.t) / 1000)) : 0;
      return h("div", { class: "stat", "data-metric": name }, h("div", { class: "muted" }, label), h("div", { class: "big" }, Math.round(v).toLocaleString()),
        name.endsWith("_total") ? h("div", {}, `${rate.toFixed(1)}/s`) : null);
    }));
    last = { sums, t };
  }
  await poll();
  const timer = setInterval(() => poll().catch(() => {}), 2000);
  stops.push(() => clearInterval(timer));
}

// ---- products and SKUs ------------------------------------------------------------------
async function pageProducts() {
  const [cats, brands, list] = await Promise.all([Api.call("GET", "/categories"), Api.call("GET", "/brands"), Api.call("GET", "/admin/products?size=20&sort=newest")]);
  const flat = [];
  (function walk(nodes, d) { for (const n of nodes || []) { flat.push([n.id, "\u00a0".repeat(d * 2) + n.name]); walk(n.children, d + 1); } })(cats.items || cats, 0);
  const created = h("div", { id: "created", "aria-live": "polite" });
  const create = form("product-form", "New product", [
    field("Title", input("p-title", { required: true, maxlength: "200" })),
    field("Category", h("select", { id: "p-category", required: true }, flat.map(([v, t]) => h("option", { value: v }, t)))),
    field("Brand", h("select", { id: "p-brand" }, h("option", { value: "" }, "None"), (brands.items || brands).map(b => h("option", { value: b.id }, b.name)))),
    field("Description", h("textarea", { id: "p-description", rows: "2" })),
    field("SKU code", input("p-sku-code", { required: true })),
    field("SKU option (e.g. colour=red)", input("p-sku-specs", { placeholder: "colour=red" })),
    field("Price (cents)", input("p-price", { type: "number", min: "1", required: true })),
    field("Initial stock", input("p-stock", { type: "number", min: "0", value: "0" })),
    field("Image (PNG/JPEG)", input("p-image", { type: "file", accept: "image/png,image/jpeg,image/webp,image/gif" })),
  ], "Create product", async (el) => {
    const specs = {};
    for (const part of el.elements["p-sku-specs"].value.split(",")) {
      const [k, v] = part.split("=").map(s => (s || "").trim()); if (k && v) specs[k] = v;
    }
    const body = { title: el.elements["p-title"].value.trim(), description: el.elements["p-description"].value,
      category_id: Number(el.elements["p-category"].value),
      skus: [{ code: el.elements["p-sku-code"].value.trim(), specs, price_cents: Number(el.elements["p-price"].value) }] };
    if (el.elements["p-brand"].value) body.brand_id = Number(el.elements["p-brand"].value);
    const p = await Api.call("POST", "/admin/products", body);
    const file = el.elements["p-image"].files[0];
    if (file) await Api.call("POST", `/admin/products/${p.id}/images`, file, { raw: true, headers: { "Content-Type": file.type } });
    const stock = Number(el.elements["p-stock"].value);
    const sku = p.skus[0];
    if (stock > 0) await Api.call("POST", `/admin/inventory/${sku.id}/adjust`, { delta: stock, reason: "initial stock" }, { headers: { "Idempotency-Key": idemKey() } });
    created.replaceChildren(await productPanel(await Api.call("GET", "/admin/products/" + p.id)));
  });
  page("Products", create, created, h("h2", {}, "Newest published"),
    table("product-list", ["Id", "Title", "Status", "Price", ""], (list.items || []).map(p => h("tr", {},
      h("td", {}, p.id), h("td", {}, p.title), h("td", {}, p.status || ""), h("td", {}, money(p.min_price_cents)),
      h("td", {}, act("Open", async () => created.replaceChildren(await productPanel(await Api.call("GET", "/admin/products/" + p.id)))))))));
}
async function productPanel(p) {
  const stock = {};
  await Promise.all((p.skus || []).map(async s => {
    try { const v = await Api.call("GET", "/admin/inventory/" + s.id); stock[s.id] = (v.memory || v.database || {}).available; } catch (e) { stock[s.id] = "?"; }
  }));
  const status = h("strong", { id: "product-status" }, p.status || "draft");
  const skuRows = (p.skus || []).map(s => h("tr", { "data-sku": s.id }, h("td", {}, s.id), h("td", {}, s.code),
    h("td", {}, Object.entries(s.specs || {}).map(([k, v]) => `${k}: ${v}`).join(", ")), h("td", {}, money(s.price_cents)),
    h("td", { class: "available" }, String(stock[s.id])),
    h("td", {}, h("a", { href: "#/stock?sku=" + s.id }, "Stock"))));
  const skuForm = form("sku-form", "Add SKU", [field("Code", input("s-code", { required: true })),
    field("Option (k=v)", input("s-specs")), field("Price (cents)", input("s-price", { type: "number", min: "1", required: true }))], "Add SKU",
  async (el) => {
    const specs = {};
    for (const part of el.elements["s-specs"].value.split(",")) { const [k, v] = part.split("=").map(x => (x || "").trim()); if (k && v) specs[k] = v; }
    await Api.call("POST", `/admin/products/${p.id}/skus`, { code: el.elements["s-code"].value.trim(), specs, price_cents: Number(el.elements["s-price"].value) });
    el.closest(".panel.product").replaceWith(await productPanel(await Api.call("GET", "/admin/products/" + p.id)));
  });
  return h("div", { class: "panel product", "data-product-id": p.id },
    h("h2", {}, `#${p.id} ${p.title} `), h("p", {}, "Status: ", status, " ",
      act("Publish", async () => { const r = await Api.call("POST", `/admin/products/${p.id}/publish`); status.textContent = r.status || "published"; }, ""),
      " ", act("Unpublish", async () => { const r = await Api.call("POST", `/admin/products/${p.id}/unpublish`); status.textContent = r.status || "draft"; })),
    (p.images || []).length ? h("img", { src: p.images[0], alt: p.title, width: "160" }) : null,
    table("sku-table", ["SKU id", "Code", "Option", "Price", "Available", ""], skuRows), skuForm);
}

// ---- stock ----------------------------------------------------------------------------------
async function pageStock(params) {
  const out = h("div", { id: "stock-view", "aria-live": "polite" });
  async function load(sku) {
    const v = await Api.call("GET", "/admin/inventory/" + sku);
    const mem = v.memory || {}, db = v.database || {};
    const keys = Array.from(new Set([...Object.keys(mem), ...Object.keys(db)]));
    out.replaceChildren(h("p", {}, `SKU ${v.sku_id} · shard ${v.shard} · `, v.in_sync ? h("span", { class: "ok" }, "memory and database agree") : h("span", { class: "bad" }, "memory and database differ")),
      table("stock", ["Counter", "Shard memory", "Database"], keys.map(k => h("tr", { "data-counter": k }, h("td", {}, k), h("td", {}, String(mem[k] ?? "")), h("td", {}, String(db[k] ?? ""))))));
  }
  const look = form("stock-form", "Look up a SKU", [field("SKU id", input("st-sku", { type: "number", min: "1", required: true, value: params.get("sku") || "" }))], "Show",
    async (el) => load(el.elements["st-sku"].value));
  const adjust = form("adjust-form", "Adjust stock", [field("SKU id", input("adj-sku", { type: "number", min: "1", required: true, value: params.get("sku") || "" })),
    field("Units (+/-)", input("adj-delta", { type: "number", required: true })), field("Reason", input("adj-reason", { required: true, value: "restock" }))],
  "Adjust", async (el) => {
    await Api.call("POST", `/admin/inventory/${el.elements["adj-sku"].value}/adjust`,
      { delta: Number(el.elements["adj-delta"].value), reason: el.elements["adj-reason"].value }, { headers: { "Idempotency-Key": idemKey() } });
    await load(el.elements["adj-sku"].value);
  });
  page("Stock", look, adjust, out);
  if (params.get("sku")) await load(params.get("sku"));
}

// ---- orders -------------------------------------------------------------------------------
async function pageOrders(params) {
  const status = params.get("status") || "";
  const q = new URLSearchParams({ limit: "30" }); if (status) q.set("status", status);
  const data = await Api.call("GET", "/admin/orders?" + q);
  const filter = h("select", { id: "order-status-filter" }, ["", "pending_payment", "paid", "partially_shipped", "shipped", "delivered", "completed", "cancelled", "refunded"]
    .map(s => h("option", { value: s, selected: s === status }, s || "any")));
  filter.addEventListener("change", () => { location.hash = "#/orders" + (filter.value ? "?status=" + filter.value : ""); });
  page("Orders", field("Status", filter), table("admin-orders", ["Order", "User", "Placed", "Status", "Total", ""], data.items.map(o => {
    const cell = h("td", { class: "status" }, o.status);
    const set = (r) => { cell.textContent = r.status || cell.textContent; };
    return h("tr", { "data-order": o.id }, h("td", {}, o.id), h("td", {}, o.user_id), h("td", {}, when(o.created_ms)), cell, h("td", {}, money(o.total_cents)),
      h("td", {}, o.status === "paid" ? act("Ship", async () => set(await Api.call("POST", `/admin/orders/${o.id}/ship`,
        { carrier: "raycarrier", tracking_number: "RC" + idemKey().slice(0, 12).toUpperCase() }))) : null, " ",
        ["paid", "shipped", "delivered", "completed"].includes(o.status) ? act("Refund", async () => set(await Api.call("POST", `/admin/orders/${o.id}/refund`)), "danger") : null));
  })));
}

// ---- flash sales ----------------------------------------------------------------------------
let watching = null;
async function pageFlash() {
  const data = await Api.call("GET", "/admin/flash-sales?limit=20");
  const live = h("div", { id: "flash-live", "aria-live": "polite" });
  const now = Date.now();
  const local = (ms) => { const d = new Date(ms - new Date().getTimezoneOffset() * 60000); return d.toISOString().slice(0, 16); };
  const create = form("flash-form", "New flash sale", [
    field("SKU id", input("fs-sku", { type: "number", min: "1", required: true })),
    field("Title", input("fs-title", { maxlength: "200" })),
    field("Price (cents)", input("fs-price", { type: "number", min: "1", required: true })),
    field("Units", input("fs-qty", { type: "number", min: "1", required: true, value: "10" })),
    field("Per-user limit", input("fs-limit", { type: "number", min: "1", value: "1" })),
    field("Starts", input("fs-start", { type: "datetime-local", value: local(now) })),
    field("Ends", input("fs-end", { type: "datetime-local", value: local(now + 3600e3) })),
  ], "Create sale", async (el) => {
    const body = { sku_id: Number(el.elements["fs-sku"].value), title: el.elements["fs-title"].value, price_cents: Number(el.elements["fs-price"].value),
      quantity: Number(el.elements["fs-qty"].value), per_user_limit: Number(el.elements["fs-limit"].value || 1),
      starts_at_ms: Math.max(new Date(el.elements["fs-start"].value).getTime(), 0), ends_at_ms: new Date(el.elements["fs-end"].value).getTime() };
    const sale = await Api.call("POST", "/admin/flash-sales", body);
    location.hash = "#/flash?watch=" + sale.id; // the hash change renders it
  });
  page("Flash sales", create, live, table("flash-table", ["Id", "Title", "SKU", "Price", "Sold", "Status", ""], data.items.map(s => h("tr", { "data-sale": s.id },
    h("td", {}, s.id), h("td", {}, s.title), h("td", {}, s.sku_id), h("td", {}, money(s.price_cents)), h("td", {}, `${s.sold} / ${s.quantity}`), h("td", {}, s.status),
    h("td", {}, act("Watch", async () => watch(s, live)), " ", s.status !== "ended" ? act("End", async () => { await Api.call("POST", `/admin/flash-sales/${s.id}/end`); route(); }, "danger") : null)))));
  const want = new URLSearchParams(location.hash.split("?")[1] || "").get("watch");
  const sale = data.items.find(s => String(s.id) === want);
  if (sale) watch(sale, live);
}
function watch(sale, box) {
  if (watching) watching.close();
  const remaining = h("span", { class: "big", id: "live-remaining" }, String(sale.remaining));
  const sold = h("span", { class: "big", id: "live-sold" }, String(sale.sold));
  const status = h("strong", { id: "live-status" }, sale.status);
  const log = h("ol", { id: "live-log" });
  box.replaceChildren(h("div", { class: "panel" }, h("h2", {}, `Live: sale #${sale.id} ${sale.title || ""}`),
    h("div", { class: "stats" }, h("div", { class: "stat" }, h("div", { class: "muted" }, "Remaining"), remaining),
      h("div", { class: "stat" }, h("div", { class: "muted" }, "Sold"), sold), h("div", { class: "stat" }, h("div", { class: "muted" }, "Status"), status)),
    h("p", {}, h("a", { href: "/#/flash/" + sale.id }, "Open the public sale page")), log));
  const es = new EventSource(`/flash-sales/${sale.id}/events`);
  const on = (ev) => {
    const d = JSON.parse(ev.data);
    remaining.textContent = d.remaining; sold.textContent = d.quantity - d.remaining; status.textContent = d.status;
    log.prepend(h("li", {}, `${new Date().toLocaleTimeString()} ${ev.type}: ${d.remaining} left`));
  };
  for (const k of ["sale", "remaining", "sold_out", "returned", "ended"]) es.addEventListener(k, on);
  watching = es;
  stops.push(() => { es.close(); watching = null; });
}

// ---- users ------------------------------------------------------------------------------------
async function pageUsers(params) {
  const q = new URLSearchParams({ limit: "30" }); if (params.get("q")) q.set("q", params.get("q"));
  const data = await Api.call("GET", "/admin/users?" + q);
  const search = form("user-search", "Find users", [field("Email or name contains", input("u-q", { value: params.get("q") || "" }))], "Search",
    async (el) => { location.hash = "#/users?q=" + encodeURIComponent(el.elements["u-q"].value); });
  page("Users", search, table("users", ["Id", "Username", "Email", "Role", "Blocked", ""], (data.items || []).map(u => {
    const cell = h("td", {}, u.blocked ? "yes" : "no");
    return h("tr", { "data-user": u.id }, h("td", {}, u.id), h("td", {}, u.username), h("td", {}, u.email), h("td", {}, u.role), cell,
      h("td", {}, act(u.blocked ? "Unblock" : "Block", async () => {
        const r = await Api.call("POST", `/admin/users/${u.id}/${u.blocked ? "unblock" : "block"}`);
        u.blocked = r.blocked !== undefined ? r.blocked : !u.blocked; cell.textContent = u.blocked ? "yes" : "no"; route();
      }, u.blocked ? "" : "danger")));
  })));
}

const ROUTES = [[/^#?\/?$/, pageDashboard], [/^#\/products$/, pageProducts], [/^#\/stock$/, pageStock], [/^#\/orders$/, pageOrders],
  [/^#\/flash$/, pageFlash], [/^#\/users$/, pageUsers]];
async function route() {
  for (const s of stops) s();
  stops = [];
  if (!Api.signedIn()) { signIn(); return; }
  const [path, query] = (location.hash || "#/").split("?");
  const params = new URLSearchParams(query || "");
  for (const [re, fn] of ROUTES) {
    if (!re.test(path)) continue;
    main().replaceChildren(h("p", { class: "muted", role: "status" }, "Loading…"));
    try { await fn(params); } catch (e) {
      if (e instanceof Api.ApiError && e.status === 401) { await Api.logout(); signIn(); return; }
      page(e instanceof Api.ApiError && e.status === 403 ? "Not allowed" : "Something went wrong", errorBox(e));
    }
    return;
  }
  page("Not found", h("p", {}, "No such page."));
}
window.addEventListener("hashchange", route);
renderHeader();
route();
