// Palisade policy studio (docs/policy-studio.md). Plain JavaScript, no framework, no network
// access beyond this admin listener. Every call sends the admin token; the edited policies
// travel in the request bodies and are never applied to the live set.
"use strict";

const API = "/admin/studio/api";
const state = {
  token: null,
  live: null,
  files: [],      // [{name, text, live}]
  current: 0,
  errors: [],     // validation errors [{file, line, column, message}]
  highlights: [], // [{file, line, end_line, kind}]
  validateTimer: null,
  validateSeq: 0,
};

const $ = (id) => document.getElementById(id);

// el("tag", {attr: value, class: "…"}, child…): children are nodes or text (never HTML).
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function showMessage(text, isError) {
  const m = $("message");
  m.textContent = text;
  m.className = isError ? "error" : "";
  if (!text) m.classList.add("hidden");
}

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + state.token };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(API + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  let json = null;
  try { json = await resp.json(); } catch (_) { /* not JSON */ }
  if (!resp.ok) {
    const err = json && json.error ? json.error : { code: String(resp.status), message: resp.statusText };
    if (resp.status === 401) {
      sessionStorage.removeItem("palisade-admin-token");
      $("login").classList.remove("hidden");
    }
    throw new Error(err.code + ": " + err.message);
  }
  return json;
}

function edited() {
  return state.files.map((f) => ({ name: f.name, text: f.text }));
}

// ---------------------------------------------------------------- editor

function renderTabs() {
  const tabs = $("tabs");
  tabs.replaceChildren(...state.files.map((f, i) => el("button", {
    class: (i === state.current ? "active " : "") + (f.text !== f.live ? "dirty" : ""),
    dataset: { file: f.name },
    onclick: () => openFile(i),
  }, f.name)));
}

function openFile(i, line) {
  state.current = i;
  $("editor").value = state.files[i].text;
  renderTabs();
  renderLines();
  if (line) scrollToLine(line);
}

function openFileByName(name, line) {
  const i = state.files.findIndex((f) => f.name === name);
  if (i >= 0) openFile(i, line);
}

function scrollToLine(line) {
  const ed = $("editor");
  const lh = parseFloat(getComputedStyle(ed).lineHeight) || 19;
  ed.scrollTop = Math.max(0, (line - 3) * lh);
  syncScroll();
}

function renderLines() {
  const f = state.files[state.current];
  if (!f) return;
  const lines = f.text.split("\n");
  const errLines = new Set(state.errors.filter((e) => e.file === f.name && e.line).map((e) => e.line));
  const hl = state.highlights.filter((h) => h.file === f.name);
  const gutter = [];
  const back = [];
  lines.forEach((text, idx) => {
    const n = idx + 1;
    const h = hl.find((r) => n >= r.line && n <= r.end_line);
    const cls = [errLines.has(n) ? "err" : "", h ? "hl " + h.kind : ""].join(" ").trim();
    gutter.push(el("span", { class: errLines.has(n) ? "err" : "", dataset: { line: n } }, String(n), "\n"));
    back.push(el("span", { class: cls || undefined, dataset: { line: n } }, text || " "));
  });
  $("gutter").replaceChildren(...gutter);
  $("backdrop").replaceChildren(...back);
  syncScroll();
}

function syncScroll() {
  const ed = $("editor");
  $("backdrop").scrollTop = ed.scrollTop;
  $("backdrop").scrollLeft = ed.scrollLeft;
  $("gutter").scrollTop = ed.scrollTop;
}

function onEdit() {
  state.files[state.current].text = $("editor").value;
  state.highlights = [];
  renderTabs();
  renderLines();
  clearTimeout(state.validateTimer);
  $("validation").textContent = "validating…";
  $("validation").className = "status";
  state.validateTimer = setTimeout(validate, 400);
}

async function validate() {
  const seq = ++state.validateSeq;
  let answer;
  try {
    answer = await api("POST", "/validate", { policies: edited() });
  } catch (e) {
    showMessage(e.message, true);
    return;
  }
  if (seq !== state.validateSeq) return; // a newer edit is being validated
  state.errors = answer.valid ? [] : answer.errors;
  const v = $("validation");
  if (answer.valid) {
    v.className = "status ok";
    v.replaceChildren(`valid: ${answer.count} policies`);
  } else {
    v.className = "status bad";
    v.replaceChildren(
      el("strong", {}, `${answer.errors.length} error(s)`),
      el("ul", {}, answer.errors.map((e) => el("li", {
        class: "error",
        dataset: { file: e.file, line: e.line || "", column: e.column || "" },
        onclick: () => openFileByName(e.file, e.line),
      }, `${e.file}:${e.line ?? "?"}:${e.column ?? "?"}: ${e.message}`))),
    );
  }
  renderLines();
}

function download(name, text) {
  const a = el("a", { href: URL.createObjectURL(new Blob([text], { type: "text/plain" })), download: name });
  document.body.append(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

// ---------------------------------------------------------------- pickers

function option(value, label, selected) {
  return el("option", { value, selected: selected || undefined }, label ?? value);
}

function fillPickers() {
  const p = state.live.pickers;
  $("p-type").replaceChildren(...p.principal_types.map((t) => option(t)));
  $("p-tenant").replaceChildren(option("", "(none)"), ...p.tenants.map((t) => option(t)));
  $("p-roles").replaceChildren(el("legend", {}, "Roles"), ...p.roles.map((r) =>
    el("label", {}, el("input", { type: "checkbox", value: r, dataset: { role: r } }), " " + r)));
  const actions = Object.keys(p.actions).filter((a) => p.actions[a].length);
  $("action").replaceChildren(...actions.map((a) => option(a, a, a === "call_tool")));
  $("wc-action").replaceChildren(...p.tool_actions.map((a) => option(a, a, a === "call_tool")));
  onActionChange();
}

function onActionChange() {
  const types = state.live.pickers.actions[$("action").value] || [];
  $("resource-type").replaceChildren(...types.map((t) => option(t)));
  onResourceTypeChange();
}

function onResourceTypeChange() {
  const p = state.live.pickers;
  const ty = $("resource-type").value;
  const ids = ty === "Tool" ? p.tools.map((t) => t.name) : (p.ids[ty] || []);
  $("resource-ids").replaceChildren(...ids.map((i) => option(i)));
  if (!ids.includes($("resource-id").value)) $("resource-id").value = ids[0] || "";
}

function composed() {
  const type = $("p-type").value;
  const roles = [...document.querySelectorAll("#p-roles input:checked")].map((i) => i.value);
  const principal = type === "Anonymous" ? null : {
    type,
    id: $("p-id").value,
    roles,
    tenant: $("p-tenant").value || null,
    mfa: $("p-mfa").checked,
  };
  const action = $("action").value;
  const proto = { call_tool: "mcp", list_tools: "mcp", use_tool: "agui", run_agent: "agui" };
  return {
    principal,
    action,
    resource: `${$("resource-type").value}::${JSON.stringify($("resource-id").value)}`,
    request: {
      method: $("c-method").value || "POST",
      path: $("c-path").value || "/",
      ip: $("p-network").value,
      forwarded: $("c-forwarded").checked,
      time: $("c-time").value || null,
      tls: $("c-tls").checked,
      route: "studio",
      protocol: proto[action] || (action.startsWith("a2a_") ? "a2a" : "http"),
    },
  };
}

// ---------------------------------------------------------------- decisions

function decisionCard(title, d, setKind) {
  if (!d.valid) {
    return el("div", { class: "card", dataset: { set: setKind } }, el("h4", {}, title),
      el("span", { class: "verdict invalid" }, "does not validate"),
      el("ul", {}, d.errors.map((e) => el("li", {}, `${e.file}:${e.line ?? "?"}:${e.column ?? "?"}: ${e.message}`))));
  }
  const verdict = d.allowed ? "allow" : "deny";
  const policies = d.policies.length
    ? el("ul", {}, d.policies.map((p) => el("li", {},
      el("button", {
        class: "link policy-link", dataset: { policy: p.id },
        onclick: () => openFileByName(p.file, p.line),
      }, p.id),
      ` (${p.file}:${p.line}–${p.end_line})`,
      p.annotations && p.annotations.description ? el("div", { class: "muted" }, p.annotations.description) : null)))
    : el("div", { class: "muted" }, d.allowed ? "" : "no permit applies: denied by default");
  return el("div", { class: "card", dataset: { set: setKind } }, el("h4", {}, title),
    el("span", { class: "verdict " + verdict, dataset: { verdict } }, verdict.toUpperCase()),
    policies,
    d.errors && d.errors.length ? el("div", { class: "muted" }, "errors: " + d.errors.join("; ")) : null);
}

function showDecision(target, answer) {
  const ed = answer.edited;
  state.highlights = ed.valid
    ? ed.policies.map((p) => ({ file: p.file, line: p.line, end_line: p.end_line, kind: ed.allowed ? "allow" : "deny" }))
    : [];
  const banner = answer.changed
    ? [el("div", { class: "changed", id: target.id + "-changed" }, "The edits change this decision.")]
    : [];
  target.replaceChildren(
    ...banner,
    el("div", { class: "cols" }, decisionCard("Edited set", ed, "edited"), decisionCard("Live set", answer.live, "live")),
  );
  if (state.highlights.length) openFileByName(state.highlights[0].file, state.highlights[0].line);
  else renderLines();
}

async function decide() {
  try {
    showDecision($("decision"), await api("POST", "/evaluate", { policies: edited(), request: composed() }));
  } catch (e) {
    $("decision").replaceChildren(el("div", { class: "status bad" }, e.message));
  }
}

async function runTests() {
  const out = $("tests-result");
  out.textContent = "running…";
  try {
    const r = await api("POST", "/test", { policies: edited() });
    if (!r.valid) {
      out.replaceChildren(el("div", { class: "status bad" }, "the edited set does not validate"));
      return;
    }
    out.replaceChildren(
      el("div", { id: "tests-summary", class: "status " + (r.failed ? "bad" : "ok") }, `${r.passed} passed, ${r.failed} failed`),
      el("table", {}, el("tr", {}, el("th", {}, "file"), el("th", {}, "case"), el("th", {}, "result")),
        r.cases.map((c) => el("tr", {}, el("td", {}, c.file), el("td", {}, c.name),
          el("td", { class: c.failure ? "fail" : "pass" }, c.failure || "ok")))));
  } catch (e) {
    out.replaceChildren(el("div", { class: "status bad" }, e.message));
  }
}

// ---------------------------------------------------------------- audit

async function loadAudit() {
  const list = $("audit-list");
  try {
    const r = await api("GET", "/audit?filter=" + encodeURIComponent($("audit-filter").value));
    if (!r.file) {
      list.replaceChildren(el("div", { class: "muted" }, r.note || "no audit file"));
      return;
    }
    if (!r.records.length) {
      list.replaceChildren(el("div", { class: "muted" }, `no matching record in ${r.file}`));
      return;
    }
    list.replaceChildren(el("table", {},
      el("tr", {}, ["time", "principal", "action", "resource", "decision", "policies", ""].map((h) => el("th", {}, h))),
      r.records.map((rec) => el("tr", { class: "audit-row", dataset: { line: rec.line, requestId: rec.request_id } },
        el("td", { title: rec.timestamp || "" }, (rec.timestamp || "").slice(11, 19)),
        el("td", {}, rec.principal || "(anonymous)"),
        el("td", {}, rec.action || ""),
        el("td", {}, rec.resource || ""),
        el("td", {}, el("span", { class: "verdict " + (rec.allowed ? "allow" : "deny") },
          (rec.allowed ? "allow" : "deny") + (rec.mode === "shadow" ? " (shadow)" : ""))),
        el("td", {}, (rec.policies || []).join(", ")),
        el("td", {}, el("button", { class: "explain-btn", onclick: () => explainRecord(rec) }, "open in explainer"))))));
  } catch (e) {
    list.replaceChildren(el("div", { class: "status bad" }, e.message));
  }
}

async function explainRecord(rec) {
  const box = $("explainer");
  box.textContent = "explaining…";
  try {
    const r = await api("POST", "/explain-audit", { line: rec.line, request_id: rec.request_id, policies: edited() });
    const a = r.audit;
    const decided = el("div", { id: "explainer-decision" });
    box.replaceChildren(
      el("h4", {}, `Record ${a.request_id} (line ${rec.line})`),
      el("div", {}, "The record says: ",
        el("span", { class: "verdict " + (a.allowed ? "allow" : "deny") }, a.allowed ? "allow" : "deny"),
        a.policies.length ? ` by ${a.policies.join(", ")}` : ""),
      decided,
      el("div", { class: "muted" }, "Not recovered from the record: " + a.not_recovered.join("; ")),
      el("pre", { id: "explainer-text" }, r.text),
    );
    showDecision(decided, r);
    fillComposer(r.request);
  } catch (e) {
    box.replaceChildren(el("div", { class: "status bad" }, e.message));
  }
}

function fillComposer(req) {
  const p = req.principal;
  $("p-type").value = p ? p.type : "Anonymous";
  if (p) {
    $("p-id").value = p.id;
    $("p-tenant").value = p.tenant || "";
    $("p-mfa").checked = !!p.mfa;
    document.querySelectorAll("#p-roles input").forEach((i) => { i.checked = p.roles.includes(i.value); });
  }
  $("action").value = req.action;
  onActionChange();
  const m = /^(\w+)::"(.*)"$/.exec(req.resource);
  if (m) { $("resource-type").value = m[1]; onResourceTypeChange(); $("resource-id").value = JSON.parse(`"${m[2]}"`); }
  $("c-method").value = req.request.method;
  $("c-path").value = req.request.path;
  $("c-time").value = req.request.time || "";
}

// ---------------------------------------------------------------- who-can

async function whoCan() {
  const out = $("wc-matrix");
  out.textContent = "computing…";
  try {
    const m = await api("POST", "/who-can", { action: $("wc-action").value, policies: edited() });
    if (!m.valid) {
      out.replaceChildren(el("div", { class: "status bad" }, "the edited set does not validate"));
      return;
    }
    const label = { allow: "allow", mfa: "MFA", deny: "deny" };
    out.replaceChildren(
      el("div", { class: "legend" }, el("span", { class: "allow" }, "allow"), el("span", { class: "mfa" }, "needs MFA"),
        el("span", { class: "deny" }, "deny"), el("span", {}, "* only for some tenants / scopes / networks / times")),
      el("table", { id: "wc-table" },
        el("tr", {}, el("th", {}, "role \\ tool"), m.tools.map((t) => el("th", { class: "tool" }, t))),
        m.roles.map((role, i) => el("tr", {}, el("th", {}, role), m.cells[i].map((c, j) => el("td", {
          class: "cell " + c.outcome,
          dataset: { role, tool: m.tools[j], outcome: c.outcome },
          title: c.policies.length ? "by " + c.policies.join(", ") : "no permit",
        }, label[c.outcome] + (c.all ? "" : "*")))))));
  } catch (e) {
    out.replaceChildren(el("div", { class: "status bad" }, e.message));
  }
}

// ---------------------------------------------------------------- start

async function connect() {
  try {
    state.live = await api("GET", "/live");
  } catch (e) {
    showMessage(e.message, true);
    $("login").classList.remove("hidden");
    return;
  }
  sessionStorage.setItem("palisade-admin-token", state.token);
  showMessage("");
  $("login").classList.add("hidden");
  $("studio").classList.remove("hidden");
  const s = state.live.set;
  $("set-info").textContent = `set ${s.name} (${s.mode}, ${s.policies} policies, sha256 ${s.hash.slice(0, 12)}…)`;
  state.files = state.live.files.policies.map((f) => ({ name: f.name, text: f.text, live: f.text }));
  state.errors = [];
  openFile(0);
  fillPickers();
  validate();
  loadAudit();
}

function init() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("token")) {
    sessionStorage.setItem("palisade-admin-token", fragment.get("token"));
    history.replaceState(null, "", location.pathname + location.search);
  }
  state.token = sessionStorage.getItem("palisade-admin-token");
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.token = $("token").value.trim();
    connect();
  });
  const ed = $("editor");
  ed.addEventListener("input", onEdit);
  ed.addEventListener("scroll", syncScroll);
  ed.addEventListener("keydown", (ev) => {
    if (ev.key === "Tab") {
      ev.preventDefault();
      ed.setRangeText("  ", ed.selectionStart, ed.selectionEnd, "end");
      onEdit();
    }
  });
  $("reset").addEventListener("click", () => {
    state.files.forEach((f) => { f.text = f.live; });
    openFile(state.current);
    validate();
  });
  $("export").addEventListener("click", () => {
    const f = state.files[state.current];
    download(f.name, f.text);
  });
  $("export-all").addEventListener("click", () => state.files.forEach((f) => download(f.name, f.text)));
  $("action").addEventListener("change", onActionChange);
  $("resource-type").addEventListener("change", onResourceTypeChange);
  $("decide").addEventListener("click", decide);
  $("run-tests").addEventListener("click", runTests);
  $("audit-refresh").addEventListener("click", loadAudit);
  $("audit-filter").addEventListener("change", loadAudit);
  $("wc-run").addEventListener("click", whoCan);
  if (state.token) connect();
  else $("login").classList.remove("hidden");
}

document.addEventListener("DOMContentLoaded", init);
