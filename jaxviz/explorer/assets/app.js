// jaxviz run explorer: a static page over data/*.js and thumbs/*.webp written by `jaxviz report`.
// Every string from a run is put on the page with textContent (never innerHTML); data files only call
// the jaxvizData callbacks below. Rows are virtualized: only the rows in view exist in the DOM.
"use strict";

const S = {meta: null, shards: [], pages: {}, n: 0, view: new Int32Array(0), sel: -1, detailRow: -1,
           cols: {name: [], status: [], cells: [], cls: [], prob: [], pred: [], target: [], reason: [], metrics: {}}};
window.jaxvizData = {
  meta(_, d) { S.meta = d; },
  index(k, d) { S.shards[k] = d; },
  page(p, d) { S.pages[p] = d; },
};
const $ = (id) => document.getElementById(id);
const STATUS = ["done", "partly failed", "failed"];  // partly: a method failed on it (in any run)
const ROW_PAD = 4;
const MAX_SPACER = 3e7;  // browsers cap an element's height (~33.5 M px): taller lists scroll proportionally
let rowH = 68;

function el(tag, props, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "text") e.textContent = v;
    else if (k === "cls") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const k of kids) if (k != null) e.append(k);
  return e;
}

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const s = document.createElement("script");
    s.src = src;
    s.onload = () => { s.remove(); resolve(); };
    s.onerror = () => { s.remove(); reject(new Error("could not load " + src)); };
    document.head.append(s);
  });
}
const pad = (n, w) => String(n).padStart(w, "0");

// ------------------------------------------------------------------ data
function addShard(d) {
  const c = S.cols;
  for (const k of ["name", "status", "cells", "cls", "prob", "pred", "target", "reason"]) for (const v of d[k]) c[k].push(v);
  for (const m of S.meta.metrics) { c.metrics[m] = c.metrics[m] || []; for (const v of d.metrics[m]) c.metrics[m].push(v); }
  S.n += d.n;
}

async function loadIndex() {
  for (let k = 1; k < S.meta.shards; k++) {
    await loadScript(`data/index-${pad(k, 4)}.js`);
    addShard(S.shards[k]); S.shards[k] = null;
    $("loading").textContent = S.n < S.meta.rows ? `indexed ${S.n} of ${S.meta.rows} images…` : "";
    refresh(false);
  }
  $("loading").textContent = "";
}

async function page(p) {
  if (!S.pages[p]) await loadScript(`data/page-${pad(p, 5)}.js`);
  return S.pages[p];
}

// ------------------------------------------------------------------ header
function runSummary(run) {
  const s = run.summary || {};
  const t = el("table");
  const line = (k, v) => t.append(el("tr", {}, el("th", {text: k}), el("td", {text: String(v)})));
  line("model", s.model || run.config.model || "(default)");
  line("methods", run.methods.join(", "));
  line("images done", run.images);
  line("failed / partly", `${run.failed} / ${run.partial}`);
  if (s.images_per_second != null) line("throughput (last run)", `${s.images_per_second} images/s over ${s.seconds} s`);
  if (run.evaluated) line("metrics", "from jaxviz evaluate (evaluation.jsonl)");
  const box = el("div", {cls: "run"}, el("b", {text: run.label}), t);
  const fails = Object.entries(run.failures);
  if (fails.length) {
    const ft = el("table");
    for (const [reason, n] of fails) ft.append(el("tr", {}, el("td", {cls: "n", text: String(n)}), el("td", {text: reason})));
    box.append(el("details", {}, el("summary", {text: `failures by reason (${fails.length})`}), ft));
  }
  const ct = el("table");
  for (const [k, v] of Object.entries(run.config || {})) ct.append(el("tr", {}, el("th", {text: k}), el("td", {text: JSON.stringify(v)})));
  box.append(el("details", {}, el("summary", {text: "settings"}), ct));
  return box;
}

function className(code) {
  if (code < 0) return "–";
  const [idx, name] = S.meta.classes[code];
  return name ? `${name} (${idx})` : String(idx);
}

function fillSelect(sel, options) {
  sel.replaceChildren(...options.map(([v, t]) => el("option", {value: String(v), text: t})));
}

function setupControls() {
  const m = S.meta;
  document.documentElement.style.setProperty("--t", m.thumb + "px");
  rowH = m.thumb + ROW_PAD;
  $("title").textContent = "jaxviz run explorer · " + m.runs.map((r) => r.label).join(" vs ");
  document.title = $("title").textContent;
  $("summary").replaceChildren(...m.runs.map(runSummary),
    el("p", {cls: "note", text: `${m.rows} images · report built ${m.built} in ${m.build_seconds} s (${m.pages_drawn} pages drawn)`}));
  const classes = m.classes.map((c, i) => [i, className(i)]).sort((a, b) => a[1].localeCompare(b[1]));
  fillSelect($("cls"), [["", "any"], ...classes]);
  fillSelect($("pred"), [["", "any"], ...classes]);
  fillSelect($("target"), [["", "any"], ...m.targets.map((t, i) => [i, t === "null" ? "top class" : t])]);
  $("target-box").hidden = m.targets.length < 2;
  const metricName = (k) => { const [metric, c] = k.split("|"); return `${metric} · ${colTitle(colById(c))}`; };
  fillSelect($("metric"), [["", "(none)"], ...m.metrics.map((k) => [k, metricName(k)])]);
  $("metric-box").hidden = !m.metrics.length;
  fillSelect($("sort"), [["", "run order"], ["name", "file name"], ["-prob", "probability ↓"], ["prob", "probability ↑"],
    ...m.metrics.flatMap((k) => [["-" + k, metricName(k) + " ↓"], [k, metricName(k) + " ↑"]])]);
  const box = $("columns");
  box.append(el("span", {cls: "note", text: "columns:"}));
  for (const c of m.columns) {
    const cb = el("input", {type: "checkbox", "data-col": c.id});
    cb.checked = true;
    box.append(el("label", {}, cb, " " + colTitle(c)));
  }
  const state = new URLSearchParams(location.hash.slice(1));
  for (const id of ["q", "cls", "pred", "status", "target", "pmin", "pmax", "metric", "mmin", "mmax", "sort"])
    if (state.has(id)) $(id).value = state.get(id);
  if (state.has("hide")) for (const id of state.get("hide").split(",")) {
    const cb = box.querySelector(`input[data-col="${CSS.escape(id)}"]`); if (cb) cb.checked = false;
  }
  $("toolbar").addEventListener("input", () => refresh(true));
  $("toolbar").addEventListener("submit", (e) => e.preventDefault());
}

const colById = (id) => S.meta.columns.find((c) => c.id === id);
const colTitle = (c) => c.method + (S.meta.runs.length > 1 ? " · " + S.meta.runs[c.run].label : "");
const shownCols = () => S.meta.columns.filter((c) => $("columns").querySelector(`input[data-col="${c.id}"]`).checked);

// ------------------------------------------------------------------ filter and sort
function num(id) { const v = $(id).value; return v === "" ? null : Number(v); }

function refresh(saveState) {
  const c = S.cols, q = $("q").value.trim().toLowerCase();
  const cls = $("cls").value, pred = $("pred").value, st = $("status").value, tg = $("target").value;
  const pmin = num("pmin"), pmax = num("pmax"), metric = $("metric").value, mmin = num("mmin"), mmax = num("mmax");
  const mv = metric ? c.metrics[metric] : null;
  const keep = [];
  for (let i = 0; i < S.n; i++) {
    if (q && !c.name[i].toLowerCase().includes(q)) continue;
    if (cls !== "" && c.cls[i] !== +cls) continue;
    if (pred !== "" && c.pred[i] !== +pred) continue;
    if (st !== "" && c.status[i] !== +st) continue;
    if (tg !== "" && c.target[i] !== +tg) continue;
    const p = c.prob[i];
    if ((pmin !== null || pmax !== null) && p == null) continue;
    if (pmin !== null && p < pmin) continue;
    if (pmax !== null && p > pmax) continue;
    if (mv && (mmin !== null || mmax !== null)) {
      const v = mv[i];
      if (v == null || (mmin !== null && v < mmin) || (mmax !== null && v > mmax)) continue;
    }
    keep.push(i);
  }
  const sort = $("sort").value;
  if (sort) {
    const desc = sort.startsWith("-"), key = desc ? sort.slice(1) : sort;
    const col = key === "name" ? c.name : key === "prob" ? c.prob : c.metrics[key] || [];
    const missing = desc ? -Infinity : Infinity;
    if (key === "name") keep.sort((a, b) => (col[a] < col[b] ? -1 : col[a] > col[b] ? 1 : a - b));
    else keep.sort((a, b) => {
      const x = col[a] ?? missing, y = col[b] ?? missing;
      return (desc ? y - x : x - y) || a - b;
    });
  }
  S.view = Int32Array.from(keep);
  $("count").textContent = `showing ${S.view.length} of ${S.n}` + (S.n < S.meta.rows ? ` (indexing ${S.meta.rows})` : "");
  if (saveState) {
    const state = new URLSearchParams();
    for (const id of ["q", "cls", "pred", "status", "target", "pmin", "pmax", "metric", "mmin", "mmax", "sort"])
      if ($(id).value !== "") state.set(id, $(id).value);
    const hidden = S.meta.columns.filter((x) => !shownCols().includes(x)).map((x) => x.id);
    if (hidden.length) state.set("hide", hidden.join(","));
    history.replaceState(null, "", "#" + state.toString());
    $("viewport").scrollTop = 0;
  }
  renderHead();
  layout();
}

// ------------------------------------------------------------------ grid (virtualized)
function spriteCell(colId, row, layer, side, detail) {
  const m = S.meta, p = Math.floor(row / m.rows_per_page), slot = row % m.rows_per_page;
  const d = el("div");
  if (detail && m.detail) {
    const j = Math.floor(slot / m.detail_rows);
    d.style.backgroundImage = `url("thumbs/${colId}/d${pad(p, 5)}-${j}.webp")`;
    d.style.backgroundSize = `${side}px auto`;
    d.style.backgroundPosition = `0 ${-(slot % m.detail_rows) * side}px`;
  } else {
    d.style.backgroundImage = `url("thumbs/${colId}/g${pad(p, 5)}.webp")`;
    d.style.backgroundSize = `${side}px auto`;
    d.style.backgroundPosition = `0 ${-slot * side}px`;
  }
  if (layer != null) d.style.opacity = String(layer);
  return d;
}

function mapOpacity(col, slider) {
  return col.opacity < 1 ? Number(slider.value) : 1;
}

function renderHead() {
  $("colhead").replaceChildren(el("div", {cls: "info", text: "image"}), el("div", {text: "input"}),
    ...shownCols().map((c) => el("div", {title: colTitle(c)}, c.method,
      S.meta.runs.length > 1 ? el("small", {text: S.meta.runs[c.run].label}) : null)));
}

function rowEl(pos) {
  const i = S.view[pos], c = S.cols, m = S.meta;
  const status = c.status[i];
  const info = el("div", {cls: "info"}, el("span", {cls: "name", title: c.name[i], text: c.name[i]}));
  if (c.cls[i] >= 0) {
    const pr = c.pred[i] >= 0 && c.pred[i] !== c.cls[i] ? ` · predicted ${className(c.pred[i])}` : "";
    info.append(el("span", {text: `${className(c.cls[i])} · p=${c.prob[i].toFixed(3)}${pr}`}));
  }
  info.append(" ", el("span", {cls: "badge s" + status, text: STATUS[status]}));
  if (c.reason[i] >= 0) info.append(el("span", {cls: "err", title: m.reasons[c.reason[i]], text: m.reasons[c.reason[i]]}));
  const row = el("div", {cls: "row" + (i === S.sel ? " sel" : ""), "data-row": String(i)}, info);
  const input = el("div", {cls: "cell"});
  if (status === 2) input.className = "cell none"; else input.append(spriteCell("in", i, null, m.thumb, false));
  row.append(input);
  for (const col of shownCols()) {
    const cell = el("div", {cls: "cell"});
    if (c.cells[i][m.columns.indexOf(col)] !== "1") cell.className = "cell none";
    else {
      if (col.opacity < 1) cell.append(spriteCell("in", i, null, m.thumb, false));
      cell.append(spriteCell(col.id, i, mapOpacity(col, $("opacity")), m.thumb, false));
    }
    row.append(cell);
  }
  return row;
}

function layout() {
  const vp = $("viewport"), sp = $("spacer"), n = S.view.length;
  const total = n * rowH, h = Math.min(total, MAX_SPACER);
  sp.style.height = h + "px";
  const viewH = vp.clientHeight, visible = Math.ceil(viewH / rowH) + 1;
  const frac = h > viewH ? vp.scrollTop / (h - viewH) : 0;
  const first = Math.max(0, Math.min(1, frac)) * Math.max(0, n - viewH / rowH);
  const start = Math.floor(first);
  const rows = [];
  for (let pos = start; pos < Math.min(n, start + visible + 1); pos++) {
    const r = rowEl(pos);
    r.style.top = (vp.scrollTop + (pos - first) * rowH) + "px";
    rows.push(r);
  }
  if (!rows.length) rows.push(el("p", {cls: "note", text: S.n ? "no image matches these filters" : "this run has no images yet"}));
  sp.replaceChildren(...rows);
}

// ------------------------------------------------------------------ detail view
function recordLink(run, record) {
  const parts = (path) => path.split("/").map(encodeURIComponent).join("/");
  const base = run.href.split("/").map(encodeURIComponent).join("/") + "/";
  if (record.store) return [el("a", {href: base + parts(record.store.chunk), text: "store chunk"}), ` row ${record.store.row}`];
  const links = [];
  for (const k of ["npy", "png"]) if (record.files && record.files[k]) {
    links.push(el("a", {href: base + parts(record.files[k]), text: "." + k}), " ");
  }
  return links;
}

function fmt(v) { return Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(3) : v.toFixed(4); }

async function openDetail(i) {
  S.detailRow = i; S.sel = i;
  const m = S.meta, c = S.cols, p = Math.floor(i / m.rows_per_page);
  const data = (await page(p)).rows[i % m.rows_per_page];
  if (S.detailRow !== i) return;
  $("d-title").textContent = c.name[i];
  const info = [STATUS[c.status[i]]];
  if (c.cls[i] >= 0) info.push(`class ${className(c.cls[i])}`, `p=${c.prob[i].toFixed(4)}`, `predicted ${className(c.pred[i])}`);
  if (data.missing_input) info.push("input image not readable now (moved or deleted?)");
  $("d-info").textContent = info.join(" · ");
  const side = m.detail || Math.max(192, m.thumb), slider = $("d-opacity");
  const body = [];
  m.runs.forEach((run, ri) => {
    const cols = m.columns.filter((col) => col.run === ri);
    const figs = el("div", {cls: "figs"});
    const big = (layers) => { const b = el("div", {cls: "big"}, ...layers); b.style.width = b.style.height = side + "px"; return b; };
    if (ri === 0) figs.append(el("figure", {}, big([spriteCell("in", i, null, side, true)]), el("figcaption", {text: "input"})));
    for (const col of cols) {
      const rec = data.records[col.id];
      if (!rec) { figs.append(el("figure", {}, big([]), el("figcaption", {text: col.method + ": no map"}))); continue; }
      const map = spriteCell(col.id, i, col.opacity < 1 ? Number(slider.value) : 1, side, true);
      map.dataset.map = "1";
      const cap = el("figcaption", {}, el("b", {text: col.method}));
      const range = data.ranges[col.id];
      if (range) cap.append(el("br"), `range [${fmt(range[0])}, ${fmt(range[1])}]`);
      if (rec.class_name != null) cap.append(el("br"), `class ${rec.class_name} · p=${rec.probability.toFixed(4)}`);
      for (const metric of m.metrics.filter((k) => k.endsWith("|" + col.id))) {
        const v = c.metrics[metric][i];
        if (v != null) cap.append(el("br"), `${metric.split("|")[0]} = ${fmt(v)}`);
      }
      cap.append(el("br"), ...recordLink(run, rec));
      cap.append(el("details", {}, el("summary", {text: "record"}), el("pre", {text: JSON.stringify(rec, null, 1)})));
      figs.append(el("figure", {}, big([spriteCell("in", i, null, side, true), map]), cap));
    }
    const section = el("section", {cls: "d-run"}, el("h3", {text: run.label}), figs);
    const errs = data.errors.filter(([r]) => r === ri);
    if (errs.length) section.append(el("div", {cls: "errors"}, ...errs.map(([, e]) =>
      el("div", {text: (e.method ? e.method + ": " : "") + e.error}))));
    body.push(section);
  });
  $("d-body").replaceChildren(...body);
  $("detail").hidden = false;
  layout();
}

function closeDetail() { $("detail").hidden = true; S.detailRow = -1; $("viewport").focus(); }

function step(delta) {
  const pos = S.view.indexOf(S.detailRow) + delta;
  if (pos >= 0 && pos < S.view.length) {
    openDetail(S.view[pos]);
    const vp = $("viewport"), h = parseFloat($("spacer").style.height), n = S.view.length;
    if (h < MAX_SPACER) vp.scrollTop = Math.max(0, pos * rowH - vp.clientHeight / 2);
    else vp.scrollTop = (pos / Math.max(1, n - 1)) * (h - vp.clientHeight);
  }
}

// ------------------------------------------------------------------ start
async function main() {
  try {
    await loadScript("data/meta.js");
    await loadScript("data/index-0000.js");
  } catch (e) {
    $("loading").textContent = e.message + ": open index.html from the folder `jaxviz report` wrote";
    return;
  }
  addShard(S.shards[0]); S.shards[0] = null;
  setupControls();
  refresh(false);
  performance.mark("jaxviz:grid");
  $("loading").textContent = S.n < S.meta.rows ? `indexed ${S.n} of ${S.meta.rows} images…` : "";
  const vp = $("viewport");
  let queued = false;
  vp.addEventListener("scroll", () => { if (!queued) { queued = true; requestAnimationFrame(() => { queued = false; layout(); }); } });
  window.addEventListener("resize", layout);
  $("spacer").addEventListener("click", (e) => { const r = e.target.closest(".row"); if (r) openDetail(+r.dataset.row); });
  $("opacity").addEventListener("input", layout);
  $("d-opacity").addEventListener("input", () => {
    for (const d of $("d-body").querySelectorAll("[data-map]")) d.style.opacity = $("d-opacity").value;
  });
  $("d-close").addEventListener("click", closeDetail);
  $("d-prev").addEventListener("click", () => step(-1));
  $("d-next").addEventListener("click", () => step(1));
  $("detail").addEventListener("click", (e) => { if (e.target === $("detail")) closeDetail(); });
  document.addEventListener("keydown", (e) => {
    if ($("detail").hidden) return;
    if (e.key === "Escape") closeDetail();
    else if (e.key === "ArrowLeft") step(-1);
    else if (e.key === "ArrowRight") step(1);
  });
  await loadIndex();
  performance.mark("jaxviz:indexed");
}
main();
