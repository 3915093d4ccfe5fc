// The master's web UI: read-only pages over this master's /api/* (master/http.py).
// Every value from the cluster is put in the page as text (textContent), never as
// HTML; a link is made only to this master's own /api/ paths or to http(s) URLs.
"use strict";

const PAGES = ["overview", "agents", "frameworks", "tasks", "apps"];
const REFRESH_MS = 3000;
let busy = false;

// -- building the page from values, never from HTML ---------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "href") {
      const href = safeHref(value);
      if (href) node.setAttribute("href", href);
    } else if (key === "width") {
      node.style.width = `${Math.max(0, Math.min(100, Number(value) || 0))}%`;
    } else {
      node.setAttribute(key, String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function safeHref(url) {
  const text = String(url);
  return /^(https?:\/\/|\/api\/|\/metrics$|#)/i.test(text) ? text : "";
}

function link(url, text, newTab) {
  const href = safeHref(url || "");
  if (!href) return document.createTextNode(text === undefined ? "" : String(text));
  return el("a", {href, target: newTab ? "_blank" : null, rel: newTab ? "noopener" : null},
            text === undefined ? href : text);
}

function table(name, columns, rows, key) {
  const head = el("tr", {}, columns.map((c) => el("th", {}, c.title)));
  const body = rows.map((row) => el("tr", {"data-id": key(row)},
    columns.map((c) => el("td", {class: c.num ? "num" : null}, c.cell(row)))));
  if (rows.length === 0) {
    body.push(el("tr", {}, el("td", {colspan: columns.length, class: "muted"}, "none")));
  }
  return el("table", {"data-table": name}, el("thead", {}, head), el("tbody", {}, body));
}

// -- formatting ---------------------------------------------------------------------------------
function num(x) {
  return Number(x || 0).toLocaleString(undefined, {maximumFractionDigits: 2});
}

function mib(x) {
  const v = Number(x || 0);
  return v >= 1024 ? `${num(v / 1024)} GiB` : `${num(v)} MiB`;
}

function when(seconds) {
  if (!seconds) return "";
  return new Date(seconds * 1000).toLocaleString();
}

const GOOD = ["ACTIVE", "SUBSCRIBED", "RUNNING", "FINISHED", "NONE", "LEADER"];
const WARN = ["DISCONNECTED", "STAGING", "STARTING", "KILLING", "DRAINING", "UNREACHABLE",
              "DOWN"];

function state(name) {
  const kind = GOOD.includes(name) ? "good" : WARN.includes(name) ? "warn" : "bad";
  return el("span", {class: `state ${kind}`}, name);
}

function resources(r) {
  return `${num(r.cpus)} cpus · ${mib(r.mem)} mem · ${mib(r.disk)} disk · ${num(r.ports)} ports`;
}

function usage(used, offered, total, format) {
  const share = (x) => (total > 0 ? (100 * x) / total : 0);
  return el("span", {},
    el("span", {class: "bar"}, el("span", {class: "offered", width: share(used + offered)}),
       el("span", {width: share(used)})),
    `${format(used)} / ${format(total)}`);
}

// -- pages --------------------------------------------------------------------------------------
function overview(s) {
  const m = s.master;
  const r = s.resources;
  const running = s.tasks.filter((t) => !t.completed).length;
  const masters = m.masters.map((address) => ({address}));
  const rows = [["cpus", num], ["mem", mib], ["disk", mib], ["ports", num]];
  return [
    el("div", {class: "cards"},
       card(s.agents.filter((a) => a.state !== "GONE").length, "agents"),
       card(s.frameworks.length, "frameworks"),
       card(running, "active tasks"),
       card(m.masters.length, "masters")),
    el("h2", {}, "Resources"),
    table("resources", [
      {title: "Resource", cell: (x) => x[0]},
      {title: "Used (offered)", cell: (x) => usage(r.used[x[0]], r.offered[x[0]],
                                                    r.total[x[0]], x[1])},
      {title: "Used", num: true, cell: (x) => x[1](r.used[x[0]])},
      {title: "Offered", num: true, cell: (x) => x[1](r.offered[x[0]])},
      {title: "Total", num: true, cell: (x) => x[1](r.total[x[0]])},
    ], rows, (x) => x[0]),
    el("h2", {}, "Tasks"),
    table("task-states", [
      {title: "State", cell: (x) => state(x[0])},
      {title: "Tasks", num: true, cell: (x) => num(x[1])},
    ], Object.entries(byState(s.tasks)), (x) => x[0]),
    el("h2", {}, "Masters"),
    table("masters", [
      {title: "Address", cell: (x) => el("span", {class: "id"}, x.address)},
      {title: "Role", cell: (x) => (x.address === m.leader ? state("LEADER") : "standby")},
      {title: "", cell: (x) => (x.address === m.self ? "this master" : "")},
    ], masters, (x) => x.address),
  ];
}

function byState(list) {
  const counts = {};
  for (const t of list) counts[t.state] = (counts[t.state] || 0) + 1;
  return counts;
}

function card(n, label) {
  return el("div", {class: "card"}, el("div", {class: "n"}, String(n)),
            el("div", {class: "label"}, label));
}

function agents(s) {
  return [el("h2", {}, "Agents"), table("agents", [
    {title: "Hostname", cell: (a) => a.hostname},
    {title: "ID", cell: (a) => el("span", {class: "id"}, a.id)},
    {title: "State", cell: (a) => state(a.state)},
    {title: "Maintenance", cell: (a) => state(a.maintenance)},
    {title: "CPUs", cell: (a) => usage(a.used.cpus, a.offered.cpus, a.total.cpus, num)},
    {title: "Memory", cell: (a) => usage(a.used.mem, a.offered.mem, a.total.mem, mib)},
    {title: "Disk", cell: (a) => usage(a.used.disk, a.offered.disk, a.total.disk, mib)},
    {title: "Ports", num: true, cell: (a) => `${num(a.used.ports)} / ${num(a.total.ports)}`},
    {title: "Metrics", cell: (a) => link(a.metrics_url, a.metrics_url ? "metrics" : "", true)},
    {title: "Registered", cell: (a) => when(a.registered_time)},
  ], s.agents, (a) => a.id)];
}

function frameworks(s) {
  return [el("h2", {}, "Frameworks"), table("frameworks", [
    {title: "Name", cell: (f) => f.name},
    {title: "ID", cell: (f) => el("span", {class: "id"}, f.id)},
    {title: "Roles", cell: (f) => f.roles.join(", ")},
    {title: "State", cell: (f) => state(f.state)},
    {title: "Active tasks", num: true, cell: (f) => num(f.active_tasks)},
    {title: "Tasks by state", cell: (f) => Object.entries(f.tasks)
      .map(([k, v]) => `${k} ${v}`).join(", ")},
    {title: "Resources used", cell: (f) => resources(f.used)},
    {title: "Web UI", cell: (f) => link(f.webui_url, f.webui_url, true)},
  ], s.frameworks, (f) => f.id)];
}

function tasks(s) {
  const columns = [
    {title: "ID", cell: (t) => el("span", {class: "id"}, t.id)},
    {title: "Name", cell: (t) => t.name},
    {title: "Framework", cell: (t) => t.framework_name || t.framework_id},
    {title: "Agent", cell: (t) => t.agent_hostname || t.agent_id},
    {title: "State", cell: (t) => state(t.state)},
    {title: "Reason", cell: (t) => t.reason},
    {title: "Message", cell: (t) => t.message},
    {title: "Updated", cell: (t) => when(t.updated_time)},
    {title: "Logs", cell: (t) => (t.logs_url ? [
      link(t.logs_url, "stdout", true), " ",
      link(t.logs_url.replace("stream=stdout", "stream=stderr"), "stderr", true)] : "")},
  ];
  const key = (t) => `${t.framework_id}/${t.id}`;
  return [el("h2", {}, "Active tasks"),
          table("tasks", columns, s.tasks.filter((t) => !t.completed), key),
          el("h2", {}, "Completed tasks"),
          table("completed-tasks", columns, s.tasks.filter((t) => t.completed), key)];
}

function apps(s, answer) {
  if (!answer) return [el("p", {class: "muted"}, "Loading apps…")];
  if (answer.services.length === 0) {
    return [el("p", {class: "muted"},
               "No framework here serves apps (none registered a web UI URL).")];
  }
  return answer.services.map((svc) => el("section", {"data-service": svc.framework_id},
    el("h2", {}, `${svc.name}: apps `, link(svc.url, `(${svc.url})`, true)),
    svc.error ? el("div", {class: "error"}, `cannot read ${svc.url}: ${svc.error}`) : null,
    table("apps", [
      {title: "App", cell: (a) => el("span", {class: "id"}, a.id)},
      {title: "Instances", cell: (a) => usage(a.running, a.staged, a.instances,
                                             (x) => num(x))},
      {title: "Running", num: true, cell: (a) => num(a.running)},
      {title: "Staged", num: true, cell: (a) => num(a.staged)},
      {title: "Healthy", num: true, cell: (a) => num(a.healthy)},
      {title: "Unhealthy", num: true, cell: (a) => num(a.unhealthy)},
      {title: "Deployments", cell: (a) => a.deployments.join(", ")},
      {title: "Version", cell: (a) => a.version},
    ], svc.apps, (a) => a.id),
    el("h2", {}, "Deployments"),
    table("deployments", [
      {title: "ID", cell: (d) => el("span", {class: "id"}, d.id)},
      {title: "Apps", cell: (d) => d.apps.join(", ")},
      {title: "Progress", cell: (d) => progress(d)},
      {title: "Current step", cell: (d) => `${d.step} of ${d.steps}`},
      {title: "Current actions", cell: (d) => d.actions.join(", ")},
    ], svc.deployments, (d) => d.id)));
}

function progress(d) {
  // Steps before the current one are done; the current one is under way.
  const done = Math.max(0, d.step - 1);
  return el("span", {},
    el("span", {class: "bar"}, el("span", {class: "offered", width: (100 * d.step) / d.steps}),
       el("span", {width: (100 * done) / d.steps})),
    `${done} of ${d.steps} steps done`,
    // A scale is one step: what it waits for is each app's instances.
    ...(d.instances || []).map((i) => el("div", {class: "instances"},
      `${i.app}: ${i.running} of ${i.wanted} instances running`)));
}

// -- refreshing ---------------------------------------------------------------------------------
function page() {
  const name = location.hash.replace(/^#\/?/, "");
  return PAGES.includes(name) ? name : "overview";
}

// Under access rules (the master's --acls) /api/* answers 401 to a caller
// without a principal: the page asks once for a bearer token (`juggler token
// create NAME --tokens FILE`) and keeps it in this browser's localStorage.
const TOKEN_KEY = "juggler.token";
let tokenDeclined = false;

async function getJSON(path) {
  const headers = {Accept: "application/json"};
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, {headers});
  if (response.status === 401 && !tokenDeclined) {
    localStorage.removeItem(TOKEN_KEY);
    const given = window.prompt("This cluster's API needs a token:");
    if (given && given.trim()) {
      localStorage.setItem(TOKEN_KEY, given.trim());
      return getJSON(path);
    }
    tokenDeclined = true;   // asked again after a reload of the page
  }
  const body = await response.json();
  return {ok: response.ok, body};
}

function showLeader(m) {
  const leader = document.getElementById("leader");
  if (!m) { leader.textContent = ""; return; }
  if (m.is_leader) {
    leader.textContent = `leading master: ${m.self} (this one)`;
  } else if (m.leader) {
    leader.textContent = `standby ${m.self} · following the leader ${m.leader}`;
  } else {
    leader.textContent = `standby ${m.self} · no leader known`;
  }
}

function showError(text) {
  const box = document.getElementById("error");
  box.hidden = !text;
  box.textContent = text || "";
}

// Whether the user has text selected inside the shown page: a re-render
// would replace the selected nodes and lose the selection (copying a task id).
function selectingInPage() {
  const selection = window.getSelection();
  if (!selection || selection.isCollapsed || selection.toString() === "") return false;
  const shown = document.getElementById("page");
  for (let i = 0; i < selection.rangeCount; i++) {
    if (selection.getRangeAt(i).intersectsNode(shown)) return true;
  }
  return false;
}

async function refresh() {
  if (busy) return;
  busy = true;
  const name = page();
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("active", a.dataset.page === name);
  }
  try {
    const got = await getJSON("/api/state");
    showLeader(got.body.master);
    if (!got.ok) {
      showError(got.body.error || "the master could not answer");
      return;
    }
    let appsAnswer = null;
    if (name === "apps") {
      const a = await getJSON("/api/apps");
      if (!a.ok) { showError(a.body.error || "the master could not read the apps"); return; }
      appsAnswer = a.body;
    }
    if (name === document.body.dataset.page && selectingInPage()) {
      // Keep the page (and the selection) as it is until the text is unselected.
      document.body.dataset.held = "selection";
      document.getElementById("updated").textContent =
        "not refreshed while text is selected";
      showError("");
      return;
    }
    delete document.body.dataset.held;
    const build = {overview, agents, frameworks, tasks, apps}[name];
    document.getElementById("page").replaceChildren(...build(got.body, appsAnswer));
    document.getElementById("updated").textContent =
      `updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.page = name;   // what is shown now (tests wait on it)
    showError("");
  } catch (e) {
    showError(`cannot reach the master: ${e}`);
  } finally {
    busy = false;
  }
}

window.addEventListener("hashchange", () => { refresh(); });
refresh();
setInterval(refresh, REFRESH_MS);
