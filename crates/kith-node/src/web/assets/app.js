// The kith page. Everything that came from elsewhere (chat text, names, file names) is written
// with textContent, never parsed as HTML. Addresses are relative: the page lives at /TOKEN/.
"use strict";

const $ = (id) => document.getElementById(id);
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function guidOf(id) { if (!id) return ""; const i = id.lastIndexOf("@"); return i >= 0 ? id.slice(i + 1) : id; }
function nameOf(id) { if (!id) return "?"; const i = id.lastIndexOf("@"); return i > 0 ? id.slice(0, i) : id.slice(0, 8); }
function size(n) { const u = ["B", "KB", "MB", "GB", "TB"]; let i = 0; while (n >= 1024 && i < 4) { n /= 1024; i++; } return (i ? n.toFixed(1) : n) + " " + u[i]; }
function say(text, bad) { const s = $("status"); s.textContent = text || ""; s.className = bad ? "bad" : ""; }

const me = { agent: document.body.dataset.agent, guid: guidOf(document.body.dataset.nodeId) };

async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
  };
  const r = await fetch("api/v1/" + path, opts);
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.error || r.statusText);
  return data;
}
function chat(action, fields) { return api("chat", Object.assign({ action }, fields || {})); }

// ---- views
document.querySelectorAll("nav button").forEach((b) => b.addEventListener("click", () => show(b.dataset.view)));
function show(view) {
  document.querySelectorAll("nav button").forEach((b) => b.classList.toggle("active", b.dataset.view === view));
  document.querySelectorAll(".view").forEach((v) => { v.hidden = v.id !== "view-" + view; });
  if (view === "files") refreshFiles();
  if (view === "peers") refreshPeers();
  if (view === "posts") refreshPosts();
  if (view === "chat") refreshChat();
}

// ---- chat: conversations are "#channel" or "@GUID"
const convs = new Map();
let current = null;
let lastSeq = 0;
let channels = [];
let people = [];
const lastRead = JSON.parse(localStorage.getItem("kith-read") || "{}");

function conv(key) {
  if (!convs.has(key)) convs.set(key, { key, rows: [], unread: 0, label: key });
  return convs.get(key);
}
function mine(row) { return (row.sender_guid || guidOf(row.sender)) === me.guid; }
function keyOf(row) {
  if (row.channel) return "#" + row.channel;
  return "@" + guidOf(mine(row) ? row.recipient || "" : row.sender);
}
function addRows(rows) {
  for (const row of rows) {
    if (row.seq <= lastSeq) continue;
    lastSeq = row.seq;
    const c = conv(keyOf(row));
    if (!row.channel && !mine(row)) c.label = "@" + nameOf(row.sender);
    c.rows.push(row);
    if (c.rows.length > 1000) c.rows.shift();
    if (c.key === current && document.visibilityState === "visible") markRead(c);
    else if (!mine(row) && row.seq > (lastRead[c.key] || 0)) c.unread++;
    if (c.key === current) appendMessage(row);
  }
  renderLists();
}
function markRead(c) {
  c.unread = 0;
  if (c.rows.length) lastRead[c.key] = c.rows[c.rows.length - 1].seq;
  localStorage.setItem("kith-read", JSON.stringify(lastRead));
}
function appendMessage(row) {
  const list = $("messages");
  const li = el("li");
  li.appendChild(el("span", (row.time || "").replace("T", " ").slice(0, 19), "time"));
  li.appendChild(el("span", mine(row) ? "me" : nameOf(row.sender), "author"));
  li.appendChild(el("span", row.text, "text"));
  if (row.state) li.appendChild(el("span", row.state, "standing"));
  const bottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
  list.appendChild(li);
  if (bottom) list.scrollTop = list.scrollHeight;
}
function listItem(label, key, unread, onclick) {
  const li = el("li");
  li.appendChild(el("span", label));
  if (unread) li.appendChild(el("span", unread, "unread"));
  if (key === current) li.classList.add("current");
  li.dataset.key = key;
  li.addEventListener("click", onclick || (() => open(key)));
  return li;
}
function renderLists() {
  const ch = $("channels"); ch.replaceChildren();
  for (const c of channels.filter((c) => c.joined)) {
    const key = "#" + c.name;
    ch.appendChild(listItem("#" + c.name + (c.closed ? " (closed)" : ""), key, convs.has(key) ? conv(key).unread : 0));
  }
  const dm = $("dms"); dm.replaceChildren();
  for (const c of convs.values()) if (c.key.startsWith("@")) dm.appendChild(listItem(c.label, c.key, c.unread));
  const pl = $("people"); pl.replaceChildren();
  for (const p of people) {
    const label = (p.name || p.guid.slice(0, 8)) + (p.linked ? " (linked)" : "") + (p.blocked ? " (blocked)" : "") + (p.muted ? " (muted)" : "");
    pl.appendChild(listItem(label, "@" + p.guid, 0, () => { conv("@" + p.guid).label = "@" + (p.name || p.guid.slice(0, 8)); open("@" + p.guid); }));
  }
  const unread = [...convs.values()].reduce((n, c) => n + c.unread, 0);
  document.title = unread ? "(" + unread + ") kith" : "kith";
}
function open(key) {
  current = key;
  const c = conv(key);
  markRead(c);
  $("conv-title").textContent = key.startsWith("#") ? key : c.label;
  const info = channels.find((ch) => "#" + ch.name === key);
  $("members").textContent = info ? "Members: " + info.members.map(nameOf).join(", ") : "";
  personActions();
  $("messages").replaceChildren();
  c.rows.forEach(appendMessage);
  $("message").disabled = false;
  $("message").focus();
  renderLists();
}
async function refreshChat() {
  try {
    channels = (await chat("channels")).channels || [];
    people = (await chat("people")).people || [];
    renderLists();
    personActions();
  } catch (e) { say("chat: " + e.message, true); }
}
// Block or mute the person of the open direct conversation (the chat's block and mute).
function currentPerson() {
  if (!current || !current.startsWith("@")) return null;
  const guid = current.slice(1);
  return people.find((p) => p.guid === guid) || { guid, node_id: guid, blocked: false, muted: false };
}
function personActions() {
  const p = currentPerson();
  $("person-actions").hidden = !p;
  if (!p) return;
  $("block-person").textContent = p.blocked ? "Unblock" : "Block";
  $("mute-person").textContent = p.muted ? "Unmute" : "Mute";
}
$("block-person").addEventListener("click", async () => {
  const p = currentPerson(); if (!p) return;
  try { await chat("block", { node_id: p.guid, blocked: !p.blocked }); say((p.blocked ? "unblocked " : "blocked ") + (p.name || p.guid.slice(0, 8))); await refreshChat(); }
  catch (e) { say("block: " + e.message, true); }
});
$("mute-person").addEventListener("click", async () => {
  const p = currentPerson(); if (!p) return;
  try { await chat("mute", { node_id: p.guid, muted: !p.muted }); say((p.muted ? "unmuted " : "muted ") + (p.name || p.guid.slice(0, 8))); await refreshChat(); }
  catch (e) { say("mute: " + e.message, true); }
});
$("join-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const name = $("join-name").value.trim();
  if (!name) return;
  try {
    await chat("join", { name, closed: false });
    $("join-name").value = "";
    await refreshChat();
    open("#" + name);
  } catch (e) { say("join: " + e.message, true); }
});
$("message").addEventListener("keydown", async (ev) => {
  if (ev.key !== "Enter" || ev.shiftKey || ev.isComposing) return;
  ev.preventDefault();
  const box = $("message");
  const text = box.value;
  if (!text.trim() || !current) return;
  try {
    if (current.startsWith("#")) await chat("say", { name: current.slice(1), text, attachments: [] });
    else await chat("send", { node_id: current.slice(1), text, attachments: [] });
    box.value = "";
    say("");
  } catch (e) { say("not sent: " + e.message, true); }
});
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && current) { markRead(conv(current)); renderLists(); }
});

// ---- live updates
let retry = 500;
function live() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(scheme + "//" + location.host + location.pathname + "live?after=" + lastSeq);
  ws.onopen = () => { $("conn").textContent = "live"; $("conn").className = "online"; retry = 500; postsChanged(); };
  ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.type === "chat") addRows(msg.rows);
    if (msg.type === "tick") tick(msg);
    if (msg.type === "posts") postsChanged();
  };
  ws.onclose = () => {
    $("conn").textContent = "offline"; $("conn").className = "offline";
    setTimeout(live, retry); retry = Math.min(retry * 2, 10000);
  };
}
let links = -1;
function tick(msg) {
  if (msg.links !== links) { links = msg.links; refreshChat(); if (!$("view-peers").hidden) refreshPeers(); }
  const t = $("transfers"); t.replaceChildren();
  for (const x of msg.transfers || []) {
    t.appendChild(el("div", (x.background ? "replicating " : "fetching ") + (x.hash || "").slice(0, 12) + ": " + size(x.bytes) + " in " + x.items + " items"));
  }
}

// ---- files
async function refreshFiles() {
  try {
    const r = await fetch("files");
    const files = await r.json();
    const body = $("files").querySelector("tbody"); body.replaceChildren();
    for (const f of files) {
      const tr = el("tr");
      tr.appendChild(el("td", f.name || "(no name)", "name"));
      tr.appendChild(el("td", size(f.size)));
      tr.appendChild(el("td", f.hash, "hash"));
      const td = el("td");
      const a = el("a", "Download"); a.href = "files/" + encodeURIComponent(f.hash); a.setAttribute("download", f.name || f.hash);
      td.appendChild(a);
      const share = el("button", "Share"); share.type = "button";
      share.addEventListener("click", async () => {
        try { const r = await api("files/share", { hash: f.hash }); say("offered to " + r.offered_to.length + " linked peers"); } catch (e) { say("share: " + e.message, true); }
      });
      td.appendChild(share);
      const ticket = el("button", "Ticket", "ticket"); ticket.type = "button";
      ticket.addEventListener("click", async () => {
        try {
          const t = await api("files/ticket", { hash: f.hash, ttl_secs: 86400 });
          $("file-ticket").value = t.ticket;
          $("file-ticket-name").textContent = f.name || f.hash;
          $("file-ticket-qr").src = "qr.svg?text=" + encodeURIComponent(t.ticket);
          $("file-ticket-box").hidden = false;
          say("a file ticket: whoever holds it can link to this node once and fetch the file");
        } catch (e) { say("ticket: " + e.message, true); }
      });
      td.appendChild(ticket);
      tr.appendChild(td);
      body.appendChild(tr);
    }
  } catch (e) { say("files: " + e.message, true); }
}
function upload(file) {
  return new Promise((resolve, reject) => {
    const bar = $("upload-progress");
    bar.hidden = false; bar.value = 0;
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "upload?name=" + encodeURIComponent(file.name));
    xhr.upload.onprogress = (ev) => { if (ev.lengthComputable) bar.value = (100 * ev.loaded) / ev.total; };
    xhr.onload = () => {
      bar.hidden = true;
      let data = {}; try { data = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
      if (xhr.status === 200) resolve(data); else reject(new Error(data.error || xhr.statusText));
    };
    xhr.onerror = () => { bar.hidden = true; reject(new Error("connection failed")); };
    xhr.send(file);
  });
}
$("upload").addEventListener("change", async (ev) => {
  for (const file of ev.target.files) {
    try { const rec = await upload(file); say("stored " + (rec.name || "") + " as " + rec.hash); } catch (e) { say("upload: " + e.message, true); }
  }
  ev.target.value = "";
  refreshFiles();
});
$("fetch-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  // A content address, or a file ticket: the node links to the ticket's node first.
  const hash = $("fetch-hash").value.trim();
  if (!hash) return;
  say("fetching " + (hash.startsWith("kith-file:") ? "by file ticket" : hash) + "...");
  try {
    const r = await api("files/fetch", { hash, from: null });
    say("fetched " + size(r.size) + " from " + r.from.slice(0, 8));
    $("fetch-hash").value = "";
  } catch (e) { say("fetch: " + e.message, true); }
  refreshFiles();
});

// ---- posts: by community; text, authors and names from the network go through textContent
let community = localStorage.getItem("kith-community") || "";
function posts(action, fields) { return api("posts", Object.assign({ action }, fields || {})); }
async function refreshPosts() {
  try {
    const list = $("communities"); list.replaceChildren();
    for (const c of (await posts("communities")).communities) {
      const li = el("li", c.name + (c.closed ? " (closed)" : "") + " · " + c.posts + (c.followed ? " · followed" : ""));
      li.addEventListener("click", () => { community = c.name; refreshPosts(); });
      list.appendChild(li);
    }
    if (!community) return;
    $("community").value = community;
    const got = (await posts("list", { community })).posts;
    $("posts-title").textContent = got.community + (got.followed ? " (followed)" : "");
    const ol = $("posts"); ol.replaceChildren();
    for (const p of got.posts) {
      const li = el("li");
      li.appendChild(el("span", p.time.replace("T", " ").slice(0, 19), "time"));
      li.appendChild(el("span", p.mine ? "me" : p.author.slice(0, 16), "author mono"));
      li.appendChild(el("span", (p.sealed ? "sealed, " : "signed, ") + p.signature, "standing"));
      li.appendChild(el("div", p.text, "text"));
      if (!p.mine) {
        li.appendChild(authorButton("Mute", "mute", { author: p.author, muted: true }));
        li.appendChild(authorButton("Block", "block", { author: p.author, blocked: true }));
      }
      ol.appendChild(li);
    }
    const authors = $("post-authors"); authors.replaceChildren();
    for (const a of (await posts("authors")).authors) {
      const li = el("li", a.author.slice(0, 16) + (a.blocked ? " · blocked" : "") + (a.muted ? " · muted" : ""), "mono");
      if (a.blocked) li.appendChild(authorButton("Unblock", "block", { author: a.author, blocked: false }));
      if (a.muted) li.appendChild(authorButton("Unmute", "mute", { author: a.author, muted: false }));
      authors.appendChild(li);
    }
  } catch (e) { say("posts: " + e.message, true); }
}
// A post author blocked (nothing of it kept or passed on) or muted (kept, not shown).
function authorButton(label, action, fields) {
  const b = el("button", label, action); b.type = "button";
  b.addEventListener("click", async () => {
    try { await posts(action, fields); say(label.toLowerCase() + (label.endsWith("e") ? "d " : "ed ") + fields.author.slice(0, 16)); refreshPosts(); }
    catch (e) { say(action + ": " + e.message, true); }
  });
  return b;
}
$("community-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  community = $("community").value.trim();
  localStorage.setItem("kith-community", community);
  refreshPosts();
});
$("follow").addEventListener("click", async () => {
  const name = $("community").value.trim();
  if (!name) return;
  try { await posts("follow", { community: name }); community = name; say("following " + name); refreshPosts(); }
  catch (e) { say("follow: " + e.message, true); }
});
$("post-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const text = $("post-text").value;
  if (!community || !text.trim()) { say("pick a community and write something", true); return; }
  try {
    const r = await posts("post", { community, text, sealed: $("post-sealed").checked });
    $("post-text").value = "";
    say("posted, announced to " + r.posted.announced_to + " linked peer(s)");
    refreshPosts();
  } catch (e) { say("post: " + e.message, true); }
});
// Posts come over the live socket: a note that the kept posts changed. One refresh at a
// time; a note during one asks for one more after it.
let postsBusy = false, postsAgain = false;
async function postsChanged() {
  if ($("view-posts").hidden) return;
  if (postsBusy) { postsAgain = true; return; }
  postsBusy = true;
  try { do { postsAgain = false; await refreshPosts(); } while (postsAgain); } finally { postsBusy = false; }
}

// ---- peers
async function refreshPeers() {
  try {
    const peers = await api("peers");
    const body = $("peers").querySelector("tbody"); body.replaceChildren();
    for (const p of peers) {
      const tr = el("tr");
      tr.appendChild(el("td", p.agent, "mono"));
      tr.appendChild(el("td", p.state));
      tr.appendChild(el("td", p.link ? p.link.remote + " (" + p.link.via + ", " + p.link.side + ")" : p.last_addr || ""));
      tr.appendChild(el("td", size(p.exchanged.bytes_received) + " in, " + size(p.exchanged.bytes_sent) + " out"));
      body.appendChild(tr);
    }
  } catch (e) { say("peers: " + e.message, true); }
}
$("new-ticket").addEventListener("click", async () => {
  try {
    const t = await api("tickets", { reusable: false, ttl_secs: 86400, cuid: null });
    $("ticket-line").value = t.line;
    $("ticket-qr").src = "qr.svg?text=" + encodeURIComponent(t.line);
    $("ticket-box").hidden = false;
    say("a ticket for one peer, valid for a day");
  } catch (e) { say("ticket: " + e.message, true); }
});
$("connect-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const ticket = $("connect-ticket").value.trim();
  if (!ticket) return;
  say("connecting...");
  try {
    const p = await api("connect", { ticket });
    say("linked with " + p.agent);
    $("connect-ticket").value = "";
    refreshPeers();
  } catch (e) { say("connect: " + e.message, true); }
});

refreshChat();
live();
