// raymall pages: the JSON API client shared by the storefront and the admin console.
// Tokens live in localStorage (access + refresh); a 401 refreshes once and retries.
"use strict";

const Api = (() => {
  const AUTH = "raymall.auth";
  const CART = "raymall.cart";
  let clockOffset = 0; // server time - local time, in ms

  function tokens() {
    try { return JSON.parse(localStorage.getItem(AUTH) || "null"); } catch (e) { return null; }
  }
  function setTokens(pair) {
    if (pair) localStorage.setItem(AUTH, JSON.stringify({
      access_token: pair.access_token, refresh_token: pair.refresh_token }));
    else localStorage.removeItem(AUTH);
  }
  function signedIn() { return !!(tokens() || {}).access_token; }
  function claims() {
    const t = (tokens() || {}).access_token;
    if (!t) return null;
    try {
      const part = t.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(part));
    } catch (e) { return null; }
  }
  function cartToken() { return localStorage.getItem(CART); }

  class ApiError extends Error {
    constructor(status, body) {
      const err = (body && body.error) || {};
      super(err.message || ("HTTP " + status));
      this.status = status; this.code = err.code || String(status); this.body = body;
    }
  }

  async function refresh() {
    const t = tokens();
    if (!t || !t.refresh_token) return false;
    const r = await fetch("/auth/refresh", { method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: t.refresh_token }) });
    if (!r.ok) { setTokens(null); return false; }
    setTokens(await r.json());
    return true;
  }

  async function call(method, path, body, opts) {
    opts = opts || {};
    const headers = Object.assign({}, opts.headers || {});
    const t = tokens();
    if (t && t.access_token && !opts.anonymous) headers["Authorization"] = "Bearer " + t.access_token;
    else if (cartToken() && path.startsWith("/cart")) headers["X-Cart-Token"] = cartToken();
    let payload;
    if (opts.raw) { payload = body; }
    else if (body !== undefined) { headers["Content-Type"] = "application/json"; payload = JSON.stringify(body); }
    const sent = Date.now();
    let r = await fetch(path, { method, headers, body: payload });
    if (r.status === 401 && t && !opts.retried && !opts.anonymous && await refresh()) {
      return call(method, path, body, Object.assign({}, opts, { retried: true }));
    }
    const text = await r.text();
    let data = null;
    if (text) { try { data = JSON.parse(text); } catch (e) { data = text; } }
    if (!r.ok) throw new ApiError(r.status, data);
    if (data && typeof data === "object" && typeof data.server_time_ms === "number") {
      clockOffset = data.server_time_ms - (sent + Date.now()) / 2;
    }
    return data;
  }

  async function ensureGuestCart() {
    if (signedIn() || cartToken()) return;
    const r = await call("POST", "/cart/guest", undefined, { anonymous: true });
    localStorage.setItem(CART, r.cart_token || r.token);
  }

  async function login(identity, password) {
    const body = identity.includes("@") ? { email: identity, password } : { username: identity, password };
    const headers = {};
    if (cartToken()) headers["X-Cart-Token"] = cartToken(); // merges the guest cart
    const pair = await call("POST", "/auth/login", body, { anonymous: true, headers });
    setTokens(pair);
    localStorage.removeItem(CART);
    return pair;
  }

  async function logout() {
    if (signedIn()) {
      try { await call("POST", "/auth/logout"); } catch (e) { /* signed out already */ }
    }
    setTokens(null);
  }

  function serverNow() { return Date.now() + clockOffset; }
  function setServerTime(ms, sentAt) { clockOffset = ms - (sentAt === undefined ? Date.now() : sentAt); }

  return { call, login, logout, signedIn, claims, ensureGuestCart, cartToken, ApiError,
    serverNow, setServerTime, tokens };
})();

// ---- small DOM helpers ---------------------------------------------------------------
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
function money(cents) {
  if (cents === null || cents === undefined) return "";
  return "$" + (cents / 100).toFixed(2);
}
function when(ms) { return ms ? new Date(ms).toLocaleString() : ""; }
function errorBox(e) {
  const msg = e instanceof Api.ApiError ? `${e.message} (${e.code})` : String(e && e.message || e);
  return h("p", { class: "error", role: "alert" }, msg);
}
function field(label, input) {
  const id = input.id || ("f-" + Math.random().toString(36).slice(2, 9));
  input.id = id;
  return h("div", {}, h("label", { for: id }, label), input);
}
function idemKey() {
  const a = new Uint8Array(12); crypto.getRandomValues(a);
  return Array.from(a, b => b.toString(16).padStart(2, "0")).join("");
}
function countdownText(ms) {
  if (ms <= 0) return "0s";
  const s = Math.ceil(ms / 1000);
  const d = Math.floor(s / 86400), hh = Math.floor(s % 86400 / 3600), mm = Math.floor(s % 3600 / 60), ss = s % 60;
  return (d ? d + "d " : "") + (d || hh ? hh + "h " : "") + (d || hh || mm ? mm + "m " : "") + ss + "s";
}
