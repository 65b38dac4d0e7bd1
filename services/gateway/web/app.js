// The emgpose web page: jobs, datasets, models, and "try it live" over the gateway's API.
// Plain JavaScript, no build step. The API key (where the server asks for one) stays in sessionStorage
// and goes with every call as `Authorization: Bearer`, and with the stream as a WebSocket subprotocol.
"use strict";

const KEY_STORE = "emgpose.apiKey";
const COLORS = { pred: "#e4572e", true: "#2e86ab", grid: "#e6e6e6", text: "#555", bone: "#444" };
const TRACE_SECONDS = 8; // how much history the trace panels show
const CHUNK_SECONDS = 1; // samples fetched per request while playing
const SEND_EVERY_MS = 50; // EMG is sent in 50 ms chunks, at the recording's own pace
const REFRESH_MS = 2000;

const $ = (id) => document.getElementById(id);
const state = { who: null, refresh: null, live: null };

// --- API ----------------------------------------------------------------------------------------------

function apiKey() {
  return sessionStorage.getItem(KEY_STORE) || "";
}

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (apiKey()) headers.set("Authorization", "Bearer " + apiKey());
  const response = await fetch(path, { ...options, headers });
  if (!response.ok) {
    let detail = response.statusText;
    try {
      detail = (await response.json()).detail || detail;
    } catch (_) {
      /* not JSON: keep the status text */
    }
    throw new ApiError(response.status, detail);
  }
  return response;
}

const getJson = async (path) => (await api(path)).json();

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

function cell(row, content) {
  const td = document.createElement("td");
  if (content instanceof Node) td.appendChild(content);
  else td.textContent = content == null ? "–" : String(content);
  row.appendChild(td);
  return td;
}

function fill(tableId, items, render) {
  const body = $(tableId).querySelector("tbody");
  body.replaceChildren(...items.map(render));
  if (!items.length) {
    const row = document.createElement("tr");
    const td = cell(row, "none yet");
    td.colSpan = $(tableId).querySelectorAll("th").length;
    td.className = "muted";
    body.appendChild(row);
  }
}

const when = (iso) => (iso ? iso.replace("T", " ").slice(0, 19) : "–");
const mae = (metrics) => {
  const value = metrics && metrics.xgboost && metrics.xgboost.mae_deg;
  return typeof value === "number" ? value.toFixed(2) : "–";
};

// --- the key --------------------------------------------------------------------------------------------

async function signIn() {
  try {
    state.who = await getJson("/v1/whoami");
  } catch (error) {
    state.who = null;
    $("app").hidden = true;
    stopRefresh();
    if (error.status === 401 || error.status === 403) {
      $("auth-status").textContent = apiKey()
        ? "this key was refused: " + error.message
        : "this server needs an API key: enter one above (make one with `emgpose keys create`)";
      showError("API key needed: " + error.message);
    } else {
      $("auth-status").textContent = "the gateway did not answer";
      showError(error.message);
    }
    return;
  }
  const who = state.who;
  $("auth-status").textContent = who.auth_enabled
    ? `key ${who.key_id}${who.name ? " (" + who.name + ")" : ""}: scope ${who.scope}`
    : "keys are off on this server (AUTH_ENABLED=false)";
  showError("");
  $("app").hidden = false;
  await refreshAll();
  startRefresh();
}

function setupKeyForm() {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("key-input").value.trim();
    if (key) sessionStorage.setItem(KEY_STORE, key);
    $("key-input").value = "";
    signIn();
  });
  $("key-forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORE);
    signIn();
  });
}

// --- jobs, datasets, models -------------------------------------------------------------------------------

function progressBar(percent) {
  const wrap = document.createElement("span");
  const bar = document.createElement("span");
  bar.className = "bar";
  const inner = document.createElement("span");
  inner.style.width = Math.max(0, Math.min(100, percent)) + "%";
  bar.appendChild(inner);
  wrap.append(bar, " " + percent.toFixed(0) + "%");
  return wrap;
}

// A list never goes back to an older state: an answer is dropped when the answer to a later request has
// been shown already (a slow periodic refresh ending after the one an upload or a promotion started).
const asked = { jobs: 0, datasets: 0, models: 0 };
const shown = { jobs: 0, datasets: 0, models: 0 };
async function newest(list, path) {
  const ticket = ++asked[list];
  const body = await getJson(path);
  if (ticket < shown[list]) return null;
  shown[list] = ticket;
  return body;
}

async function refreshJobs() {
  const jobs = await newest("jobs", "/v1/jobs?limit=20");
  if (!jobs) return;
  fill("jobs-table", jobs.items, (job) => {
    const row = document.createElement("tr");
    row.dataset.job = job.id;
    cell(row, job.id.slice(0, 12));
    cell(row, job.type);
    cell(row, job.state + (job.cancel_requested && job.state === "running" ? " (cancelling)" : ""));
    cell(row, progressBar(job.progress));
    cell(row, job.error ? job.error.type + ": " + job.error.message : job.stage);
    cell(row, when(job.created_at));
    const result = job.result || {};
    cell(row, result.version ? `${result.name} ${result.version}` : result.dataset_id || "");
    return row;
  });
}

async function refreshDatasets() {
  const datasets = await newest("datasets", "/v1/datasets?limit=100");
  if (!datasets) return;
  fill("datasets-table", datasets.items, (d) => {
    const row = document.createElement("tr");
    cell(row, d.name);
    cell(row, d.id.slice(0, 12));
    cell(row, d.kind);
    cell(row, d.state + (d.error ? ": " + d.error : ""));
    const info = d.info || {};
    cell(row, info.sessions);
    cell(row, info.duration_s != null ? info.duration_s.toFixed(1) + " s" : null);
    cell(row, when(d.created_at));
    return row;
  });
  const select = $("live-dataset");
  const chosen = select.value;
  const raw = datasets.items.filter((d) => d.kind === "raw" && d.state === "ready");
  const options = raw.map((d) => new Option(`${d.name} (${d.id.slice(0, 8)})`, d.id));
  if (options.map((o) => o.value).join() !== [...select.options].map((o) => o.value).join()) {
    select.replaceChildren(...options);
    if (raw.some((d) => d.id === chosen)) select.value = chosen;
    await loadSessions().catch((error) => showError("sessions: " + error.message));
  }
}

async function refreshModels() {
  const models = await newest("models", "/v1/models");
  if (!models) return;
  fill("models-table", models.items, (m) => {
    const row = document.createElement("tr");
    row.className = "clickable";
    row.dataset.model = m.name;
    cell(row, m.name);
    cell(row, m.latest);
    cell(row, m.versions);
    cell(row, m.task);
    cell(row, mae(m.metrics));
    cell(row, when(m.created));
    row.addEventListener("click", () => showModel(m.name));
    return row;
  });
}

async function showModel(name) {
  const detail = await getJson(`/v1/models/${encodeURIComponent(name)}`);
  $("model-detail").hidden = false;
  $("model-title").textContent = `${name}: ${detail.total} version(s), latest ${detail.latest || "none"}`;
  const admin = state.who && state.who.scope === "admin";
  fill("versions-table", detail.items, (v) => {
    const row = document.createElement("tr");
    cell(row, v.version);
    cell(row, v.latest ? "latest" : "");
    cell(row, mae(v.metrics));
    cell(row, when(v.created));
    cell(row, v.job_id ? v.job_id.slice(0, 12) : null);
    const actions = cell(row, "");
    if (admin && !v.latest) {
      const older = detail.latest && v.version < detail.latest;
      const button = document.createElement("button");
      button.className = "promote";
      button.textContent = older ? "Roll back to this" : "Promote";
      button.addEventListener("click", () => promote(name, v.version));
      actions.appendChild(button);
    }
    return row;
  });
  const latest = detail.items.find((v) => v.latest) || detail.items[0];
  if (latest) await showPlots(name, latest.version);
}

async function promote(name, version) {
  try {
    await api(`/v1/models/${encodeURIComponent(name)}/promote`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ version }),
    });
    await refreshModels();
    await showModel(name);
  } catch (error) {
    showError(`promote ${name} ${version}: ${error.message}`);
  }
}

async function showPlots(name, version) {
  const box = $("plots");
  const base = `/v1/models/${encodeURIComponent(name)}/versions/${encodeURIComponent(version)}`;
  const bundle = await getJson(base);
  const plots = Object.keys(bundle.files || {})
    .filter((f) => f.startsWith("plots/") && f.endsWith(".png"))
    .sort();
  const figures = await Promise.all(
    plots.map(async (file) => {
      const blob = await (await api(`${base}/files/${file}`)).blob(); // with the key, hence not <img src>
      const figure = document.createElement("figure");
      const img = document.createElement("img");
      img.src = URL.createObjectURL(blob);
      img.alt = file;
      const caption = document.createElement("figcaption");
      caption.textContent = `${version}: ${file}`;
      figure.append(img, caption);
      return figure;
    }),
  );
  for (const old of box.querySelectorAll("img")) URL.revokeObjectURL(old.src);
  box.replaceChildren(...figures);
  if (!figures.length) box.textContent = "this version has no plots";
}

async function refreshAll() {
  try {
    await Promise.all([refreshJobs(), refreshDatasets(), refreshModels()]);
  } catch (error) {
    if (error.status === 401) return signIn(); // the key was revoked meanwhile
    showError(error.message);
  }
}

function startRefresh() {
  stopRefresh();
  let ticks = 0;
  state.refresh = setInterval(() => {
    refreshJobs().catch((error) => showError("jobs: " + error.message));
    if (++ticks % 5 === 0) {
      // datasets and models change less often: a new upload, a job's output, a published version
      Promise.all([refreshDatasets(), refreshModels()]).catch((error) => showError(error.message));
    }
  }, REFRESH_MS);
}

function stopRefresh() {
  if (state.refresh) clearInterval(state.refresh);
  state.refresh = null;
}

async function uploadDataset(event) {
  event.preventDefault();
  const form = new FormData();
  form.append("name", $("upload-name").value.trim());
  for (const file of $("upload-files").files) form.append("files", file, file.name);
  $("upload-status").textContent = "uploading…";
  try {
    const dataset = await (await api("/v1/datasets", { method: "POST", body: form })).json();
    await refreshDatasets();
    $("upload-status").textContent = `dataset ${dataset.id} is ${dataset.state}`;
  } catch (error) {
    $("upload-status").textContent = "upload failed";
    showError("upload: " + error.message);
  }
}

// --- try it live -----------------------------------------------------------------------------------------

async function loadSessions() {
  const id = $("live-dataset").value;
  const select = $("live-session");
  if (!id) return select.replaceChildren();
  const sessions = await getJson(`/v1/datasets/${id}/sessions`);
  const ordered = [...sessions.items].sort((a, b) => (a.split === "test" ? 0 : 1) - (b.split === "test" ? 0 : 1));
  select.replaceChildren(...ordered.map((s) => new Option(`${s.filename} (${s.split})`, s.filename)));
}

function decode(base64, columns) {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const values = new Float32Array(bytes.buffer);
  return { values, rows: columns ? values.length / columns : 0 };
}

class LiveSession {
  constructor(datasetId, session) {
    this.url = `/v1/datasets/${datasetId}/sessions/${encodeURIComponent(session)}/samples`;
    this.next = 0; // next sample to fetch
    this.total = null;
    this.emg = []; // fetched EMG chunks not yet sent: {start, values, rows}
    this.angles = new Map(); // absolute sample -> true angles (kept for the trace window)
    this.sent = 0; // samples sent
    this.sends = []; // {end, at}: when each chunk went out, for the latency
    this.points = []; // {t, pred, truth}
    this.fetching = null;
    this.stopped = false;
  }

  async fetchChunk() {
    if (this.total !== null && this.next >= this.total) return;
    const count = Math.round(this.rate ? this.rate * CHUNK_SECONDS : 2000);
    const chunk = await getJson(`${this.url}?start=${this.next}&count=${count}&encoding=base64`);
    this.total = chunk.total;
    this.rate = chunk.sample_rate;
    this.channels = chunk.num_channels;
    this.joints = chunk.joint_names;
    const emg = decode(chunk.emg, chunk.num_channels);
    if (chunk.angles) {
      const angles = decode(chunk.angles, chunk.joint_names.length);
      const j = chunk.joint_names.length;
      for (let i = 0; i < angles.rows; i++) this.angles.set(chunk.start + i, angles.values.subarray(i * j, (i + 1) * j));
    }
    this.emg.push({ start: chunk.start, values: emg.values, rows: emg.rows });
    this.next = chunk.start + chunk.count;
  }

  buffered() {
    return this.next - this.sent; // fetched, not yet sent
  }

  async start() {
    await this.fetchChunk();
    const protocols = ["emgpose.stream"];
    if (apiKey()) protocols.push("emgpose.key." + apiKey());
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.ws = new WebSocket(`${scheme}//${location.host}/v1/stream?sample_rate=${this.rate}`, protocols);
    this.ws.binaryType = "arraybuffer";
    this.ws.onmessage = (event) => this.onMessage(JSON.parse(event.data));
    this.ws.onclose = (event) => this.onClose(event);
  }

  onMessage(message) {
    if (message.type === "ready") {
      $("live-model").textContent = `${message.model} ${message.model_version}`;
      this.model = message;
      this.t0 = performance.now();
      this.timer = setInterval(() => this.tick(), SEND_EVERY_MS);
      $("live-status").textContent = "playing";
    } else if (message.type === "prediction") {
      this.onPrediction(message);
    } else if (message.type === "error") {
      showError(`stream: ${message.detail} (${message.status})`);
    }
  }

  onPrediction(message) {
    const now = performance.now();
    const last = message.window_end_sample[message.window_end_sample.length - 1];
    const sent = this.sends.find((s) => s.end >= last);
    if (sent) $("live-latency").textContent = `${(now - sent.at).toFixed(0)} ms`;
    this.sends = this.sends.filter((s) => s.end > last);
    const values = message.radians || message.probabilities || [];
    message.window_end_sample.forEach((end, i) => {
      const truth = this.angles.get(end - 1) || null;
      this.points.push({ t: end / this.rate, pred: values[i], truth });
    });
    const since = last / this.rate - TRACE_SECONDS;
    while (this.points.length && this.points[0].t < since) this.points.shift();
    for (const key of this.angles.keys()) {
      if (key / this.rate >= since) break;
      this.angles.delete(key);
    }
    draw(this);
  }

  tick() {
    if (this.stopped) return;
    const due = Math.min(Math.floor(((performance.now() - this.t0) / 1000) * this.rate), this.total);
    const parts = [];
    let rows = 0;
    while (this.sent < due && this.emg.length) {
      const chunk = this.emg[0];
      const from = this.sent - chunk.start;
      const take = Math.min(chunk.rows - from, due - this.sent);
      parts.push(chunk.values.subarray(from * this.channels, (from + take) * this.channels));
      this.sent += take;
      rows += take;
      if (this.sent >= chunk.start + chunk.rows) this.emg.shift();
    }
    if (rows) {
      const frame = new Float32Array(rows * this.channels);
      let at = 0;
      for (const part of parts) {
        frame.set(part, at);
        at += part.length;
      }
      this.ws.send(frame.buffer);
      this.sends.push({ end: this.sent, at: performance.now() });
    }
    $("live-time").textContent = `${(this.sent / this.rate).toFixed(1)} / ${(this.total / this.rate).toFixed(1)} s`;
    if (!this.fetching && this.next < this.total && this.buffered() < this.rate * CHUNK_SECONDS) {
      this.fetching = this.fetchChunk()
        .catch((error) => showError("samples: " + error.message))
        .finally(() => (this.fetching = null));
    }
    if (this.sent >= this.total) this.finish("played to the end");
  }

  finish(reason) {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.timer);
    if (this.ws && this.ws.readyState <= 1) this.ws.close(1000, reason);
    $("live-status").textContent = reason;
    $("live-play").disabled = false;
    $("live-stop").disabled = true;
  }

  onClose(event) {
    if (!this.stopped) {
      const why = event.reason || `code ${event.code}`;
      if (event.code !== 1000) showError(`the stream closed: ${why}`);
      this.finish(`stream closed (${why})`);
    }
  }
}

async function play() {
  if (state.live) state.live.finish("stopped");
  const id = $("live-dataset").value;
  const session = $("live-session").value;
  if (!id || !session) return showError("pick a dataset and a session first (upload one under Datasets)");
  showError("");
  $("live-play").disabled = true;
  $("live-stop").disabled = false;
  $("live-status").textContent = "connecting…";
  $("live-latency").textContent = "–";
  state.live = new LiveSession(id, session);
  try {
    await state.live.start();
  } catch (error) {
    showError("try it live: " + error.message);
    state.live.finish("could not start");
  }
}

// --- drawing ----------------------------------------------------------------------------------------------

const FINGERS = ["THUMB", "INDEX", "MIDDLE", "RING", "PINKY"];

function groups(joints) {
  const byFinger = FINGERS.map((f) => ({ name: f.toLowerCase(), idx: [] }));
  const other = [];
  joints.forEach((name, i) => {
    const g = byFinger.find((f) => name.toUpperCase().startsWith(f.name.toUpperCase() + "_"));
    if (g) g.idx.push(i);
    else other.push({ name, idx: [i] });
  });
  return [...byFinger.filter((g) => g.idx.length), ...other].slice(0, 8);
}

function draw(live) {
  drawTraces($("live-traces"), live);
  drawSkeleton($("live-skeleton"), live);
}

function drawTraces(canvas, live) {
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const panels = groups(live.model.joints || live.model.classes || []);
  if (!panels.length || !live.points.length) return;
  const tStart = Math.max(0, live.points[live.points.length - 1].t - TRACE_SECONDS); // fills from the left
  const h = canvas.height / panels.length;
  const left = 70;
  const w = canvas.width - left - 10;
  const x = (t) => left + ((t - tStart) / TRACE_SECONDS) * w;
  panels.forEach((panel, p) => {
    const top = p * h;
    let lo = Infinity;
    let hi = -Infinity;
    for (const point of live.points) {
      for (const j of panel.idx) {
        for (const v of [point.pred && point.pred[j], point.truth && point.truth[j]]) {
          if (typeof v === "number") {
            lo = Math.min(lo, v);
            hi = Math.max(hi, v);
          }
        }
      }
    }
    if (!(hi > lo)) {
      lo -= 0.1;
      hi += 0.1;
    }
    const y = (v) => top + h - 6 - ((v - lo) / (hi - lo)) * (h - 12);
    ctx.strokeStyle = COLORS.grid;
    ctx.lineWidth = 1;
    ctx.strokeRect(left, top + 3, w, h - 6);
    ctx.fillStyle = COLORS.text;
    ctx.font = "12px sans-serif";
    ctx.fillText(panel.name, 6, top + h / 2);
    for (const [kind, color] of [["truth", COLORS.true], ["pred", COLORS.pred]]) {
      ctx.strokeStyle = color;
      ctx.lineWidth = 2;
      for (const j of panel.idx) {
        ctx.beginPath();
        let started = false;
        for (const point of live.points) {
          const v = point[kind] && point[kind][j];
          if (typeof v !== "number") {
            started = false;
            continue;
          }
          if (started) ctx.lineTo(x(point.t), y(v));
          else ctx.moveTo(x(point.t), y(v));
          started = true;
        }
        ctx.stroke();
      }
    }
  });
}

// The 2-D hand, palm towards the viewer: each finger a chain from the wrist; abduction turns a finger,
// flexion bends its segments towards the palm and shortens them as they tip away from the viewer.
const HAND = {
  thumb: { base: -1.05, lengths: [62, 40, 32], joints: ["CMC_FE", "MCP_FE", "IP_FE"], aa: "CMC_AA", side: 1 },
  index: { base: -0.3, lengths: [92, 48, 30, 24], joints: [null, "MCP_FE", "PIP_FE", "DIP_FE"], aa: "MCP_AA" },
  middle: { base: -0.08, lengths: [96, 52, 33, 26], joints: [null, "MCP_FE", "PIP_FE", "DIP_FE"], aa: "MCP_AA" },
  ring: { base: 0.14, lengths: [92, 48, 31, 25], joints: [null, "MCP_FE", "PIP_FE", "DIP_FE"], aa: "MCP_AA" },
  pinky: { base: 0.36, lengths: [84, 38, 25, 21], joints: [null, "MCP_FE", "PIP_FE", "DIP_FE"], aa: "MCP_AA" },
};

function angleOf(names, values, name) {
  const i = names.indexOf(name);
  return i >= 0 && values && typeof values[i] === "number" ? values[i] : 0;
}

function chain(ctx, origin, heading, segments, color, width, scale = 1) {
  ctx.strokeStyle = color;
  ctx.fillStyle = color;
  ctx.lineWidth = width;
  let [px, py] = origin;
  let dir = heading;
  ctx.beginPath();
  ctx.moveTo(px, py);
  const points = [];
  for (const { length, bend, foreshorten } of segments) {
    dir += bend;
    const l = length * scale * Math.max(0.35, Math.cos(foreshorten * 0.7));
    px += Math.sin(dir) * l;
    py -= Math.cos(dir) * l;
    ctx.lineTo(px, py);
    points.push([px, py]);
  }
  ctx.stroke();
  for (const [cx, cy] of points) {
    ctx.beginPath();
    ctx.arc(cx, cy, width + 1, 0, 2 * Math.PI);
    ctx.fill();
  }
}

function drawHand(ctx, canvas, names, values, color, width) {
  const wrist = [canvas.width / 2 + 20, canvas.height - 40];
  for (const [finger, spec] of Object.entries(HAND)) {
    const prefix = finger.toUpperCase() + "_";
    const aa = angleOf(names, values, prefix + spec.aa);
    let flex = 0;
    const segments = spec.lengths.map((length, k) => {
      const joint = spec.joints[k];
      const bend = joint ? angleOf(names, values, prefix + joint) : 0;
      flex += bend;
      return { length, bend: k === 0 ? 0 : bend * 0.35 * (spec.side || 1), foreshorten: flex };
    });
    chain(ctx, wrist, spec.base + aa, segments, color, width, 1.35);
  }
  ctx.beginPath();
  ctx.arc(wrist[0], wrist[1], width + 3, 0, 2 * Math.PI);
  ctx.fill();
}

// A leg seen from the side for knee (and hip, ankle) data: thigh from the hip, shank bent at the knee.
function drawLeg(ctx, canvas, names, values, color, width) {
  const find = (word) => names.find((n) => n.toUpperCase().includes(word));
  const hip = angleOf(names, values, find("HIP"));
  const knee = angleOf(names, values, find("KNEE"));
  const ankle = angleOf(names, values, find("ANKLE"));
  const segments = [
    { length: 170, bend: hip, foreshorten: 0 },
    { length: 160, bend: -knee, foreshorten: 0 },
    { length: 55, bend: Math.PI / 2 + ankle, foreshorten: 0 },
  ];
  chain(ctx, [canvas.width / 2, 40], Math.PI, segments, color, width);
}

// Any other joints: one chain, each joint bending the next segment.
function drawChain(ctx, canvas, names, values, color, width) {
  const segment = (canvas.height - 80) / Math.max(1, names.length);
  const segments = names.map((_, i) => ({ length: segment, bend: angleOf(names, values, names[i]), foreshorten: 0 }));
  chain(ctx, [canvas.width / 2, canvas.height - 40], 0, segments, color, width);
}

function drawSkeleton(canvas, live) {
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const names = live.model.joints || [];
  const point = live.points[live.points.length - 1];
  if (!point || !names.length) return;
  const upper = names.map((n) => n.toUpperCase());
  const kind = upper.some((n) => FINGERS.some((f) => n.startsWith(f + "_")))
    ? drawHand
    : upper.some((n) => n.includes("KNEE"))
      ? drawLeg
      : drawChain;
  if (point.truth) kind(ctx, canvas, names, point.truth, COLORS.true, 3);
  kind(ctx, canvas, names, point.pred, COLORS.pred, 4);
  ctx.fillStyle = COLORS.text;
  ctx.font = "12px sans-serif";
  ctx.fillText(`t = ${point.t.toFixed(2)} s`, 10, 18);
}

// --- start ------------------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  setupKeyForm();
  $("upload-form").addEventListener("submit", uploadDataset);
  $("live-dataset").addEventListener("change", () => loadSessions().catch((e) => showError(e.message)));
  $("live-play").addEventListener("click", play);
  $("live-stop").addEventListener("click", () => state.live && state.live.finish("stopped"));
  signIn();
});
