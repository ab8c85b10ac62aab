// swarmlet web view: draws /api/events (server-sent events) into the page. No framework: a few
// functions that rebuild the node columns from each "state" picture and prepend "timeline" events.
"use strict";

let picture = null;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}

function pill(text, cls) { return el("span", "pill " + (cls || text), text); }

function post(body) {
  return fetch("/api/faults", {method: "POST", headers: {"Content-Type": "application/json"},
                               body: JSON.stringify(body)})
    .then(r => r.ok ? null : r.json().then(j => alert(j.message || ("error " + r.status))))
    .catch(err => alert("the manager does not answer: " + err));
}

function nodeColumn(node, all) {
  const col = el("article", "node " + node.colour + (node.leader ? " leader" : ""));
  col.dataset.nodeId = node.id;
  col.dataset.hostname = node.hostname;
  col.dataset.colour = node.colour;
  const head = el("header");
  const name = el("div", "name");
  if (node.leader) name.append(el("span", "crown", "\u2605"));
  name.append(el("span", null, node.hostname));
  head.append(name);
  const meta = el("div", "meta");
  meta.append(pill(node.colour === "drain" ? node.availability : node.state, node.colour), " ");
  if (node.leader) meta.append(pill("leader"), " ");
  meta.append(node.manager ? "manager" : "worker");
  if (node.manager && !node.leader && node.reachability) meta.append(" \u00b7 " + node.reachability);
  head.append(meta);
  if (node.message && node.colour !== "ready") head.append(el("div", "meta", node.message));
  if (!node.self) head.append(el("div", "meta", "gossip here: " + node.gossip));
  else head.append(el("div", "meta", "serving this page"));
  col.append(head);

  const tasks = el("div", "tasks");
  if (!node.tasks.length) tasks.append(el("div", "empty", "no tasks"));
  for (const t of node.tasks) {
    const leaving = t.desired && t.desired !== "running";
    const card = el("div", "task " + t.state + (leaving ? " leaving" : ""));
    card.title = t.id + (t.err ? "\n" + t.err : "");
    card.append(el("div", "tname", t.name), el("div", "timg", t.image));
    card.append(pill(t.state));
    if (leaving) card.append(el("span", "timg", " \u2192 " + t.desired));
    tasks.append(card);
  }
  col.append(tasks);

  const view = el("div", "view");
  view.append(el("div", "title", node.self ? "membership (this manager's view)" : "membership as " + node.hostname + " sees it"));
  if (!node.view.ok) {
    view.append(el("div", "muted", node.view.error || "unreachable"));
  } else {
    const ul = el("ul");
    for (const m of node.view.members) {
      const li = el("li");
      const left = el("span");
      left.append(el("span", "dot " + m.state), m.hostname);
      li.append(left, el("span", "muted", m.state));
      ul.append(li);
    }
    view.append(ul);
    for (const f of node.view.faults || []) {
      view.append(el("div", "faults", "\u26a1 " + faultText(f, all)));
    }
  }
  col.append(view);

  const actions = el("div", "actions");
  const select = el("select");
  select.setAttribute("aria-label", "peer");
  for (const other of all) if (other.id !== node.id) {
    const o = el("option", null, other.hostname);
    o.value = other.id;
    select.append(o);
  }
  const cut = el("button", null, "cut link");
  cut.type = "button";
  cut.onclick = () => post({action: "cut", node: node.id, peer: select.value});
  const iso = el("button", null, "isolate");
  iso.type = "button";
  iso.onclick = () => post({action: "isolate", node: node.id});
  const heal = el("button", null, "heal");
  heal.type = "button";
  heal.onclick = () => post({action: "heal", node: node.id});
  actions.append(select, cut, iso, heal);
  col.append(actions);
  return col;
}

// One link fault rule in words, as `swarmlet chaos` prints it: "cut from manager2", "delay 200ms to every peer".
function faultText(f, all) {
  const peers = (f.peers || []).map(p => hostOf(p, all)).filter((v, i, a) => a.indexOf(v) === i);
  const who = peers.length ? peers.join(", ") : "every peer";
  if (f.partition) return "cut from " + who;
  const parts = [];
  if (f.delay) parts.push("delay " + +(f.delay * 1000).toFixed(3) + "ms");
  if (f.drop) parts.push("loss " + +(f.drop * 100).toFixed(3) + "%");
  if (f.duplicate) parts.push("duplicate " + +(f.duplicate * 100).toFixed(3) + "%");
  return (parts.join(", ") || "no fault") + " to " + who;
}

function hostOf(peer, all) {
  for (const n of all) if (n.id === peer || n.hostname === peer || n.addr === peer.split(":")[0]) return n.hostname;
  return peer;
}

function render(state) {
  picture = state;
  const leader = document.getElementById("leader");
  leader.textContent = state.leader ? "leader " + state.leader.hostname : "no leader";
  leader.className = "badge" + (state.leader ? " leads" : "");
  document.getElementById("term").textContent = "term " + state.term;
  document.getElementById("served").textContent =
    "served by " + state.self.hostname + " (" + state.self.raft_role + ")";
  const grid = document.getElementById("grid");
  grid.replaceChildren(...state.nodes.map(n => nodeColumn(n, state.nodes)));

  const pending = document.getElementById("pending");
  pending.replaceChildren();
  if (!state.pending.length) pending.append(el("li", "muted", "none"));
  for (const t of state.pending) {
    const li = el("li");
    li.append(el("strong", null, t.name + " "), pill(t.state));
    if (t.err) li.append(el("div", "err", t.err));
    if (t.explain) {
      const d = el("details");
      d.append(el("summary", null, "why, node by node"));
      for (const r of t.explain) {
        d.append(el("div", null, r.hostname + ": " + (r.fits ? "fits" : r.reasons.join("; "))));
        for (const fix of r.fixes) d.append(el("div", null, "\u2003to fit: " + fix));
      }
      li.append(d);
    }
    pending.append(li);
  }
  const cmds = state.nodes.map(n => "swarmlet chaos kill " + n.hostname).join("\n");
  const names = state.nodes.map(n => n.hostname);
  const links = names.length > 2
    ? "\nswarmlet chaos partition " + names[0] + " --from " + names.slice(1, 3).join(",") +
      "\nswarmlet chaos delay " + names[names.length - 1] + " 200ms" +
      "\nswarmlet chaos loss " + names[names.length - 1] + " 10%" +
      "\nswarmlet chaos heal"
    : "";
  document.getElementById("chaos-cmds").textContent =
    cmds + links + "\n# also: stop, start, pause, unpause, restart, disconnect, connect NODE; duplicate NODE 5%; heal NODE" +
    "\n# add --project NAME for another cluster";
  document.getElementById("timescale").textContent =
    "Time scale \u00d7" + state.time_scale + ", set per node at start (--time-scale); it cannot be changed live.";
}

function addEvent(ev) {
  const list = document.getElementById("timeline");
  const li = el("li", ev.level + " k-" + ev.kind);
  li.dataset.seq = ev.seq;
  const when = new Date(ev.at * 1000);
  li.append(el("time", null, when.toLocaleTimeString([], {hour12: false}) + "." +
                            String(when.getMilliseconds()).padStart(3, "0")));
  li.append(el("span", "kind", ev.kind), document.createTextNode(ev.text));
  list.prepend(li);
  while (list.children.length > 300) list.lastChild.remove();
}

function connect() {
  const conn = document.getElementById("conn");
  const source = new EventSource("/api/events");
  source.addEventListener("open", () => { conn.textContent = "live"; conn.className = "conn live"; });
  source.addEventListener("error", () => { conn.textContent = "reconnecting"; conn.className = "conn lost"; });
  source.addEventListener("state", e => render(JSON.parse(e.data)));
  source.addEventListener("timeline", e => addEvent(JSON.parse(e.data)));
}

document.getElementById("heal-all").onclick = () => post({action: "heal"});
connect();
