"""The status page the API listener serves at ``/`` (issue 7): one screen of plain HTML with a
little vanilla JavaScript, everything inline (no build step, no CDN: it works offline).

The page itself holds no data, so it is served without a token.  It asks for an API token
(kept in ``sessionStorage``: this tab only), then polls ``GET /api/v1/status`` with
``Authorization: Bearer TOKEN`` every few seconds and shows:

* the zones x (nodes + targets) matrix, each cell coloured by its state and naming it
  (``data-zone``, ``data-column``, ``data-state`` attributes for tests and scripts);
* the nodes (link, since, lag, error) and the targets (state, since, reason);
* the open conflicts, with a "keep" button per side (``POST /api/v1/conflicts/ID/resolve``;
  a provider conflict: keep the zone's version or the provider's), the outcome or the API's
  error shown above them;
* the recent changes and the recent sync runs.

Everything from the API is put in the page as text (``textContent``), never as HTML: record
data can come from a provider and is not trusted.
"""

from __future__ import annotations

_HTML = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>xdnsd status</title>
<style>
:root {
  --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg: #f6f8fa; --card: #fff;
  --accent: #0969da;
  --ok-bg: #dafbe1; --ok-fg: #116329;
  --pending-bg: #fff8c5; --pending-fg: #7d4e00;
  --bad-bg: #ffebe9; --bad-fg: #a40e26;
  --held-bg: #fbefff; --held-fg: #6e40c9;
  --down-bg: #57606a; --down-fg: #fff;
  --unknown-bg: #eaeef2; --unknown-fg: #59636e;
}
* { box-sizing: border-box; }
body {
  margin: 0; background: var(--bg); color: var(--fg);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", sans-serif;
}
header {
  display: flex; align-items: center; gap: 16px; padding: 10px 24px;
  background: #24292f; color: #fff;
}
header h1 { font-size: 18px; margin: 0; font-weight: 600; }
header h1 .node { font-weight: 400; opacity: .8; }
header .spacer { flex: 1; }
#updated { font-size: 13px; opacity: .85; }
#updated.stale { color: #ffb3ad; opacity: 1; }
main { max-width: 1280px; margin: 0 auto; padding: 16px 24px 32px; }
.card {
  background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 14px 16px; margin-bottom: 16px;
}
h2 { font-size: 15px; margin: 0 0 10px; font-weight: 600; }
h2 .count { color: var(--muted); font-weight: 400; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
.grid > .card { margin-bottom: 0; min-width: 0; }
.grid + .card, .grid + .grid { margin-top: 16px; }
@media (max-width: 900px) { .grid { grid-template-columns: 1fr; } }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { font-size: 12px; color: var(--muted); font-weight: 600; white-space: nowrap; }
th small { display: block; font-weight: 400; }
tr:last-child > * { border-bottom: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
.muted { color: var(--muted); }
.wrap { overflow-wrap: anywhere; }
.clip { max-width: 150px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.scroll { overflow-x: auto; }
.state {
  display: inline-block; min-width: 84px; padding: 2px 8px; border-radius: 12px;
  font-size: 12px; font-weight: 600; text-align: center; white-space: nowrap;
  background: var(--unknown-bg); color: var(--unknown-fg);
}
#matrix { width: auto; min-width: 50%; }
#matrix th.column { text-align: center; min-width: 130px; }
#matrix tbody th { padding-right: 32px; }
td.cell { text-align: center; }
td.cell .state { min-width: 96px; }
[data-state="in-sync"] > .state, .state[data-state="in-sync"],
[data-state="connected"] > .state, .state[data-state="connected"],
.state[data-state="ok"] { background: var(--ok-bg); color: var(--ok-fg); }
[data-state="pending"] > .state, .state[data-state="pending"] {
  background: var(--pending-bg); color: var(--pending-fg); }
[data-state="out-of-sync"] > .state, .state[data-state="out-of-sync"],
.state[data-state="disconnected"], .state[data-state="error"] {
  background: var(--bad-bg); color: var(--bad-fg); }
[data-state="held"] > .state, .state[data-state="held"] {
  background: var(--held-bg); color: var(--held-fg); }
[data-state="down"] > .state, .state[data-state="down"] {
  background: var(--down-bg); color: var(--down-fg); }
td.cell[data-state="n/a"] { color: var(--muted); }
.legend { margin: 10px 0 0; display: flex; flex-wrap: wrap; gap: 6px 10px; font-size: 12px; }
.legend .state { min-width: 0; }
.summary { display: flex; flex-wrap: wrap; gap: 8px 24px; margin-bottom: 16px; }
.summary div { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 8px 14px; min-width: 130px; }
.summary b { display: block; font-size: 20px; font-weight: 600; }
.summary span { color: var(--muted); font-size: 12px; }
.summary .attention b { color: var(--bad-fg); }
form#login { max-width: 460px; margin: 48px auto; }
form#login label { display: block; font-weight: 600; margin-bottom: 6px; }
form#login .row { display: flex; gap: 8px; }
input[type=password] { flex: 1; padding: 6px 10px; font: inherit; border: 1px solid var(--line);
  border-radius: 6px; }
button { font: inherit; padding: 5px 12px; border-radius: 6px; border: 1px solid var(--line);
  background: #f6f8fa; color: var(--fg); cursor: pointer; white-space: nowrap; }
button:hover { background: #eef1f4; }
button:disabled { opacity: .55; cursor: default; }
button.primary { background: #1f883d; border-color: #1a7f37; color: #fff; }
header button { background: transparent; color: #fff; border-color: #57606a; }
header button:hover { background: #32383f; }
.hint { color: var(--muted); font-size: 12px; margin: 8px 0 0; }
.banner { padding: 8px 12px; border-radius: 6px; margin-bottom: 16px; }
.banner.error, #action-result.error { background: var(--bad-bg); color: var(--bad-fg);
  border: 1px solid #ffcecb; }
#action-result { padding: 6px 10px; border-radius: 6px; margin-bottom: 10px; }
#action-result.ok { background: var(--ok-bg); color: var(--ok-fg); border: 1px solid #aceebb; }
.conflict { border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px;
  margin-bottom: 10px; }
.conflict:last-child { margin-bottom: 0; }
.conflict .head { display: flex; flex-wrap: wrap; gap: 4px 12px; align-items: baseline;
  margin-bottom: 6px; }
.conflict .kind { background: var(--held-bg); color: var(--held-fg); border-radius: 12px;
  padding: 1px 8px; font-size: 12px; font-weight: 600; }
.conflict .subject { font-weight: 600; }
.serving { color: var(--ok-fg); font-size: 11px; font-weight: 600; text-transform: uppercase; }
.empty { color: var(--muted); margin: 0; }
footer { color: var(--muted); font-size: 12px; text-align: center; margin-top: 16px; }
</style>
</head>
<body>
<header>
  <h1>xdnsd <span class="node" id="node-name"></span></h1>
  <span class="spacer"></span>
  <span id="updated" aria-live="polite"></span>
  <button id="logout" type="button" hidden>Sign out</button>
</header>
<main>
  <div id="error" class="banner error" role="alert" hidden></div>
  <form id="login" class="card" hidden>
    <label for="token">API token</label>
    <div class="row">
      <input type="password" id="token" name="token" autocomplete="current-password"
             placeholder="a token from [api.tokens] in xdnsd.toml" required>
      <button id="login-button" class="primary" type="submit">Sign in</button>
    </div>
    <p class="hint">Sent as <span class="mono">Authorization: Bearer</span> to this
      server's API and kept for this browser tab only.</p>
  </form>
  <div id="dashboard" hidden>
    <div class="summary" id="summary"></div>
    <section class="card" id="zones-section">
      <h2>Zones <span class="count" id="zones-count"></span></h2>
      <div class="scroll"><table id="matrix"></table></div>
      <p class="legend" id="legend"></p>
    </section>
    <div class="grid">
      <section class="card" id="nodes-section">
        <h2>Nodes</h2>
        <div class="scroll"><table id="nodes"></table></div>
      </section>
      <section class="card" id="targets-section">
        <h2>Targets</h2>
        <div class="scroll"><table id="targets"></table></div>
      </section>
    </div>
    <section class="card" id="conflicts-section">
      <h2>Open conflicts <span class="count" id="conflicts-count"></span></h2>
      <div id="action-result" role="status" hidden></div>
      <div id="conflicts"></div>
    </section>
    <div class="grid">
      <section class="card" id="changes-section">
        <h2>Recent changes</h2>
        <div class="scroll"><table id="changes"></table></div>
      </section>
      <section class="card" id="syncs-section">
        <h2>Recent sync runs</h2>
        <div class="scroll"><table id="syncs"></table></div>
      </section>
    </div>
    <footer>Refreshed every 3 s from <span class="mono">GET /api/v1/status</span>.</footer>
  </div>
</main>
<script>
"use strict";
(function () {
  const TOKEN_KEY = "xdnsd-api-token";
  const REFRESH_MS = 3000;
  const STATES = ["in-sync", "pending", "out-of-sync", "held", "down", "unknown"];
  const $ = (id) => document.getElementById(id);
  let timer = null;
  let generation = 0;   // a sign-out or a new sign-in drops the answers still in flight
  let rendered = {};    // section -> the JSON it was last drawn from (redraw on change only)
  let lastOk = null;
  let latest = 0;       // only the latest request draws and schedules the next one

  // --- small helpers -------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = String(v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  const pad = (n) => String(n).padStart(2, "0");
  function clock(ms) {
    if (ms === null || ms === undefined) return "";
    const d = new Date(ms);
    const today = new Date();
    const hms = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    if (d.toDateString() === today.toDateString()) return hms;
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hms}`;
  }
  const fromSeconds = (s) => (s === null || s === undefined ? null : s * 1000);
  const full = (ms) => (ms === null || ms === undefined ? null : new Date(ms).toString());
  function badge(state, text) {
    return el("span", {class: "state", "data-state": state, text: text || state});
  }
  function table(id, headers, rows, empty) {
    const t = $(id);
    t.replaceChildren();
    if (!rows.length) {
      t.append(el("tbody", {}, el("tr", {}, el("td", {class: "empty", text: empty}))));
      return;
    }
    t.append(el("thead", {}, el("tr", {}, headers.map((h) =>
      el("th", {class: h.endsWith("#") ? "num" : null, text: h.replace(/#$/, "")})))));
    t.append(el("tbody", {}, rows));
  }
  function section(name, data, draw) {
    const key = JSON.stringify(data);
    if (rendered[name] === key) return;
    rendered[name] = key;
    draw(data);
  }
  function rrsetText(rrset) {
    if (!rrset) return "(none: deleted)";
    const [name, type, ttl, values] = rrset;
    return `${name} ${ttl} ${type} ${(values || []).join(" | ")}`;
  }

  // --- the API -------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }
  async function api(method, path, body) {
    const headers = {Authorization: "Bearer " + (sessionStorage.getItem(TOKEN_KEY) || "")};
    const init = {method, headers, cache: "no-store"};
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let answer;
    try {
      answer = await fetch(path, init);
    } catch (exc) {
      throw new ApiError(0, "unreachable", "the API does not answer (" + exc.message + ")");
    }
    let doc = null;
    try { doc = await answer.json(); } catch (exc) { doc = null; }
    if (!answer.ok) {
      const err = doc && doc.error ? doc.error : {};
      throw new ApiError(answer.status, err.code || "http-" + answer.status,
                         err.message || "HTTP " + answer.status);
    }
    return doc;
  }

  // --- signing in and out --------------------------------------------------------------------

  function showError(text) {
    $("error").textContent = text || "";
    $("error").hidden = !text;
  }
  function signedOut(message) {
    generation++;
    clearTimeout(timer);
    sessionStorage.removeItem(TOKEN_KEY);
    rendered = {};
    lastOk = null;
    $("dashboard").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    $("updated").textContent = "";
    $("node-name").textContent = "";
    $("action-result").hidden = true;
    showError(message);
    $("token").focus();
  }
  function signedIn() {
    $("login").hidden = true;
    $("logout").hidden = false;
    showError("");
    refresh(++generation);
  }
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token").value = "";
    signedIn();
  });
  $("logout").addEventListener("click", () => signedOut(""));

  // --- polling -------------------------------------------------------------------------------

  async function refresh(gen) {
    if (gen !== generation) return;
    clearTimeout(timer);
    const mine = ++latest;
    try {
      const status = await api("GET", "/api/v1/status");
      if (gen !== generation || mine !== latest) return;
      lastOk = Date.now();
      showError("");
      draw(status);
      $("dashboard").hidden = false;
      const updated = $("updated");
      updated.classList.remove("stale");
      updated.textContent = "updated " + clock(lastOk);
    } catch (exc) {
      if (gen !== generation || mine !== latest) return;
      if (exc.status === 401) {
        signedOut("The API refused the token: " + exc.message + ".");
        return;
      }
      showError("Could not load the status: " + exc.message);
      const updated = $("updated");
      updated.classList.add("stale");
      updated.textContent = lastOk ? "stale: last updated " + clock(lastOk) : "not loaded";
    }
    if (gen === generation && mine === latest) {
      timer = setTimeout(() => refresh(gen), REFRESH_MS);
    }
  }
  function refreshNow() { refresh(generation); }

  // --- drawing -------------------------------------------------------------------------------

  function draw(s) {
    $("node-name").textContent = s.node ? "· " + s.node : "";
    document.title = s.node ? `xdnsd ${s.node} status` : "xdnsd status";
    section("summary", [s.zones, s.nodes, s.targets, (s.conflicts || []).length], () =>
      drawSummary(s));
    section("matrix", [s.zones, s.nodes, s.targets], () => drawMatrix(s));
    section("nodes", s.nodes, drawNodes);
    section("targets", s.targets, drawTargets);
    section("conflicts", [s.conflicts, s.node], () => drawConflicts(s.conflicts || []));
    section("changes", s.changes, drawChanges);
    section("syncs", s.syncs, drawSyncs);
  }

  function drawSummary(s) {
    const zones = s.zones || [], nodes = s.nodes || [], targets = s.targets || [];
    const peers = nodes.filter((n) => !n.self);
    const linked = peers.filter((n) => n.connected).length;
    const inSync = targets.filter((t) => t.state === "in-sync").length;
    const open = (s.conflicts || []).length;
    const item = (value, label, attention) =>
      el("div", {class: attention ? "attention" : null}, el("b", {text: value}),
         el("span", {text: label}));
    $("summary").replaceChildren(
      item(zones.length, zones.length === 1 ? "zone" : "zones", false),
      item(`${linked}/${peers.length}`, "peers connected", linked < peers.length),
      item(`${inSync}/${targets.length}`, "targets in sync", inSync < targets.length),
      item(open, open === 1 ? "open conflict" : "open conflicts", open > 0));
  }

  function columnsOf(s) {
    const columns = [], seen = new Set();
    const add = (id, detail) => {
      if (id === undefined || seen.has(id)) return;
      seen.add(id);
      columns.push({id, detail});
    };
    for (const n of s.nodes || []) add(n.id, n.self ? "this node" : "node");
    for (const t of s.targets || []) add(t.target, t.kind || "target");
    for (const z of s.zones || []) for (const id of Object.keys(z.cells || {})) add(id, "");
    return columns;
  }
  function cellTitle(s, zone, column, state) {
    const target = (s.targets || []).find((t) => t.target === column && t.zone === zone);
    if (target && target.reason) return `${column}: ${state}: ${target.reason}`;
    const node = (s.nodes || []).find((n) => n.id === column);
    if (node && !node.self && node.error) return `${column}: ${state}: ${node.error}`;
    return `${zone} at ${column}: ${state}`;
  }
  function drawMatrix(s) {
    const zones = s.zones || [];
    const columns = columnsOf(s);
    $("zones-count").textContent = `(${zones.length})`;
    const head = el("tr", {}, el("th", {text: "Zone"}), el("th", {class: "num", text: "Serial"}),
      columns.map((c) => el("th", {class: "column", "data-column": c.id, scope: "col"},
        c.id, c.detail ? el("small", {text: c.detail}) : null)));
    const rows = zones.map((z) => el("tr", {"data-zone": z.zone},
      el("th", {scope: "row", class: "mono"}, z.zone,
         z.kind && z.kind !== "primary" ? el("small", {text: z.kind}) : null),
      el("td", {class: "num mono", text: z.serial ?? ""}),
      columns.map((c) => {
        const state = (z.cells || {})[c.id];
        if (state === undefined) {
          return el("td", {class: "cell", "data-zone": z.zone, "data-column": c.id,
                           "data-state": "n/a", title: `${c.id} does not mirror ${z.zone}`,
                           text: "\u2013"});
        }
        return el("td", {class: "cell", "data-zone": z.zone, "data-column": c.id,
                         "data-state": state, title: cellTitle(s, z.zone, c.id, state)},
                  badge(state));
      })));
    const t = $("matrix");
    t.replaceChildren(el("thead", {}, head), el("tbody", {}, rows.length ? rows :
      el("tr", {}, el("td", {class: "empty", text: "No zones."}))));
    $("legend").replaceChildren(...STATES.map((st) => badge(st)));
  }

  function drawNodes(nodes) {
    table("nodes", ["Node", "Address", "Link", "Since", "Lag#", "Error"], (nodes || []).map(
      (n) => el("tr", {"data-node": n.id, "data-connected": n.connected ? "true" : "false"},
        el("td", {}, el("b", {text: n.id}), n.self ? el("span", {class: "muted",
          text: " (this node)"}) : null),
        el("td", {class: "mono", text: n.self ? "" : n.address || ""}),
        el("td", {}, n.self ? badge("connected", "self") :
          badge(n.connected ? "connected" : "disconnected")),
        el("td", {class: "muted", title: full(fromSeconds(n.since)),
                  text: clock(fromSeconds(n.since))}),
        el("td", {class: "num", text: n.self ? "" : n.lag ?? ""}),
        el("td", {class: "wrap", text: n.error || ""}))), "No nodes.");
  }

  function drawTargets(targets) {
    table("targets", ["Target", "Zone", "Owner", "State", "Since", "Reason"],
      (targets || []).map((t) => el("tr", {"data-target": t.target, "data-state": t.state},
        el("td", {}, el("b", {text: t.target}), el("span", {class: "muted",
          text: t.kind ? " " + t.kind : ""})),
        el("td", {class: "mono", text: t.zone || ""}),
        el("td", {text: t.owner || ""}),
        el("td", {}, badge(t.state || "unknown")),
        el("td", {class: "muted", title: full(fromSeconds(t.since)),
                  text: clock(fromSeconds(t.since))}),
        el("td", {class: "wrap", text: t.reason || ""}))), "No targets configured.");
  }

  // --- conflicts -----------------------------------------------------------------------------

  function isProvider(c) { return c.target !== undefined && !Array.isArray(c.sides); }

  function keepButton(c, keep, label) {
    return el("button", {type: "button", class: "keep", "data-keep": keep,
                         "data-conflict-id": c.id, text: label,
                         onclick: (event) => resolve(c, keep, label, event.currentTarget)});
  }
  function drawConflicts(conflicts) {
    $("conflicts-count").textContent = `(${conflicts.length})`;
    const box = $("conflicts");
    if (!conflicts.length) {
      box.replaceChildren(el("p", {class: "empty", id: "no-conflicts",
                                   text: "No open conflicts."}));
      return;
    }
    box.replaceChildren(...conflicts.map((c) => isProvider(c) ? providerConflict(c) :
      replicationConflict(c)));
  }
  function conflictHead(c, kind, subject) {
    return el("div", {class: "head"},
      el("span", {class: "kind", text: kind}),
      el("span", {class: "subject mono", text: subject}),
      el("span", {class: "muted", text: "zone " + (c.zone || "?")}),
      el("span", {class: "muted mono", text: "id " + c.id}));
  }
  function replicationConflict(c) {
    const offered = new Set();
    const rows = (c.sides || []).map((side, i) => {
      const ms = side.hlc === undefined ? null : Math.floor(side.hlc / 65536);
      let action = null;
      if (!offered.has(side.node)) {  // keep NODE keeps that node's highest ranked side
        offered.add(side.node);
        action = keepButton(c, side.node, "Keep " + side.node);
      }
      return el("tr", {class: "side", "data-node": side.node},
        el("td", {}, i === 0 ? el("span", {class: "serving", text: "serving"}) : ""),
        el("td", {class: "mono", text: `${side.node}:${side.counter}`}),
        el("td", {class: "muted", title: full(ms), text: clock(ms)}),
        el("td", {class: "muted", text: side.origin || "-"}),
        el("td", {class: "mono wrap", text: side.what}),
        el("td", {class: "num"}, action));
    });
    return el("article", {class: "conflict", "data-conflict-id": c.id, "data-kind": c.kind},
      conflictHead(c, c.kind, c.subject || ""),
      el("table", {}, el("tbody", {}, rows)));
  }
  function providerConflict(c) {
    const subject = `${c.owner || ""} ${c.rdtype || ""}`.trim();
    const row = (label, rrset, keep, button) => el("tr", {class: "side", "data-side": keep},
      el("td", {text: label}),
      el("td", {class: "mono wrap", text: rrsetText(rrset)}),
      el("td", {class: "num"}, keepButton(c, keep, button)));
    return el("article", {class: "conflict", "data-conflict-id": c.id, "data-kind": "provider"},
      conflictHead(c, "zone vs " + (c.target || "provider"), subject),
      el("table", {}, el("tbody", {},
        row("in the zone", c.local, "local", "Keep zone"),
        row(`at ${c.target} (provider)`, c.remote, "remote", "Keep provider"))));
  }

  function actionResult(ok, text) {
    const box = $("action-result");
    box.className = ok ? "ok" : "error";
    box.setAttribute("data-outcome", ok ? "ok" : "error");
    box.setAttribute("role", ok ? "status" : "alert");
    box.textContent = text;
    box.hidden = false;
  }
  async function resolve(c, keep, label, button) {
    const card = button.closest(".conflict");
    const buttons = card ? card.querySelectorAll("button") : [button];
    buttons.forEach((b) => { b.disabled = true; });
    try {
      const path = "/api/v1/conflicts/" + encodeURIComponent(c.id) + "/resolve";
      const answer = await api("POST", path, {keep});
      actionResult(true, `Conflict ${c.id} resolved (${label.toLowerCase()})` +
                   (answer && answer.message ? ": " + answer.message : "."));
      rendered.conflicts = null;
      refreshNow();
    } catch (exc) {
      if (exc.status === 401) {
        signedOut("The API refused the token: " + exc.message + ".");
        return;
      }
      actionResult(false, `Could not resolve conflict ${c.id}: ${exc.message}` +
                   (exc.status ? ` (${exc.status} ${exc.code})` : ""));
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  // --- history -------------------------------------------------------------------------------

  function drawChanges(changes) {
    table("changes", ["Time", "Zone", "Serial", "Records", "Dot", "Origin"],
      (changes || []).map((c) => el("tr", {class: "change", "data-zone": c.zone},
        el("td", {class: "muted", title: full(c.time_ms), text: clock(c.time_ms)}),
        el("td", {class: "mono", text: c.zone}),
        el("td", {class: "mono", text: c.serial_from === null || c.serial_from === undefined ?
          `${c.serial_to ?? ""}` : `${c.serial_from} \u2192 ${c.serial_to ?? "?"}`}),
        el("td", {class: "mono", text: `+${c.added ?? 0} \u2212${c.removed ?? 0}`}),
        el("td", {class: "mono", text: Array.isArray(c.dot) ? c.dot.join(":") : ""}),
        el("td", {class: "clip", title: c.origin || null, text: c.origin || "-"}))),
      "No changes yet.");
  }

  function took(start, end) {
    if (typeof start !== "number" || typeof end !== "number") return "";
    const seconds = Math.max(0, end - start);
    return seconds < 1 ? `${Math.round(seconds * 1000)} ms` : `${seconds.toFixed(1)} s`;
  }
  function syncOutcome(r) {
    if (r.error) return badge("error", "error");
    if (r.held) return badge("held", "held");
    if (r.conflicts) return badge("held", `${r.conflicts} conflict(s)`);
    return badge("ok", "ok");
  }
  function drawSyncs(syncs) {
    table("syncs", ["Start", "Target", "Took#", "Pushed#", "Imported#", "Calls#", "Result"],
      (syncs || []).map((r) => el("tr", {class: "sync", "data-target": r.target},
        el("td", {class: "muted", title: full(fromSeconds(r.start)),
                  text: clock(fromSeconds(r.start))}),
        el("td", {}, r.target, r.full ? el("span", {class: "muted", text: " full"}) : null),
        el("td", {class: "num", text: took(r.start, r.end)}),
        el("td", {class: "num", text: r.pushed ?? ""}),
        el("td", {class: "num", text: r.imported ?? ""}),
        el("td", {class: "num", text: r.calls ?? ""}),
        el("td", {class: "wrap"}, syncOutcome(r), " ",
           el("span", {class: "muted", text: r.error || (typeof r.held === "string" ?
             r.held : "")})))), "No sync runs yet.");
  }

  // --- start ---------------------------------------------------------------------------------

  if (sessionStorage.getItem(TOKEN_KEY)) signedIn();
  else signedOut("");
})();
</script>
</body>
</html>
"""

PAGE: bytes = _HTML.encode()

__all__ = ["PAGE"]
