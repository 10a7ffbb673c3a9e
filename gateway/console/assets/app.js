/* stopgate console (SPEC §12, docs/console.md): plain JavaScript, no framework, no build
 * step. Talks to the JSON API of the gateway that served it; every refusal shown is the
 * gateway's own (stable code + reason). Text is always set with textContent. */
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";
const NODE_W = 250, NODE_H = 92, GAP_X = 70, GAP_Y = 22, PAD = 16;
const state = { me: null, caseId: null, orders: new Map(), events: null, selected: null };

const $ = (id) => document.getElementById(id);

/* ---- API ---- */
async function api(method, path, body) {
  const opt = { method, headers: {}, credentials: "same-origin" };
  if (body !== undefined) {
    opt.headers["Content-Type"] = "application/json";
    opt.headers["X-CSRF-Token"] = state.me ? state.me.csrf : "";
    opt.body = JSON.stringify(body);
  }
  const r = await fetch(path, opt);
  let data = null;
  try { data = await r.json(); } catch (e) { data = { error: "HTTP " + r.status, reason: r.statusText }; }
  if (r.status === 401 && path !== "/api/login") showLogin();
  return { ok: r.ok, status: r.status, data };
}

function say(ok, text) {
  const m = $("msg");
  m.hidden = false;
  m.className = "msg " + (ok ? "ok" : "err");
  m.textContent = text;
}

function refusal(res) {
  const d = res.data || {};
  return (d.error || "HTTP " + res.status) + ": " + (d.reason || "");
}

/* ---- money ---- */
function money(minor) {
  if (minor === null || minor === undefined) return "-";
  const neg = minor < 0, v = Math.abs(minor);
  const major = Math.floor(v / 100).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return (neg ? "-" : "") + major + "." + String(v % 100).padStart(2, "0");
}

function movedOn(o) {
  return (o.onward || []).reduce((s, w) => s + w.amount, 0);
}

/* ---- sign-in ---- */
function showLogin() {
  closeEvents();
  state.me = null;
  $("app-view").hidden = true;
  $("who").hidden = true;
  $("login-view").hidden = false;
  $("login-agent").focus();
}

function showApp() {
  $("login-view").hidden = true;
  $("app-view").hidden = false;
  $("who").hidden = false;
  $("who-name").textContent = state.me.agent;
  $("who-role").textContent = state.me.role;
  refreshHealth();
  const m = location.pathname.match(/^\/case\/(.+)$/);
  if (m) openCase(decodeURIComponent(m[1]), false);
}

async function login(ev) {
  ev.preventDefault();
  const agent = $("login-agent").value, secret = $("login-secret").value;
  $("login-secret").value = "";
  const r = await api("POST", "/api/login", { agent, secret });
  if (!r.ok) {
    $("login-error").hidden = false;
    $("login-error").textContent = refusal(r);
    return;
  }
  $("login-error").hidden = true;
  state.me = r.data;
  showApp();
}

async function logout() {
  await api("POST", "/api/logout", {});
  history.pushState(null, "", "/");
  showLogin();
}

/* ---- health strip ---- */
function chip(text, cls) {
  const s = document.createElement("span");
  s.className = "h" + (cls ? " " + cls : "");
  s.textContent = text;
  return s;
}

async function refreshHealth() {
  if (!state.me) return;
  const r = await api("GET", "/api/health");
  const h = $("health");
  h.replaceChildren();
  if (!r.ok) {
    h.append(chip("gateway unreachable", "bad"));
    return;
  }
  const d = r.data, o = d.orders;
  h.append(chip("gateway " + d.phase, d.phase === "running" ? "good" : "bad"));
  h.append(chip(d.journal_ok ? "journal ok" : "journal FAILING", d.journal_ok ? "" : "bad"));
  h.append(chip("at banks " + ((o.ACCEPTED || 0) + (o.SENT || 0) + (o.OVERDUE || 0))));
  h.append(chip("overdue " + (o.OVERDUE || 0), o.OVERDUE ? "bad" : ""));
  h.append(chip("held " + (o.HELD || 0)));
  h.append(chip("outbox " + d.outbox + "/" + d.outbox_capacity));
  h.append(chip("clients " + d.clients));
}

/* ---- the case and its live stream ---- */
function closeEvents() {
  if (state.events) state.events.close();
  state.events = null;
  $("live").classList.remove("on");
}

async function loadCase() {
  const id = state.caseId;
  const r = await api("GET", "/api/case/" + encodeURIComponent(id));
  if (id !== state.caseId) return;
  state.orders = new Map();
  if (!r.ok) {
    draw();
    if (r.status !== 401) say(false, refusal(r));
    return;
  }
  for (const o of r.data.orders) state.orders.set(o.order_id, o);
  draw();
}

function openCase(id, push) {
  state.caseId = id;
  $("case-id").value = id;
  document.querySelector("#stop-form [name=case]").value = id;
  if (push) history.pushState(null, "", "/case/" + encodeURIComponent(id));
  closeEvents();
  state.orders = new Map();
  draw();
  /* Subscribe first, then read the case once the stream is there: nothing falls between. */
  const es = new EventSource("/api/events?case=" + encodeURIComponent(id));
  state.events = es;
  es.addEventListener("hello", () => { $("live").classList.add("on"); loadCase(); });
  es.addEventListener("order", (e) => {
    const o = JSON.parse(e.data);
    state.orders.set(o.order_id, o);
    draw();
  });
  es.addEventListener("resync", loadCase);
  es.addEventListener("end", () => { closeEvents(); showLogin(); });
  es.onerror = () => $("live").classList.remove("on");
}

/* ---- the tree ---- */
/* Roots (no parent in the case) and children by parent, in order number. */
function forest() {
  const kids = new Map(), roots = [];
  const num = (o) => parseInt(o.order_id.replace(/\D/g, ""), 10) || 0;
  const all = [...state.orders.values()].sort((a, b) => num(a) - num(b));
  for (const o of all) {
    if (o.parent && state.orders.has(o.parent)) {
      if (!kids.has(o.parent)) kids.set(o.parent, []);
      kids.get(o.parent).push(o);
    } else {
      roots.push(o);
    }
  }
  return { roots, kids };
}

/* Tidy layout, money flowing left to right: depth is x, leaves take rows in turn, a parent
 * sits in the middle of its children. */
function layout() {
  const { roots, kids } = forest();
  const pos = new Map();
  let row = 0, maxDepth = 0;
  const place = (o, depth) => {
    maxDepth = Math.max(maxDepth, depth);
    const ch = kids.get(o.order_id) || [];
    let y;
    if (ch.length === 0) {
      y = row++;
    } else {
      const ys = ch.map((c) => place(c, depth + 1));
      y = (ys[0] + ys[ys.length - 1]) / 2;
    }
    pos.set(o.order_id, { x: depth, y });
    return y;
  };
  for (const r of roots) place(r, 0);
  return { pos, kids, rows: row, depth: maxDepth };
}

function el(name, attrs, text) {
  const e = document.createElementNS(SVGNS, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}

function nodeAt(o, px, py) {
  const g = el("g", {
    class: "node" + (state.selected === o.order_id ? " sel" : ""),
    transform: "translate(" + px + "," + py + ")",
    "data-order-id": o.order_id, "data-state": o.state, "data-level": o.level,
  });
  g.append(el("rect", { class: "box", width: NODE_W, height: NODE_H }));
  g.append(el("text", { class: "acct", x: 10, y: 18 }, o.bank + " \u00b7 " + o.account));
  const badgeW = 10 + 7.4 * o.state.length;
  g.append(el("rect", { class: "badge st-" + o.state, x: 10, y: 26, width: badgeW, height: 16 }));
  g.append(el("text", { class: "badge", x: 14, y: 38 }, o.state));
  g.append(el("text", { class: "sub", x: 18 + badgeW, y: 38 }, o.order_id + " \u00b7 level " + o.level + " \u00b7 " + o.kind));
  g.append(el("text", { class: "sub", x: 10, y: 60 },
    "asked " + (o.amount ? money(o.amount) : "all") + "  \u00b7  frozen " + money(o.frozen) + " " + o.currency));
  const moved = movedOn(o);
  g.append(el("text", { class: "sub", x: 10, y: 80 },
    moved ? "moved on " + money(moved) + " " + o.currency : o.reason ? "bank: " + o.reason : (o.lists.length ? "lists: " + o.lists.join(", ") : "")));
  g.append(el("title", {}, o.order_id + " " + o.state + (o.cases ? " \u00b7 cases " + o.cases.join(", ") : "")));
  g.addEventListener("click", () => select(o.order_id));
  return g;
}

function draw() {
  const svg = $("tree");
  svg.replaceChildren();
  const n = state.orders.size;
  $("tree-empty").hidden = n > 0;
  let frozen = 0;
  for (const o of state.orders.values()) frozen += o.frozen || 0;
  $("case-summary").textContent = state.caseId && n
    ? n + " account" + (n > 1 ? "s" : "") + " \u00b7 frozen " + money(frozen) + " " + ([...state.orders.values()][0].currency)
    : "";
  if (!n) {
    svg.setAttribute("width", 0);
    svg.setAttribute("height", 0);
    return;
  }
  const L = layout();
  const px = (p) => PAD + p.x * (NODE_W + GAP_X), py = (p) => PAD + p.y * (NODE_H + GAP_Y);
  svg.setAttribute("width", 2 * PAD + (L.depth + 1) * (NODE_W + GAP_X) - GAP_X);
  svg.setAttribute("height", 2 * PAD + Math.max(L.rows, 1) * (NODE_H + GAP_Y) - GAP_Y);
  const edges = el("g", { class: "edges" }), nodes = el("g", { class: "nodes" });
  for (const o of state.orders.values()) {
    const p = L.pos.get(o.order_id);
    if (!p) continue;
    for (const c of L.kids.get(o.order_id) || []) {
      const q = L.pos.get(c.order_id);
      const x1 = px(p) + NODE_W, y1 = py(p) + NODE_H / 2, x2 = px(q), y2 = py(q) + NODE_H / 2, mx = (x1 + x2) / 2;
      edges.append(el("path", { class: "edge", d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}` }));
      const w = (o.onward || []).find((w) => w.child === c.order_id);
      if (w) edges.append(el("text", { class: "edge-label", x: mx - 24, y: (y1 + y2) / 2 - 4 }, money(w.amount)));
    }
    /* Money moved on to an account that already had a live order: merged into it (SPEC §3),
     * drawn dashed to that order. */
    for (const w of o.onward || []) {
      const t = w.child && state.orders.get(w.child), q = t && L.pos.get(w.child);
      if (!q || t.parent === o.order_id) continue;
      let d, lx, ly;
      if (q.x > p.x) { /* further right: a curve like a cascade edge */
        const x1 = px(p) + NODE_W, y1 = py(p) + NODE_H / 2, x2 = px(q), y2 = py(q) + NODE_H / 2, mx = (x1 + x2) / 2;
        d = `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`;
        lx = mx - 24; ly = (y1 + y2) / 2 + 14;
      } else { /* same column or left: straight down (or up) between the boxes' edges */
        const x = px(q) + NODE_W * 0.75, down = q.y > p.y;
        const y1 = py(p) + (down ? NODE_H : 0), y2 = py(q) + (down ? 0 : NODE_H);
        d = `M${px(p) + NODE_W * 0.75},${y1} L${x},${y2}`;
        lx = x + 6; ly = (y1 + y2) / 2 + 4;
      }
      edges.append(el("path", { class: "edge merged", d }));
      edges.append(el("text", { class: "edge-label", x: lx, y: ly }, money(w.amount) + " merged"));
    }
    nodes.append(nodeAt(o, px(p), py(p)));
  }
  svg.append(edges, nodes);
}

function select(id) {
  state.selected = id;
  document.querySelector("#order-form [name=order_id]").value = id;
  draw();
}

/* ---- actions ---- */
function rid() {
  const b = new Uint8Array(8);
  crypto.getRandomValues(b);
  return "console-" + [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}

function formValues(form, names) {
  const out = {};
  for (const n of names) {
    const v = form.elements[n].value.trim();
    if (v !== "") out[n] = v;
  }
  return out;
}

async function act(kind, body) {
  const r = await api("POST", "/api/" + kind, body);
  if (!r.ok) {
    say(false, kind.toUpperCase() + " refused: " + refusal(r));
    return null;
  }
  const d = r.data;
  say(true, kind.toUpperCase() + " " + d.status + ": " + d.order_id + (d.lists && d.lists.length ? " (on lists: " + d.lists.join(", ") + ")" : ""));
  return d;
}

async function onStop(ev) {
  ev.preventDefault();
  const kind = ev.submitter ? ev.submitter.value : "stop";
  const f = ev.target;
  const body = formValues(f, ["bank", "account", "case", "amount", "reason"]);
  if (kind === "freeze") Object.assign(body, formValues(f, ["doc"]));
  body.request_id = rid();
  const d = await act(kind, body);
  if (d && body.case !== state.caseId) openCase(body.case, true);
}

async function onOrder(ev) {
  ev.preventDefault();
  const kind = ev.submitter ? ev.submitter.value : "release";
  const f = ev.target;
  let body;
  if (kind === "confirm") body = formValues(f, ["order_id"]);
  else if (kind === "extend") body = Object.assign({ request_id: rid() }, formValues(f, ["order_id", "ttl"]));
  else body = Object.assign({ request_id: rid() }, formValues(f, ["order_id", "reason", "doc"]));
  await act(kind, body);
}

async function onCheck(ev) {
  ev.preventDefault();
  const v = formValues(ev.target, ["bank", "account"]);
  const r = await api("GET", "/api/check/" + encodeURIComponent(v.bank || "") + "/" + encodeURIComponent(v.account || ""));
  const out = $("check-result");
  out.hidden = false;
  if (!r.ok) {
    out.textContent = refusal(r);
    out.className = "check msg err";
    return;
  }
  const d = r.data;
  out.className = "check msg " + (d.verdict === "CLEAR" ? "ok" : "err");
  out.textContent = d.verdict + (d.lists.length ? " on " + d.lists.join(", ") + " (score " + d.score + ")" : "") +
    (d.order_id ? " by order " + d.order_id : "");
}

/* ---- start ---- */
async function start() {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("case-form").addEventListener("submit", (ev) => { ev.preventDefault(); openCase($("case-id").value.trim(), true); });
  $("stop-form").addEventListener("submit", onStop);
  $("order-form").addEventListener("submit", onOrder);
  $("check-form").addEventListener("submit", onCheck);
  window.addEventListener("popstate", () => {
    const m = location.pathname.match(/^\/case\/(.+)$/);
    if (m && state.me) openCase(decodeURIComponent(m[1]), false);
  });
  setInterval(refreshHealth, 5000);
  const r = await api("GET", "/api/me");
  if (r.ok) {
    state.me = r.data;
    showApp();
  } else {
    showLogin();
  }
}

document.addEventListener("DOMContentLoaded", start);
