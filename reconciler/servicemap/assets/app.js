// weft service map: fetches api/graph every refreshSeconds and draws it.
// No library, no build step (package reconciler/servicemap embeds this
// file). Text from the API is only ever set with textContent.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
let selected = null; // {type: "node"|"edge"|"unwanted", id}
let current = null;  // the last graph

function el(tag, attrs, ...children) {
  const e = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function fmtRate(r) { return r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2); }
function fmtPct(p) { return p.toFixed(1) + "%"; }
function fmtMs(ms) {
  if (!ms) return "–";
  return ms >= 1000 ? (ms / 1000).toFixed(2) + " s" : (ms >= 10 ? ms.toFixed(0) : ms.toFixed(1)) + " ms";
}
function sigText(s) {
  if (!s.requestsPerSecond) return ["no traffic"];
  return [fmtRate(s.requestsPerSecond) + " req/s · p99 " + fmtMs(s.p99Ms), fmtPct(s.errorPercent) + " errors"];
}
function ago(t) {
  if (!t) return "";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(t)) / 1000));
  return s < 90 ? s + " s ago" : Math.round(s / 60) + " min ago";
}

async function load() {
  let delay = 5000;
  try {
    const resp = await fetch("api/graph", {cache: "no-store"});
    if (!resp.ok) throw new Error(resp.status + " " + resp.statusText);
    const g = await resp.json();
    delay = Math.max(1000, (g.refreshSeconds || 5) * 1000);
    current = g;
    render(g);
  } catch (err) {
    document.getElementById("signals").textContent = "Cannot reach the control plane (" + err.message + "); retrying.";
  }
  setTimeout(load, delay);
}

function render(g) {
  document.getElementById("mesh").textContent = g.mesh ? "— " + g.mesh + (g.environment ? " (" + g.environment + ")" : "") : "";
  document.getElementById("revision").textContent = g.revision
    ? "Served revision " + g.revision + (g.servedSince ? ", since " + new Date(g.servedSince).toLocaleString() : "")
    : "No revision served yet.";
  const s = g.signals || {};
  let st = "Signals: " + (s.source === "prometheus" ? "Prometheus " + (s.url || "") : "straight from the proxies' stats listeners") +
    ", over " + s.window + (s.at ? ", read " + ago(s.at) : ", first read pending");
  if (s.error) st += ". Last read failed: " + s.error;
  document.getElementById("signals").textContent = st;
  document.getElementById("refresh").textContent = g.refreshSeconds;
  const fail = document.getElementById("failure");
  if (g.lastFailure) {
    fail.hidden = false;
    fail.textContent = "Revision " + g.lastFailure.revision + " failed at step " + g.lastFailure.step + " (the revision above keeps serving): " + g.lastFailure.error;
  } else {
    fail.hidden = true;
  }
  const t = g.thresholds;
  document.getElementById("thresholds").textContent = "Threshold of an edge: the error budget of the destination's SLO (100 − availability), or " +
    t.defaultErrorPercent + "% without one; degraded over " + (t.degradedShare * 100) + "% of it.";
  drawMap(g);
  drawTables(g);
  showDetails(g);
}

// Geometry.
function anchor(n, side) {
  switch (side) {
    case "right": return [n.x + n.w, n.y + n.h / 2];
    case "left": return [n.x, n.y + n.h / 2];
    case "bottom": return [n.x + n.w / 2, n.y + n.h];
    default: return [n.x + n.w / 2, n.y];
  }
}
function bezier(p0, p1, p2, p3, t) {
  const u = 1 - t;
  return [0, 1].map(i => u * u * u * p0[i] + 3 * u * u * t * p1[i] + 3 * u * t * t * p2[i] + t * t * t * p3[i]);
}
// route returns the path and the label's anchor of an edge a -> b; off
// separates edges between the same two nodes.
function route(a, b, off) {
  if (a === b) {
    const [x, y] = anchor(a, "top");
    return {d: `M ${x - 20} ${y} C ${x - 40} ${y - 60}, ${x + 40} ${y - 60}, ${x + 20} ${y}`, at: [x, y - 50]};
  }
  if (b.layer > a.layer) {
    const p0 = anchor(a, "right"), p3 = anchor(b, "left");
    p0[1] += off; p3[1] += off;
    const dx = (p3[0] - p0[0]) / 2;
    const p1 = [p0[0] + dx, p0[1]], p2 = [p3[0] - dx, p3[1]];
    // Labels of long edges sit in the gap before their target.
    const t = b.layer - a.layer > 1 ? 0.86 : 0.5;
    return {d: `M ${p0[0]} ${p0[1]} C ${p1[0]} ${p1[1]}, ${p2[0]} ${p2[1]}, ${p3[0]} ${p3[1]}`, at: bezier(p0, p1, p2, p3, t)};
  }
  if (b.layer === a.layer) {
    // Within a column: out on the right and back.
    const p0 = anchor(a, "right"), p3 = anchor(b, "right");
    p0[1] += off; p3[1] += off;
    const bulge = 50 + Math.abs(p3[1] - p0[1]) / 5;
    const p1 = [p0[0] + bulge, p0[1]], p2 = [p3[0] + bulge, p3[1]];
    return {d: `M ${p0[0]} ${p0[1]} C ${p1[0]} ${p1[1]}, ${p2[0]} ${p2[1]}, ${p3[0]} ${p3[1]}`, at: bezier(p0, p1, p2, p3, 0.5)};
  }
  // Backwards: around, below.
  const p0 = anchor(a, "bottom"), p3 = anchor(b, "bottom");
  p0[0] += off; p3[0] += off;
  const depth = 70 + Math.abs(p3[0] - p0[0]) / 6;
  const p1 = [p0[0], p0[1] + depth], p2 = [p3[0], p3[1] + depth];
  return {d: `M ${p0[0]} ${p0[1]} C ${p1[0]} ${p1[1]}, ${p2[0]} ${p2[1]}, ${p3[0]} ${p3[1]}`, at: bezier(p0, p1, p2, p3, 0.5)};
}

function select(type, id) {
  selected = {type, id};
  if (current) { drawMap(current); showDetails(current); }
}

function keySelect(type, id) {
  return ev => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); select(type, id); } };
}

function drawMap(g) {
  const svg = document.getElementById("map");
  const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.focus : null;
  svg.replaceChildren();
  // Room on the right for edges within a column.
  const layerOf = Object.fromEntries(g.nodes.map(n => [n.id, n.layer]));
  const sameColumn = g.edges.concat(g.unwanted).some(e => layerOf[e.to] !== undefined && layerOf[(e.from || "").split(", ")[0]] === layerOf[e.to]);
  const width = g.width + (sameColumn ? 90 : 0);
  svg.setAttribute("viewBox", `0 0 ${width} ${g.height + 60}`);
  svg.setAttribute("width", width);
  svg.setAttribute("height", g.height + 60);
  const defs = el("svg:defs");
  for (const h of ["healthy", "degraded", "failing", "idle", "mirror", "unwanted"]) {
    defs.append(el("svg:marker", {id: "arrow-" + h, viewBox: "0 0 10 10", refX: 9, refY: 5, markerUnits: "userSpaceOnUse", markerWidth: 11, markerHeight: 11, orient: "auto-start-reverse"},
      el("svg:path", {d: "M 0 0 L 10 5 L 0 10 z", class: "arrowhead " + h})));
  }
  svg.append(defs);
  const nodes = Object.fromEntries(g.nodes.map(n => [n.id, n]));
  const pairs = {};
  const pairIndex = (a, b) => { const k = a + "|" + b; pairs[k] = (pairs[k] || 0) + 1; return pairs[k] - 1; };
  const edgeLayer = el("svg:g", {class: "edges"});
  const labelLayer = el("svg:g", {class: "labels"});
  const labels = [];
  const addEdge = (kind, id, a, b, cls, health, textLines, aria, dataset) => {
    const off = pairIndex(a.id, b.id) * 12;
    const r = route(a, b, off);
    const grp = el("svg:g", Object.assign({class: "edge " + cls, id: kind + "-" + id, tabindex: 0, role: "button", "aria-label": aria,
      "data-focus": kind + ":" + id, "data-health": health, "data-id": id,
      onclick: () => select(kind, id), onkeydown: keySelect(kind, id)}, dataset));
    if (selected && selected.type === kind && selected.id === id) grp.classList.add("selected");
    grp.append(el("svg:path", {class: "hit", d: r.d}));
    grp.append(el("svg:path", {class: "line", d: r.d, "marker-end": `url(#arrow-${health})`}));
    edgeLayer.append(grp);
    // The label's box is estimated from its text (11.5px font), so that
    // labels can be pushed apart before anything is measured.
    const w = Math.max(...textLines.map(l => l.length)) * 6.6 + 10, h = textLines.length * 15 + 4;
    labels.push({kind, id, cls, lines: textLines, box: {x: r.at[0] - w / 2, y: r.at[1] - h / 2, w, h}});
  };
  for (const e of g.edges) {
    const a = nodes[e.from], b = nodes[e.to];
    if (!a || !b) continue;
    const cls = e.kind === "mirror" ? "mirror health-" + e.health : "health-" + e.health;
    const lines = sigText(e);
    if (e.kind === "mirror") lines.unshift(e.label);
    const aria = `${e.from} to ${e.to}${e.kind === "mirror" ? " (" + e.label + ")" : ""}: ${lines.join(", ")}; ${e.health}${e.reason ? ": " + e.reason : ""}`;
    addEdge("edge", e.id, a, b, cls, e.kind === "mirror" && e.health === "idle" ? "mirror" : e.health, lines, aria,
      {"data-from": e.from, "data-to": e.to, "data-kind": e.kind});
  }
  for (const u of g.unwanted) {
    const from = (u.from || "").split(", ")[0];
    const a = nodes[from], b = nodes[u.to];
    if (!a || !b) continue; // only in the table
    const lines = ["unwanted: " + u.kind].concat(sigText(u));
    addEdge("unwanted", u.id, a, b, "unwanted", "unwanted", lines, `Unwanted connection, ${u.kind}, from ${u.from || u.principal} to ${u.to}: ${sigText(u).join(", ")}`,
      {"data-from": u.from, "data-to": u.to, "data-kind": u.kind});
  }
  svg.append(edgeLayer);
  const nodeLayer = el("svg:g", {class: "nodes"});
  for (const n of g.nodes) nodeLayer.append(drawNode(n));
  svg.append(nodeLayer);
  svg.append(labelLayer);
  // Label boxes, pushed down where they overlap an earlier one.
  const placed = [];
  const overlaps = b => placed.some(p => p.x < b.x + b.w && b.x < p.x + p.w && p.y < b.y + b.h && b.y < p.y + p.h);
  for (const l of labels) {
    const box = Object.assign({}, l.box);
    for (let guard = 0; guard < 60 && overlaps(box); guard++) box.y += 5;
    placed.push(box);
    const text = el("svg:text", {class: "edge-text", x: box.x + box.w / 2, y: box.y + 2});
    l.lines.forEach(line => text.append(el("svg:tspan", {x: box.x + box.w / 2, dy: "1.1em", text: line})));
    labelLayer.append(el("svg:g", {class: "edge-label " + l.cls, "data-for": l.kind + "-" + l.id, onclick: () => select(l.kind, l.id)},
      el("svg:rect", {x: box.x, y: box.y, width: box.w, height: box.h, rx: 3}), text));
  }
  if (focused) {
    const f = svg.querySelector(`[data-focus="${CSS.escape(focused)}"]`);
    if (f) f.focus({preventScroll: true});
  }
}

function drawNode(n) {
  const sel = selected && selected.type === "node" && selected.id === n.id;
  if (n.outside) {
    return el("svg:g", {class: "node outside" + (sel ? " selected" : ""), id: "node-outside", "data-id": n.id, "data-focus": "node:" + n.id, tabindex: 0, role: "button",
      "aria-label": "Outside the mesh: traffic without a mesh certificate", onclick: () => select("node", n.id), onkeydown: keySelect("node", n.id)},
      el("svg:ellipse", {cx: n.x + n.w / 2, cy: n.y + n.h / 2, rx: n.w / 2, ry: n.h / 2}),
      el("svg:text", {x: n.x + n.w / 2, y: n.y + n.h / 2, dy: "0.35em", class: "name", text: "outside the mesh"}));
  }
  const proxies = n.proxies || [];
  const synced = proxies.filter(p => p.connected && p.inSync).length;
  let sub = (n.versions || []).map(v => v.name).join(", ");
  if (proxies.length) sub += ` · ${synced}/${proxies.length} in sync`;
  const nacks = (n.nacks || []).length;
  const cls = "node" + (sel ? " selected" : "") + (nacks ? " nacked" : "") + (n.edge ? " edge-service" : "");
  const g = el("svg:g", {class: cls, id: "node-" + n.id, "data-id": n.id, "data-focus": "node:" + n.id, tabindex: 0, role: "button",
    "aria-label": `Service ${n.id}, versions ${sub}${nacks ? ", " + nacks + " NACK" : ""}. Select for details.`,
    onclick: () => select("node", n.id), onkeydown: keySelect("node", n.id)},
    el("svg:rect", {x: n.x, y: n.y, width: n.w, height: n.h, rx: 8}),
    el("svg:text", {x: n.x + n.w / 2, y: n.y + 23, class: "name", text: n.id}),
    el("svg:text", {x: n.x + n.w / 2, y: n.y + 42, class: "sub", text: sub + (nacks ? " · NACK" : "")}));
  return g;
}

function cell(text, attrs) { return el("td", Object.assign({text}, attrs || {})); }

function drawTables(g) {
  const ub = document.querySelector("#unwanted tbody");
  ub.replaceChildren();
  if (!g.unwanted.length) ub.append(el("tr", {}, el("td", {colspan: 7, class: "empty", text: "None seen in the window."})));
  for (const u of g.unwanted) {
    ub.append(el("tr", {id: "unwanted-row-" + u.id, "data-kind": u.kind, "data-from": u.from, "data-to": u.to},
      cell(u.kind), cell(u.from || u.principal), cell(u.to || "(no route)"), cell(fmtRate(u.requestsPerSecond), {class: "num"}),
      cell(fmtPct(u.errorPercent), {class: "num"}), cell(fmtMs(u.p99Ms), {class: "num"}), cell(u.explanation)));
  }
  const eb = document.querySelector("#edges tbody");
  eb.replaceChildren();
  for (const e of g.edges) {
    eb.append(el("tr", {"data-id": e.id, "data-health": e.health},
      cell(e.from), cell(e.to), cell(e.kind === "mirror" ? e.label : e.kind), cell(fmtRate(e.requestsPerSecond), {class: "num"}),
      cell(fmtPct(e.errorPercent), {class: "num"}), cell(fmtMs(e.p99Ms), {class: "num"}),
      el("td", {}, el("span", {class: "badge health-" + e.health, text: e.health}), e.reason ? " " + e.reason : "")));
  }
}

function dl(pairs) {
  const d = el("dl");
  for (const [k, v] of pairs) if (v !== undefined && v !== null && v !== "") d.append(el("dt", {text: k}), el("dd", {text: String(v)}));
  return d;
}

function table(head, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, ...head.map(h => el("th", {scope: "col", text: h})))),
    el("tbody", {}, ...rows.map(r => el("tr", {}, ...r.map(c => cell(c === undefined || c === null ? "" : String(c)))))));
}

function showDetails(g) {
  const box = document.getElementById("details");
  const title = el("h2", {id: "details-title", text: "Details"});
  if (!selected) return;
  let body = [];
  if (selected.type === "node") {
    const n = g.nodes.find(x => x.id === selected.id);
    if (!n) return;
    if (n.outside) {
      title.textContent = "Outside the mesh";
      body = [el("p", {text: "Requests that presented no mesh certificate: browsers, load balancers, plaintext callers. Edge services receive them."})];
    } else {
      title.textContent = n.id;
      body.push(dl([["Namespace", n.namespace], ["Identity", n.identity], ["mTLS", n.mtls], ["Edge service", n.edge ? "yes (receives traffic from outside)" : "no"],
        ["Ports", (n.ports || []).map(p => `${p.name} ${p.port}/${p.protocol}`).join(", ")],
        ["Calls", (n.calls || []).join(", ") || "nothing"], ["Called by", (n.callers || []).join(", ") || "no service"],
        ["SLO", n.slo ? [n.slo.availability ? n.slo.availability + "% available" : "", n.slo.latencyP99Ms ? "p99 ≤ " + fmtMs(n.slo.latencyP99Ms) : ""].filter(Boolean).join(", ") : "none"],
        ["Served revision", g.revision || "none"]]));
      body.push(el("h3", {text: "Versions"}), table(["Version", "Labels", "Replicas"],
        (n.versions || []).map(v => [v.name, Object.entries(v.labels || {}).map(([k, x]) => k + "=" + x).join(", "), v.replicas])));
      body.push(el("h3", {text: "Routes (in precedence order)"}));
      const policies = r => [r.timeout ? "timeout " + r.timeout : "", r.retries === undefined ? "" : "retries " + r.retries,
        r.fault ? "fault: " + r.fault : "", r.mirror ? "mirror " + r.mirror : ""].filter(Boolean).join("; ");
      body.push((n.routes || []).length ? table(["Route", "Match", "Split", "Policies"],
        n.routes.map(r => [r.name, r.match, (r.to || []).map(w => `${w.version} ${w.percent}%`).join(" · ") || "all versions", policies(r)]))
        : el("p", {text: "No routes: every request goes to every version, balanced."}));
      body.push(el("h3", {text: "Authorization"}));
      const a = n.authz || {};
      if (a.default) body.push(el("p", {text: "Default: " + a.default + "."}));
      const rules = (kind, rs) => (rs || []).map(r => [kind, (r.from || ["anyone"]).join(", "), (r.methods || ["any"]).join(", "), (r.paths || ["any"]).join(", ")]);
      const rs = rules("deny", a.deny).concat(rules("allow", a.allow));
      if (rs.length) body.push(table(["Rule", "From", "Methods", "Paths"], rs));
      body.push(el("h3", {text: "Proxies"}));
      body.push((n.proxies || []).length ? table(["Proxy", "State", "ACKed version"],
        n.proxies.map(p => [p.nodeID, !p.connected ? "disconnected" : p.inSync ? "in sync" : "syncing", p.ackedVersion || p.error || ""])) : el("p", {text: "No proxy connected."}));
      body.push(el("h3", {text: "Recent NACKs"}));
      body.push((n.nacks || []).length ? table(["When", "Proxy", "Type", "Reason", "Defined at"],
        n.nacks.map(x => [new Date(x.at).toLocaleString(), x.nodeID, x.type, x.reason, x.where || x.resource || ""])) : el("p", {text: "None."}));
    }
  } else if (selected.type === "edge") {
    const e = g.edges.find(x => x.id === selected.id);
    if (!e) return;
    title.textContent = `${e.from} → ${e.to}`;
    body.push(dl([["Kind", e.kind === "mirror" ? e.label : e.kind], ["Health", e.health + (e.reason ? ": " + e.reason : "")],
      ["Requests/s", fmtRate(e.requestsPerSecond)], ["Errors", fmtPct(e.errorPercent)], ["p99", fmtMs(e.p99Ms)],
      ["Error threshold", e.errorThreshold + "% (" + (e.thresholdFrom === "slo" ? "the SLO's error budget" : "default") + ")"],
      ["Latency objective", e.latencyBoundMs ? "p99 ≤ " + fmtMs(e.latencyBoundMs) : "none"]]));
    body.push(el("h3", {text: "By version"}), e.byVersion.length ? table(["From version", "To version", "Requests/s", "Errors", "p99"],
      e.byVersion.map(v => [v.sourceVersion || "–", v.destinationVersion || "(none chosen)", fmtRate(v.requestsPerSecond), fmtPct(v.errorPercent), fmtMs(v.p99Ms)]))
      : el("p", {text: "No requests in the window."}));
  } else {
    const u = g.unwanted.find(x => x.id === selected.id);
    if (!u) return;
    title.textContent = `Unwanted: ${u.from || u.principal} → ${u.to || "(no route)"}`;
    body.push(dl([["Kind", u.kind], ["Caller identity", u.principal], ["Requests/s", fmtRate(u.requestsPerSecond)], ["Errors", fmtPct(u.errorPercent)],
      ["p99", fmtMs(u.p99Ms)], ["What happened", u.explanation]]));
  }
  box.replaceChildren(title, ...body);
}

load();
