// warpaint's page: choose images, start a run, follow it through server-sent events.
"use strict";

const $ = (id) => document.getElementById(id);
const picked = { content: [], style: [] };   // File objects (uploads or fetched demo images)
let run = null;                               // {id, source: EventSource}
let info = null;

function showMessage(text) {
  const m = $("message");
  m.textContent = text || "";
  m.hidden = !text;
}

function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status").textContent = text;
}

function renderThumbs(kind) {
  const box = $(kind + "-thumbs");
  box.replaceChildren();
  if (!picked[kind].length) {
    const hint = document.createElement("span");
    hint.className = "hint";
    hint.textContent = kind === "content" ? "Drop a photo here or" : "Drop paintings here or";
    box.append(hint);
  }
  picked[kind].forEach((file, i) => {
    const div = document.createElement("div");
    div.className = "thumb";
    const img = document.createElement("img");
    img.src = URL.createObjectURL(file);
    img.alt = img.title = file.name;
    img.onerror = () => { img.alt = file.name + " (no preview)"; };
    const x = document.createElement("button");
    x.type = "button";
    x.textContent = "×";
    x.title = "remove";
    x.onclick = () => { picked[kind].splice(i, 1); renderThumbs(kind); };
    div.append(img, x);
    box.append(div);
  });
}

function addFiles(kind, files) {
  const list = Array.from(files);
  picked[kind] = kind === "content" ? list.slice(0, 1) : picked[kind].concat(list);
  renderThumbs(kind);
  showMessage("");
}

async function addDemo(kind) {
  const r = await fetch("/api/demo/" + kind + ".png");
  if (!r.ok) { showMessage("could not load the demo image"); return; }
  const name = kind === "content" ? "demo photo.png" : "demo painting.png";
  addFiles(kind, [new File([await r.blob()], name, { type: "image/png" })]);
}

function wireDrop(kind) {
  const zone = $(kind + "-drop");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    addFiles(kind, e.dataTransfer.files);
  });
  $(kind + "-file").addEventListener("change", (e) => { addFiles(kind, e.target.files); e.target.value = ""; });
  $("demo-" + kind).addEventListener("click", () => addDemo(kind));
}

function formData() {
  const data = new FormData();
  const fast = $("method").value === "fast";
  const fields = fast ? ["method", "size", "preserve_color", "strength"]
    : ["method", "size", "steps", "style_weight", "preserve_color", "warp", "warp_strength"];
  for (const name of fields) data.append(name, $(name).value);
  for (const [key, value] of new URLSearchParams(location.search)) {   // e.g. ?min_size=32 for tests
    if (!fields.includes(key)) data.append(key, value);
  }
  picked.content.forEach((f) => data.append("content", f, f.name));
  picked.style.forEach((f) => data.append("style", f, f.name));
  return data;
}

function clock(seconds) {
  if (seconds == null || !isFinite(seconds)) return "…";
  const s = Math.round(seconds);
  return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
}

function describe(u) {
  const p = u.progress || {};
  if (u.state === "queued") return "Waiting: place " + u.position + " of " + u.waiting + " in the queue.";
  if (u.state === "running" && p.done) {
    return "Scale " + p.scale + " of " + p.scales + " (" + p.size[0] + "×" + p.size[1] + " px), step " +
      p.done + " of " + p.total + ", " + clock(p.elapsed) + " so far, about " + clock(p.eta) + " left.";
  }
  if (u.state === "running") return "Starting…";
  if (u.state === "done") return "Done in " + clock(p.elapsed) + ".";
  return u.message || u.state;
}

function showWarp(u) {
  const list = $("warp-list");
  list.replaceChildren();
  for (const name of u.warp) {
    const img = document.createElement("img");
    img.src = "/api/jobs/" + u.id + "/warp/" + encodeURIComponent(name);
    img.alt = img.title = name;
    list.append(img);
  }
  $("warp-pictures").hidden = !u.warp.length;
}

function onUpdate(u) {
  if (u.frame) {
    const live = $("live");
    live.src = u.frame;
    live.hidden = false;
    live.dataset.frames = String(Number(live.dataset.frames) + 1);
  }
  const p = u.progress || {};
  $("bar").value = u.state === "done" ? 1 : (p.fraction || 0);
  setStatus(u.state, describe(u));
  if (p.losses) $("caption").textContent = "losses: " + Object.entries(p.losses).map(([k, v]) => k + " " + (v == null ? "not finite" : v.toPrecision(3))).join(", ");
  if (["done", "stopped", "error", "cancelled"].includes(u.state)) finish(u);
}

function finish(u) {
  if (run) run.source.close();
  $("start").disabled = false;
  $("stop").disabled = true;
  if (u.state === "error") showMessage(u.message);
  if (u.result) {
    $("download-png").href = "/api/jobs/" + u.id + "/result.png";
    $("download-json").href = "/api/jobs/" + u.id + "/result.json";
    $("downloads").hidden = false;
  }
  showWarp(u);
}

async function start() {
  showMessage("");
  if (!picked.content.length) { showMessage("Choose a photo first (or the demo photo)."); return; }
  if ($("method").value === "optimize" && !picked.style.length) {
    showMessage("Choose at least one painting (or the demo painting)."); return;
  }
  closeRun();
  $("start").disabled = true;
  $("downloads").hidden = true;
  $("warp-pictures").hidden = true;
  $("live").dataset.frames = "0";
  $("live").hidden = true;
  $("caption").textContent = "";
  setStatus("sending", "Uploading…");
  let r, body;
  try {
    r = await fetch("/api/jobs", { method: "POST", body: formData() });
    body = await r.json();
  } catch (e) {
    body = { error: r ? "the server answered " + r.status : "cannot reach the server (" + e.message + ")" };
  }
  if (!r || !r.ok) {
    showMessage(body.error || "the server refused the run");
    setStatus("idle", "Ready.");
    $("start").disabled = false;
    return;
  }
  follow(body.id);
}

function follow(id) {
  const source = new EventSource("/api/jobs/" + id + "/events");
  run = { id, source };
  $("stop").disabled = false;
  source.addEventListener("update", (e) => onUpdate(JSON.parse(e.data)));
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED && !$("stop").disabled) {
      showMessage("Lost the connection to the server.");
      finish({ state: "error", id, warp: [], message: "Lost the connection to the server." });
    }
  };
}

function closeRun() {   // a new run (or leaving the page) frees the previous result on the server
  if (run) {
    run.source.close();
    navigator.sendBeacon("/api/jobs/" + run.id + "/close");
    run = null;
  }
}

async function stop() {
  if (!run) return;
  $("stop").disabled = true;
  setStatus("stopping", "Stopping after the current step…");
  await fetch("/api/jobs/" + run.id + "/stop", { method: "POST" });
}

async function loadInfo() {
  try {
    info = await (await fetch("/api/info")).json();
  } catch (e) {
    return;
  }
  $("size").max = info.max_size;
  $("steps").max = info.max_steps;
  $("limits").textContent = "Limits: " + info.upload_mb + " MB per file, " + info.max_pixels.toLocaleString() +
    " pixels per image, " + info.max_styles + " paintings, " + info.max_size + " px, " + info.max_steps +
    " steps. Accepted: " + info.accepted + ". Results are kept " + info.keep_minutes +
    " minutes or until this page is closed.";
}

function syncOptions() {
  document.body.classList.toggle("fast", $("method").value === "fast");
  document.body.classList.toggle("warp", $("warp").value !== "none");
  $("warp_strength_out").value = $("warp_strength").value;
  $("strength_out").value = $("strength").value;
}

window.addEventListener("DOMContentLoaded", () => {
  wireDrop("content");
  wireDrop("style");
  $("start").addEventListener("click", start);
  $("stop").addEventListener("click", stop);
  $("options").addEventListener("input", syncOptions);
  $("options").addEventListener("submit", (e) => e.preventDefault());
  window.addEventListener("pagehide", closeRun);
  syncOptions();
  loadInfo();
});
