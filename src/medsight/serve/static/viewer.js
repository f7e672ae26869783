// medsight viewer: runs, jobs and a slice viewer over the server's REST API (/api/...). No dependencies.
//
// Volumes arrive once as (C, *spatial) little-endian arrays with their geometry (spacing per array axis in mm,
// origin and direction in LPS); slicing, window/level, label colours and heat maps are drawn here on canvases.
// Planes: axial fixes array axis 0 (shows y, x), coronal axis 1 (z, x), sagittal axis 2 (z, y); for coronal and
// sagittal the rows are flipped when the volume says so (rows_flipped: head up), as the server's slice PNGs.
"use strict";

const $ = (id) => document.getElementById(id);
const PLANES = ["axial", "coronal", "sagittal"];
const ARRAYS = { uint8: Uint8Array, int16: Int16Array, float32: Float32Array };
const FIT_PX = 360; // the longer side of a view at zoom 1 (CSS pixels)

const S = {
  source: null,      // {base: "/api/jobs/ID" | "/api/runs/R/cases/C", title, job?}
  vols: {},          // name -> {meta, data}
  slice: {},         // plane -> index
  zoom: 1,
  window: null,      // [low, high] in real values
  active: "axial",
  colours: {},       // label value -> [r, g, b]
  hidden: new Set(), // label values not drawn
  presets: {},
  loadToken: 0,
  lastBase: null,    // the volume under the overlays at the last render
};

// ------------------------------------------------------------------------------------------- small helpers
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "on") { for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn); }
    else if (k === "text") node.textContent = v;
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function status(text, isError = false) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", isError);
}

async function api(path, options = {}) {
  const r = await fetch(path, { credentials: "same-origin", ...options });
  if (!r.ok) {
    let detail = `${r.status} ${r.statusText}`;
    try { detail = (await r.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new Error(detail);
  }
  return r;
}
const getJSON = async (path) => (await api(path)).json();
const fmt = (v, d = 3) => (typeof v === "number" && isFinite(v) ? v.toFixed(d) : "–");
const enc = encodeURIComponent;

// ------------------------------------------------------------------------------------------- runs and jobs
async function loadRuns() {
  const { runs } = await getJSON("/api/runs");
  const box = $("runs");
  box.replaceChildren();
  const select = $("job-run");
  select.replaceChildren();
  if (!runs.length) box.append(el("p", { class: "muted", text: "no runs served" }));
  for (const run of runs) {
    select.append(el("option", { value: run.name, text: `${run.name} (${run.task})` }));
    const m = run.metrics || {};
    const score = run.task === "classification"
      ? `AUC ${fmt(typeof m.auc === "object" && m.auc ? m.auc.macro : m.auc)} · accuracy ${fmt(m.accuracy)}`
      : `mean Dice ${fmt(m.mean_dice)}${m.cases ? ` on ${m.cases} cases` : ""}`;
    const links = el("div", { class: "links" });
    for (const report of run.reports || []) {
      links.append(el("a", { href: `/api/runs/${enc(run.name)}/files/${enc(report)}`, target: "_blank", rel: "noopener", text: report }));
    }
    const cases = el("div", { class: "cases" });
    const item = el("div", { class: "run", "data-run": run.name },
      el("div", { class: "name", text: run.name }),
      el("div", { class: "metrics", text: `${run.task} · ${run.dims || "?"}D · ${(run.folds || []).join(", ") || "no folds"} · ${score}` }),
      links, cases);
    box.append(item);
    if (run.task === "segmentation") loadCases(run.name, cases).catch((e) => status(e.message, true));
  }
}

async function loadCases(run, box) {
  const info = await getJSON(`/api/runs/${enc(run)}`);
  for (const c of info.cases) {
    box.append(el("button", {
      type: "button", "data-case": c.case_id, title: `fold ${c.fold}${c.has_reference ? ", with reference" : ""}`,
      text: c.case_id, on: { click: () => show({ base: `/api/runs/${enc(run)}/cases/${enc(c.case_id)}`, title: `${run} · validation case ${c.case_id} (fold ${c.fold})` }) },
    }));
  }
  if (!info.cases.length) box.append(el("span", { class: "muted", text: "no validation predictions" }));
}

let polling = null;
async function loadJobs() {
  const { jobs } = await getJSON("/api/jobs");
  const box = $("jobs");
  box.replaceChildren();
  if (!jobs.length) box.append(el("p", { class: "muted", text: "none yet" }));
  for (const job of jobs) box.append(jobItem(job));
  const busy = jobs.some((j) => j.status === "queued" || j.status === "running");
  if (busy && !polling) polling = setInterval(() => loadJobs().catch((e) => status(e.message, true)), 1000);
  if (!busy && polling) { clearInterval(polling); polling = null; }
}

// the studies of the DICOM node (medsight serve --pacs-workdir): UIDs, state and reason, refreshed every 5 s
async function loadPacs() {
  const r = await fetch("/api/pacs/studies", { credentials: "same-origin" });
  if (r.status === 404) return false;  // no node configured
  if (!r.ok) throw new Error(`${r.status} ${r.statusText}`);
  const { studies } = await r.json();
  $("pacs-section").hidden = false;
  const box = $("pacs");
  box.replaceChildren();
  if (!studies.length) box.append(el("p", { class: "muted", text: "no studies received yet" }));
  for (const st of studies) {
    const item = el("div", { class: `job ${st.state}`, "data-study": st.study_uid },
      el("div", { class: "name", text: `study …${st.study_uid.slice(-12)}`, title: st.study_uid }),
      el("div", { class: "metrics", text: `${st.state} · ${st.instances} instances · ${st.sent}/${st.results} results sent` }));
    for (const se of st.series) {
      item.append(el("div", { class: "message", "data-series": se.series_uid,
        text: `${se.modality || "?"} series …${se.series_uid.slice(-8)}: ${se.state}${se.reason ? ` (${se.reason})` : ""}` }));
    }
    box.append(item);
  }
  return true;
}

function jobItem(job) {
  const base = `/api/jobs/${enc(job.id)}`;
  const links = el("div", { class: "links" });
  for (const role of job.outputs) links.append(el("a", { href: `${base}/files/${enc(role)}`, text: role, download: "" }));
  const item = el("div", { class: `job ${job.status}`, "data-job": job.id },
    el("div", { class: "name", text: `${job.id} · ${job.run}` }),
    el("div", { class: "metrics", text: `${job.status}${job.seconds ? ` in ${job.seconds.toFixed(1)} s` : ""} · ${job.input.kind}` }),
    job.message ? el("div", { class: "message", text: job.message }) : null,
    links);
  if (job.status === "done") {
    item.append(el("button", {
      type: "button", class: "primary", "data-view-job": job.id, text: "view",
      on: { click: () => show({ base, title: `job ${job.id} · ${job.run}`, job }) },
    }));
  }
  return item;
}

async function submitJob(event) {
  event.preventDefault();
  const form = new FormData($("job-form"));
  for (const key of ["file", "reference"]) {
    const f = form.get(key);
    if (f instanceof File && !f.name && !f.size) form.delete(key);
  }
  if (!String(form.get("path") || "").trim()) form.delete("path");
  $("job-submit").disabled = true;
  try {
    const job = await (await api("/api/jobs", { method: "POST", body: form })).json();
    status(`job ${job.id} queued`);
    $("job-form").reset();
    await loadJobs();
  } catch (e) {
    status(e.message, true);
  } finally {
    $("job-submit").disabled = false;
  }
}

// ------------------------------------------------------------------------------------------- loading volumes
async function fetchVolume(base, name) {
  const meta = await getJSON(`${base}/volumes/${enc(name)}`);
  const buffer = await (await api(`${base}/volumes/${enc(name)}/data`)).arrayBuffer();
  const Type = ARRAYS[meta.dtype];
  if (!Type) throw new Error(`unsupported dtype ${meta.dtype}`);
  return { meta, data: new Type(buffer) };
}

function show(source) { openSource(source).catch((e) => status(e.message, true)); }

async function openSource(source) {
  const token = ++S.loadToken;
  status(`loading ${source.title}…`);
  $("viewer").removeAttribute("data-loaded");
  let names;
  if (source.job) {
    const job = await getJSON(source.base);
    names = job.volumes;
    source.job = job;
  } else {
    const c = await getJSON(source.base.replace(/\/cases\/[^/]+$/, ""));
    const id = decodeURIComponent(source.base.split("/").pop());
    const info = c.cases.find((x) => x.case_id === id) || {};
    names = ["labels"];
    if (info.has_image) names.push("image");
    if (info.has_reference) names.push("reference");
    if (info.has_probabilities) names.push("probabilities");
    if (info.has_uncertainty) names.push("uncertainty");
  }
  const vols = {};
  try {
    for (const name of names) vols[name] = await fetchVolume(source.base, name);
  } catch (e) {
    status(e.message, true);
    return;
  }
  if (token !== S.loadToken) return; // another source was chosen meanwhile
  S.source = source;
  S.vols = vols;
  S.colours = {};
  S.hidden = new Set();
  for (const v of Object.values(vols)) {
    if (v.meta.kind === "labels") for (const [value, l] of Object.entries(v.meta.labels)) S.colours[value] = S.colours[value] || l.colour;
  }
  setupControls();
  resetSlices();
  S.lastBase = baseName();
  S.zoom = 1;
  $("title").textContent = source.title;
  render();
  details();
  status(`${source.title}: ${Object.keys(vols).join(", ")}`);
  $("viewer").setAttribute("data-loaded", source.base);
}

function baseName() {
  if ($("heat").value === "heatmap" && S.vols.heatmap_image) return "heatmap_image";
  if (S.vols.image) return "image";
  return S.vols.labels ? "labels" : Object.keys(S.vols)[0];
}
const baseVol = () => S.vols[baseName()];
const onNetworkGrid = () => baseName() === "heatmap_image";

function planesOf(vol) { return vol.meta.shape.length === 2 ? ["axial"] : PLANES; }

function resetSlices() {
  const vol = baseVol();
  const shape = vol.meta.shape;
  S.slice = {};
  if (shape.length === 2) { S.slice.axial = 0; return; }
  // start on the slice of the axial plane with the most foreground, else the middle
  const lab = S.vols.reference || S.vols.labels;
  PLANES.forEach((p, a) => { S.slice[p] = Math.floor(shape[a] / 2); });
  if (lab && !onNetworkGrid()) {
    const [Z, Y, X] = shape;
    let best = -1;
    for (let z = 0; z < Z; z++) {
      let n = 0;
      for (let i = z * Y * X; i < (z + 1) * Y * X; i++) if (lab.data[i]) n++;
      if (n > best) { best = n; if (n > 0) S.slice.axial = z; }
    }
  }
}

function setupControls() {
  const vol = S.vols.image || baseVol();
  const heat = $("heat");
  const keep = heat.value;
  heat.replaceChildren(el("option", { value: "none", text: "none" }));
  const probs = S.vols.probabilities;
  if (probs) {
    for (let k = 1; k < probs.meta.channels; k++) {
      heat.append(el("option", { value: `prob:${k}`, text: `probability of ${probs.meta.labels[k] || `label ${k}`}` }));
    }
  }
  // the voxel uncertainty of medsight predict --uncertainty: normalised predictive entropy, 0 certain .. 1 uniform
  if (S.vols.uncertainty) heat.append(el("option", { value: "uncertainty", text: "uncertainty (entropy, 0-1)" }));
  if (S.vols.heatmap) heat.append(el("option", { value: "heatmap", text: "Grad-CAM / saliency (network grid)" }));
  heat.value = [...heat.options].some((o) => o.value === keep) ? keep : "none";
  const compare = $("compare");
  compare.disabled = !(S.vols.labels && S.vols.reference);
  if (compare.disabled) compare.checked = false;
  applyWindow(vol.meta.window);
  $("preset").value = "auto";
  legend();
}

function applyWindow(win) {
  S.window = [win[0], win[1]];
  $("level").value = +((win[0] + win[1]) / 2).toPrecision(6);
  $("width").value = +(win[1] - win[0]).toPrecision(6);
}

// ------------------------------------------------------------------------------------------- geometry
function planeDims(shape, plane) {
  if (shape.length === 2) return { rows: shape[0], cols: shape[1], count: 1 };
  const [Z, Y, X] = shape;
  return { axial: { rows: Y, cols: X, count: Z }, coronal: { rows: Z, cols: X, count: Y }, sagittal: { rows: Z, cols: Y, count: X } }[plane];
}

// array index (z, y, x) / (y, x) of pixel (r, c) of a plane at slice s
function voxelIndex(meta, plane, s, r, c) {
  const shape = meta.shape;
  if (shape.length === 2) return [r, c];
  const rr = meta.rows_flipped ? shape[0] - 1 - r : r;
  if (plane === "axial") return [s, r, c];
  if (plane === "coronal") return [rr, s, c];
  return [rr, c, s];
}

function linear(shape, idx) {
  let i = 0;
  for (let a = 0; a < shape.length; a++) i = i * shape[a] + idx[a];
  return i;
}

function pixelSpacing(meta, plane) {
  const sp = meta.spacing;
  if (meta.shape.length === 2) return [sp[0], sp[1]];
  return { axial: [sp[1], sp[2]], coronal: [sp[0], sp[2]], sagittal: [sp[0], sp[1]] }[plane];
}

function position(meta, idx) { // LPS mm: origin + direction @ (spacing * idx)
  return meta.origin.map((o, k) => o + idx.reduce((acc, v, i) => acc + meta.direction[k][i] * meta.spacing[i] * v, 0));
}

function jet(v) {
  const f = (x) => Math.max(0, Math.min(1, 1.5 - Math.abs(4 * v - x)));
  return [255 * f(3), 255 * f(2), 255 * f(1)];
}

// ------------------------------------------------------------------------------------------- rendering
function overlaysFor(role) {
  if (onNetworkGrid()) return { labels: null, heat: S.vols.heatmap, channel: 0 };
  const heatMode = $("heat").value;
  const prob = heatMode.startsWith("prob:");
  const heat = prob ? S.vols.probabilities : heatMode === "uncertainty" ? S.vols.uncertainty || null : null;
  const labels = $("overlay-on").checked ? S.vols[role] || null : null;
  return { labels, heat, channel: prob && heat ? +heatMode.split(":")[1] : 0 };
}

function drawPlane(canvas, plane, role) {
  const vol = baseVol();
  const meta = vol.meta;
  const { rows, cols } = planeDims(meta.shape, plane);
  const s = S.slice[plane];
  const ov = overlaysFor(role);
  const n = meta.shape.reduce((a, b) => a * b, 1);
  const rgbBase = meta.kind === "image" && meta.channels === 3 && meta.dtype === "uint8" && meta.shape.length === 2;
  const [lo, hi] = S.window;
  const span = hi > lo ? hi - lo : 1;
  const alphaL = +$("overlay-opacity").value;
  const alphaH = +$("heat-opacity").value;
  const off = document.createElement("canvas");
  off.width = cols;
  off.height = rows;
  const ctx = off.getContext("2d");
  const img = ctx.createImageData(cols, rows);
  const px = img.data;
  const labelBase = meta.kind === "labels";
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const i = linear(meta.shape, voxelIndex(meta, plane, s, r, c));
      let R, G, B;
      if (rgbBase) { R = vol.data[i]; G = vol.data[n + i]; B = vol.data[2 * n + i]; }
      else if (labelBase) { R = G = B = 0; }
      else { const g = Math.max(0, Math.min(255, ((vol.data[i] * meta.scale - lo) / span) * 255)); R = G = B = g; }
      if (ov.heat) {
        const h = ov.heat.data[ov.channel * n + i] * ov.heat.meta.scale;
        const a = alphaH * h;
        const [hr, hg, hb] = jet(h);
        R = R * (1 - a) + hr * a; G = G * (1 - a) + hg * a; B = B * (1 - a) + hb * a;
      }
      const lab = ov.labels ? ov.labels.data[i] : (labelBase ? vol.data[i] : 0);
      if (lab && !S.hidden.has(String(lab))) {
        const col = S.colours[lab] || [255, 255, 0];
        const a = labelBase && !ov.labels ? 1 : alphaL;
        R = R * (1 - a) + col[0] * a; G = G * (1 - a) + col[1] * a; B = B * (1 - a) + col[2] * a;
      }
      const o = 4 * (r * cols + c);
      px[o] = R; px[o + 1] = G; px[o + 2] = B; px[o + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
  const [sr, sc] = pixelSpacing(meta, plane);
  const fit = FIT_PX / Math.max(rows * sr, cols * sc);
  canvas.width = Math.max(1, Math.round(cols * sc * fit * S.zoom));
  canvas.height = Math.max(1, Math.round(rows * sr * fit * S.zoom));
  const out = canvas.getContext("2d");
  out.imageSmoothingEnabled = false;
  out.drawImage(off, 0, 0, canvas.width, canvas.height);
}

function viewList() {
  const planes = planesOf(baseVol());
  const compare = $("compare").checked && !onNetworkGrid();
  const views = [];
  for (const plane of planes) {
    if (compare) { views.push({ plane, role: "labels" }, { plane, role: "reference" }); }
    else views.push({ plane, role: S.vols.labels ? "labels" : "reference" });
  }
  return views;
}

function render() {
  if (!S.source) return;
  if (S.lastBase !== baseName()) { // switched to or from the network grid of a heat map
    S.lastBase = baseName();
    applyWindow(baseVol().meta.window);
    resetSlices();
  }
  const box = $("views");
  const views = viewList();
  const key = views.map((v) => `${v.plane}/${v.role}`).join(",") + baseName();
  if (box.dataset.layout !== key) {
    box.replaceChildren(...views.map(buildView));
    box.dataset.layout = key;
    box.classList.toggle("compare", views.some((v) => v.role === "reference") && views.some((v) => v.role === "labels"));
  }
  for (const fig of box.children) {
    const plane = fig.dataset.plane;
    const canvas = fig.querySelector("canvas");
    drawPlane(canvas, plane, fig.dataset.role);
    // as wide as the canvas (the caption wraps instead of widening the view), zoomed views scroll inside
    fig.style.width = `${Math.min(canvas.width + 2, Math.round(window.innerWidth * 0.46))}px`;
    const { count } = planeDims(baseVol().meta.shape, plane);
    const slider = fig.querySelector("input[type=range]");
    slider.max = count - 1;
    slider.value = S.slice[plane];
    fig.querySelector(".slice-no").textContent = `${S.slice[plane] + 1} / ${count}`;
    fig.classList.toggle("active", plane === S.active);
  }
  $("zoom-value").textContent = `${Math.round(S.zoom * 100)} %`;
}

function buildView({ plane, role }) {
  const canvas = el("canvas", { "data-plane": plane, "data-role": role, tabindex: "0", "aria-label": `${plane} view (${role})` });
  const slider = el("input", { type: "range", min: "0", value: "0", step: "1", "data-plane": plane, "aria-label": `${plane} slice` });
  slider.addEventListener("input", () => { S.slice[plane] = +slider.value; S.active = plane; render(); });
  const caption = el("figcaption", {},
    el("span", { text: `${plane}${$("compare").checked ? ` · ${role === "labels" ? "prediction" : "reference"}` : ""}` }),
    slider, el("span", { class: "slice-no" }));
  const fig = el("figure", { class: "view", "data-plane": plane, "data-role": role }, el("div", { class: "scroller" }, canvas), caption);
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    if (e.ctrlKey || e.metaKey) zoomBy(e.deltaY < 0 ? 1.25 : 0.8);
    else step(plane, e.deltaY > 0 ? 1 : -1);
  }, { passive: false });
  canvas.addEventListener("keydown", (e) => {
    const d = { ArrowUp: 1, ArrowDown: -1, PageUp: 10, PageDown: -10 }[e.key];
    if (d) { e.preventDefault(); step(plane, d); }
  });
  canvas.addEventListener("mousemove", (e) => readout(e, canvas, plane, role));
  canvas.addEventListener("mouseleave", () => { $("readout").innerHTML = "&nbsp;"; });
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  canvas.addEventListener("mousedown", (e) => startDrag(e, canvas, plane));
  return fig;
}

function step(plane, d) {
  const { count } = planeDims(baseVol().meta.shape, plane);
  S.slice[plane] = Math.max(0, Math.min(count - 1, S.slice[plane] + d));
  S.active = plane;
  render();
}

function zoomBy(f) { S.zoom = Math.max(0.25, Math.min(16, S.zoom * f)); render(); }

function pixelAt(e, canvas, plane) {
  const rect = canvas.getBoundingClientRect();
  const { rows, cols } = planeDims(baseVol().meta.shape, plane);
  const c = Math.floor(((e.clientX - rect.left) / rect.width) * cols);
  const r = Math.floor(((e.clientY - rect.top) / rect.height) * rows);
  return r >= 0 && r < rows && c >= 0 && c < cols ? [r, c] : null;
}

function readout(e, canvas, plane, role) {
  const at = pixelAt(e, canvas, plane);
  if (!at) return;
  const vol = baseVol();
  const meta = vol.meta;
  const idx = voxelIndex(meta, plane, S.slice[plane], at[0], at[1]);
  const i = linear(meta.shape, idx);
  const n = meta.shape.reduce((a, b) => a * b, 1);
  const pos = position(meta, idx).map((v) => v.toFixed(1)).join(", ");
  const parts = [`${plane}`, `voxel (${idx.join(", ")})`, `${onNetworkGrid() ? "network grid " : ""}(${pos}) mm LPS`];
  if (meta.kind === "image") {
    const vals = meta.channels === 3 && meta.shape.length === 2 ? [0, 1, 2].map((k) => vol.data[k * n + i]).join("/") : +(vol.data[i] * meta.scale).toPrecision(6);
    parts.push(`value ${vals}${meta.modality === "CT" ? " HU" : ""}`);
  }
  if (!onNetworkGrid()) {
    for (const name of ["labels", "reference"]) {
      const lv = S.vols[name];
      if (!lv) continue;
      const v = lv.data[i];
      const label = v ? (lv.meta.labels[v] || {}).name || `label ${v}` : "background";
      parts.push(`${name === "labels" ? "prediction" : "reference"} ${label}`);
    }
    const pv = S.vols.probabilities;
    if (pv) {
      const probs = [];
      for (let k = 1; k < pv.meta.channels; k++) probs.push(`${pv.meta.labels[k] || k} ${fmt(pv.data[k * n + i] * pv.meta.scale, 2)}`);
      parts.push(`p(${probs.join(", ")})`);
    }
    const uv = S.vols.uncertainty;
    if (uv) parts.push(`uncertainty ${fmt(uv.data[i] * uv.meta.scale, 2)}`);
  } else if (S.vols.heatmap) {
    parts.push(`heat ${fmt(S.vols.heatmap.data[i] * S.vols.heatmap.meta.scale, 2)}`);
  }
  $("readout").textContent = parts.join(" · ");
}

function startDrag(e, canvas, plane) {
  S.active = plane;
  const windowing = e.button === 2 || e.shiftKey;
  const x0 = e.clientX, y0 = e.clientY;
  const [lo0, hi0] = S.window;
  let moved = false;
  const move = (ev) => {
    const dx = ev.clientX - x0, dy = ev.clientY - y0;
    if (Math.abs(dx) + Math.abs(dy) > 2) moved = true;
    if (!windowing || !moved) return;
    const width0 = hi0 - lo0, level0 = (lo0 + hi0) / 2;
    const width = Math.max(width0 * Math.exp(dx / 200), 1e-6);
    const level = level0 - (dy / 200) * width0;
    applyWindow([level - width / 2, level + width / 2]);
    $("preset").value = "custom";
    render();
  };
  const up = (ev) => {
    window.removeEventListener("mousemove", move);
    window.removeEventListener("mouseup", up);
    if (!moved && !windowing) jumpTo(ev, canvas, plane);
  };
  window.addEventListener("mousemove", move);
  window.addEventListener("mouseup", up);
}

function jumpTo(e, canvas, plane) {
  const at = pixelAt(e, canvas, plane);
  const meta = baseVol().meta;
  if (!at || meta.shape.length !== 3) return;
  const idx = voxelIndex(meta, plane, S.slice[plane], at[0], at[1]);
  PLANES.forEach((p, a) => { if (p !== plane) S.slice[p] = idx[a]; });
  render();
}

function legend() {
  const box = $("legend");
  box.replaceChildren();
  const names = {};
  for (const v of Object.values(S.vols)) if (v.meta.kind === "labels") Object.assign(names, v.meta.labels);
  for (const [value, info] of Object.entries(names)) {
    const c = S.colours[value] || info.colour;
    const hex = "#" + c.map((x) => Math.round(x).toString(16).padStart(2, "0")).join("");
    const colour = el("input", { type: "color", value: hex, "aria-label": `colour of ${info.name}` });
    colour.addEventListener("input", () => {
      const h = colour.value;
      S.colours[value] = [1, 3, 5].map((k) => parseInt(h.slice(k, k + 2), 16));
      render();
    });
    const shown = el("input", { type: "checkbox", checked: !S.hidden.has(value), "aria-label": `show ${info.name}` });
    shown.addEventListener("change", () => { if (shown.checked) S.hidden.delete(value); else S.hidden.add(value); render(); });
    box.append(el("label", {}, shown, colour, el("span", { text: `${value} ${info.name}` })));
  }
}

function details() {
  const box = $("details");
  box.replaceChildren();
  const job = S.source.job;
  if (!job) return;
  if (job.classification) {
    const rows = Object.entries(job.classification.probabilities).map(([k, p]) => el("tr", {}, el("td", { text: k }), el("td", { text: fmt(p, 3) })));
    box.append(el("p", { text: `prediction: ${job.classification.prediction}` }),
      el("table", {}, el("tr", {}, el("th", { text: "class" }), el("th", { text: "probability" })), ...rows));
  }
  const links = el("div", { class: "links" }, el("span", { class: "muted", text: "downloads: " }));
  for (const role of job.outputs) links.append(el("a", { href: `/api/jobs/${enc(job.id)}/files/${enc(role)}`, text: role, download: "" }));
  box.append(links);
}

// ------------------------------------------------------------------------------------------- start
async function start() {
  $("job-form").addEventListener("submit", submitJob);
  for (const id of ["overlay-on", "overlay-opacity", "heat-opacity", "compare"]) $(id).addEventListener("input", render);
  $("heat").addEventListener("change", render);
  $("zoom-in").addEventListener("click", () => zoomBy(1.25));
  $("zoom-out").addEventListener("click", () => zoomBy(0.8));
  $("zoom-reset").addEventListener("click", () => { S.zoom = 1; render(); });
  $("preset").addEventListener("change", () => {
    const p = $("preset").value;
    if (p === "auto" && S.source) applyWindow(baseVol().meta.window);
    else if (S.presets[p]) { const [l, w] = S.presets[p]; applyWindow([l - w / 2, l + w / 2]); }
    render();
  });
  for (const id of ["level", "width"]) {
    $(id).addEventListener("change", () => {
      const l = +$("level").value, w = Math.max(+$("width").value, 1e-6);
      S.window = [l - w / 2, l + w / 2];
      $("preset").value = "custom";
      render();
    });
  }
  document.addEventListener("keydown", (e) => {
    if (e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement || !S.source) return;
    const d = { ArrowUp: 1, ArrowDown: -1, PageUp: 10, PageDown: -10 }[e.key];
    if (d) { e.preventDefault(); step(S.active, d); }
  });
  try {
    S.presets = (await getJSON("/api/presets")).presets;
    const sel = $("preset");
    for (const name of Object.keys(S.presets)) sel.append(el("option", { value: name, text: `${name} (${S.presets[name].join(", ")})` }));
    sel.append(el("option", { value: "custom", text: "custom" }));
    await loadRuns();
    await loadJobs();
    if (await loadPacs()) setInterval(() => loadPacs().catch((e) => status(e.message, true)), 5000);
    status("ready");
  } catch (e) {
    status(e.message, true);
  }
}

document.addEventListener("DOMContentLoaded", start);
