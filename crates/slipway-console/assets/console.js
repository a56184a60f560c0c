// slipway's console: what the server-rendered pages add in the browser. Charts (uPlot),
// live parts re-fetched from the server, artifact previews, and the buttons, which call the
// HTTP API itself (with the session cookie and the X-Slipway-Console header) so a click is
// judged by the same rules as the CLI. No framework, no build step.
"use strict";

(function () {
  const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

  function toast(text, bad) {
    const el = document.getElementById("toast");
    if (!el) return;
    el.textContent = text;
    el.className = bad ? "show bad" : "show";
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { el.className = ""; }, bad ? 9000 : 4000);
  }

  async function api(method, url, body) {
    const response = await fetch(url, {
      method,
      credentials: "same-origin",
      headers: { "X-Slipway-Console": "1", "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    let data = {};
    try { data = text ? JSON.parse(text) : {}; } catch (_) { data = { message: text }; }
    if (!response.ok) {
      throw new Error(data.message || ("HTTP " + response.status));
    }
    return data;
  }

  // Buttons: data-action (method), data-url, data-reason (optional|required),
  // data-confirm, data-done.
  function wireButtons(root) {
    root.querySelectorAll("button[data-action]").forEach((button) => {
      if (button.dataset.wired) return;
      button.dataset.wired = "1";
      button.addEventListener("click", async (event) => {
        event.preventDefault();
        if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
        let body = {};
        if (button.dataset.reason) {
          const reason = window.prompt(button.dataset.reason === "required"
            ? "Reason (recorded in the audit trail):" : "Comment (optional):", "");
          if (reason === null) return;
          if (button.dataset.reason === "required" && !reason.trim()) {
            toast("A reason is required.", true);
            return;
          }
          body = { reason: reason };
        }
        button.disabled = true;
        try {
          await api(button.dataset.action, button.dataset.url,
            button.dataset.action === "DELETE" ? undefined : body);
          toast(button.dataset.done || "Done");
          const live = button.closest("[data-live]");
          if (live) { await refresh(live); } else { setTimeout(() => window.location.reload(), 600); }
        } catch (error) {
          toast(error.message, true);
          button.disabled = false;
        }
      });
    });
  }

  // Live parts: the server renders the fragment again; swapped in place every data-every ms.
  async function refresh(element) {
    try {
      const response = await fetch(element.dataset.live, {
        credentials: "same-origin", headers: { "X-Slipway-Console": "1" },
      });
      if (response.redirected || !response.ok) return;
      const html = await response.text();
      if (html !== element.dataset.last) {
        element.dataset.last = html;
        element.innerHTML = html;
        wireButtons(element);
        element.dispatchEvent(new CustomEvent("slipway:updated", { bubbles: true }));
      }
    } catch (_) { /* the next tick tries again */ }
  }

  function wireLive() {
    document.querySelectorAll("[data-live]").forEach((element) => {
      const every = Number(element.dataset.every || 2000);
      setInterval(() => { if (!document.hidden) refresh(element); }, every);
    });
    document.querySelectorAll("[data-live-reload]").forEach((element) => {
      const every = Number(element.dataset.liveReload || 5000);
      setInterval(async () => {
        if (document.hidden) return;
        try {
          const response = await fetch(window.location.href, { credentials: "same-origin" });
          if (!response.ok) return;
          const doc = new DOMParser().parseFromString(await response.text(), "text/html");
          const fresh = doc.getElementById(element.id);
          if (fresh && fresh.innerHTML !== element.innerHTML) element.innerHTML = fresh.innerHTML;
        } catch (_) { /* next tick */ }
      }, every);
    });
  }

  // ---- charts ----

  function chartWidth(element) {
    return Math.max(320, Math.min(1100, element.clientWidth || 900));
  }

  function readJson(id) {
    const el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  function makeChart(element, title, xIsTime, seriesNames, data, options) {
    element.innerHTML = "";
    const opts = Object.assign({
      title: title,
      width: chartWidth(element),
      height: 300,
      scales: { x: { time: xIsTime }, y: { distr: options && options.log ? 3 : 1 } },
      series: [{ label: xIsTime ? "time" : "step" }].concat(seriesNames.map((name, i) => ({
        label: name, stroke: PALETTE[i % PALETTE.length], width: 1.5, spanGaps: true,
        points: { show: data[0].length < 60 },
      }))),
      axes: [{}, { size: 60 }],
    }, (options && options.extra) || {});
    const chart = new uPlot(opts, data, element);
    element.dataset.drawn = String(data[0].length);
    element.chart = chart;
    return chart;
  }

  // Aligns several series on one x axis (the union of their xs, gaps as null).
  function align(series) {
    const xs = Array.from(new Set(series.flatMap((s) => s.x))).sort((a, b) => a - b);
    const index = new Map(xs.map((x, i) => [x, i]));
    const columns = series.map((s) => {
      const column = new Array(xs.length).fill(null);
      s.x.forEach((x, i) => { column[index.get(x)] = s.y[i]; });
      return column;
    });
    return [xs].concat(columns);
  }

  function controlsFor(id) {
    return document.querySelector('.chart-controls[data-for="' + id + '"]');
  }

  async function historyChart(element) {
    const controls = controlsFor(element.id);
    const run = element.dataset.runs;
    const history = {};
    // Histories are fetched as their metrics are ticked (a run may log hundreds of keys).
    const load = async (keys) => {
      const missing = keys.filter((k) => !(k in history));
      for (let i = 0; i < missing.length; i += 20) {
        const batch = missing.slice(i, i + 20);
        const answer = await (await fetch("/runs/" + encodeURIComponent(run) +
          "/metrics.json?keys=" + encodeURIComponent(batch.join(",")),
          { credentials: "same-origin" })).json();
        Object.assign(history, answer);
      }
    };
    const draw = async () => {
      const xMode = controls.querySelector("[data-x]").value;
      const log = controls.querySelector("[data-log]").checked;
      const keys = Array.from(controls.querySelectorAll("[data-key]:checked")).map((c) => c.dataset.key);
      if (!keys.length) { element.innerHTML = '<p class="muted">Tick a metric.</p>'; return; }
      await load(keys);
      const series = keys.filter((k) => history[k]).map((k) => ({
        x: xMode === "time" ? history[k].time.map((t) => t / 1000) : history[k].step,
        y: history[k].value,
      }));
      makeChart(element, keys.join(", "), xMode === "time", keys, align(series), { log });
    };
    controls.addEventListener("change", () => { draw(); });
    await draw();
  }

  async function compareChart(element) {
    const controls = controlsFor(element.id);
    const runs = element.dataset.runs.split(",");
    const names = Array.from(document.querySelectorAll("a.chip")).map((a) => a.textContent);
    if (!element.dataset.keys) { element.innerHTML = '<p class="muted">No metrics to compare.</p>'; return; }
    // One metric's history per run, fetched when the metric is chosen.
    const loaded = {};
    const load = async (key) => {
      if (!loaded[key]) {
        loaded[key] = await Promise.all(runs.map(async (run) =>
          (await (await fetch("/runs/" + encodeURIComponent(run) + "/metrics.json?keys=" +
            encodeURIComponent(key), { credentials: "same-origin" })).json())[key]));
      }
      return loaded[key];
    };
    const draw = async () => {
      const key = controls.querySelector("[data-metric]").value;
      const xMode = controls.querySelector("[data-x]").value;
      const log = controls.querySelector("[data-log]").checked;
      const histories = await load(key);
      const series = histories.map((h) => h ? {
        x: xMode === "time" ? h.time.map((t) => t / 1000) : h.step, y: h.value,
      } : { x: [], y: [] });
      makeChart(element, key, xMode === "time", names.length === runs.length ? names : runs,
        align(series), { log });
    };
    controls.addEventListener("change", () => { draw(); });
    await draw();
  }

  function driftChart(element) {
    const data = readJson(element.dataset.source);
    if (!data || !data.time.length) {
      element.innerHTML = '<p class="muted">No window has closed yet.</p>';
      return;
    }
    makeChart(element, "drift score per feature", true, data.series.map((s) => s.name),
      [data.time].concat(data.series.map((s) => s.values)));
  }

  // Numeric leaves of each performance window, one series per path (realized.accuracy, ...).
  function performanceChart(element) {
    const windows = readJson(element.dataset.source) || [];
    const paths = new Set();
    const flat = windows.map((w) => {
      const out = {};
      const walk = (value, path) => {
        if (typeof value === "number" && !/(_ms|rows|count)$/.test(path)) {
          out[path] = value; paths.add(path);
        } else if (value && typeof value === "object" && !Array.isArray(value)) {
          Object.entries(value).forEach(([k, v]) => walk(v, path ? path + "." + k : k));
        }
      };
      walk(w, "");
      return out;
    });
    if (!windows.length || !paths.size) {
      element.innerHTML = '<p class="muted">No labelled or scored window yet.</p>';
      return;
    }
    const names = Array.from(paths).sort();
    const xs = windows.map((w) => (w.end_ms || 0) / 1000);
    makeChart(element, "performance per window", true, names,
      [xs].concat(names.map((n) => flat.map((f) => (n in f ? f[n] : null)))));
  }

  function deliveryChart(element) {
    const data = readJson(element.dataset.source);
    if (!data) return;
    const bars = uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.6, 40] }) : undefined;
    makeChart(element, "", true, ["deploys", "failed changes"], [data.time, data.deploys, data.failed], {
      extra: {
        series: [{ label: "day" },
          { label: "deploys", stroke: PALETTE[0], fill: "rgba(31,119,180,0.35)", paths: bars, points: { show: false } },
          { label: "failed changes", stroke: PALETTE[1], fill: "rgba(214,39,40,0.45)", paths: bars, points: { show: false } }],
      },
    });
  }

  // Parallel coordinates on a canvas: one axis per differing param and metric, one line per
  // run; numbers scaled to their range, other values spread as categories.
  function parallel(canvas) {
    const data = readJson("parallel-data");
    if (!data || !data.axes.length) return;
    const ctx = canvas.getContext("2d");
    const width = canvas.width = Math.max(600, Math.min(1100, canvas.parentElement.clientWidth));
    const height = canvas.height;
    const pad = 40;
    const axes = data.axes.map((axis) => {
      const numeric = axis.values.every((v) => v === null || v === "" || !isNaN(Number(v)));
      if (numeric) {
        const nums = axis.values.filter((v) => v !== null && v !== "").map(Number);
        const lo = Math.min(...nums), hi = Math.max(...nums);
        return { name: axis.name, pos: (v) => (v === null || v === "") ? null
          : (hi === lo ? 0.5 : (Number(v) - lo) / (hi - lo)), lo, hi };
      }
      const cats = Array.from(new Set(axis.values.filter((v) => v !== null)));
      return { name: axis.name, pos: (v) => v === null ? null
        : (cats.length === 1 ? 0.5 : cats.indexOf(v) / (cats.length - 1)), cats };
    });
    const x = (i) => pad + i * (width - 2 * pad) / Math.max(1, axes.length - 1);
    const y = (p) => height - pad - p * (height - 2 * pad);
    ctx.clearRect(0, 0, width, height);
    ctx.font = "11px system-ui, sans-serif";
    ctx.strokeStyle = "#999"; ctx.fillStyle = "#333";
    axes.forEach((axis, i) => {
      ctx.beginPath(); ctx.moveTo(x(i), y(0)); ctx.lineTo(x(i), y(1)); ctx.stroke();
      ctx.textAlign = "center";
      ctx.fillText(axis.name, x(i), pad - 18);
      if (axis.cats) {
        axis.cats.forEach((c) => ctx.fillText(String(c), x(i), y(axis.pos(c)) - 3));
      } else {
        ctx.fillText(String(+axis.hi.toPrecision(4)), x(i), pad - 5);
        ctx.fillText(String(+axis.lo.toPrecision(4)), x(i), height - pad + 14);
      }
    });
    data.runs.forEach((run, r) => {
      ctx.strokeStyle = PALETTE[r % PALETTE.length]; ctx.lineWidth = 2;
      ctx.beginPath();
      let started = false;
      axes.forEach((axis, i) => {
        const p = axis.pos(data.axes[i].values[r]);
        if (p === null) { started = false; return; }
        if (!started) { ctx.moveTo(x(i), y(p)); started = true; } else { ctx.lineTo(x(i), y(p)); }
      });
      ctx.stroke();
    });
    canvas.dataset.drawn = String(data.runs.length);
  }

  // ---- runs table and previews ----

  function wireCompare() {
    const form = document.querySelector("form[data-compare]");
    if (!form) return;
    const button = form.querySelector("#compare");
    const count = form.querySelector("#selected-count");
    const update = () => {
      const ids = Array.from(form.querySelectorAll("tbody input[type=checkbox]:checked")).map((c) => c.value);
      form.querySelector("input[name=runs]").value = ids.join(",");
      button.disabled = ids.length < 2;
      count.textContent = ids.length ? ids.length + " selected" : "Tick two or more runs.";
    };
    form.addEventListener("change", update);
    update();
  }

  function wirePreviews() {
    const panel = document.getElementById("artifact-preview");
    if (!panel) return;
    document.querySelectorAll("a[data-preview]").forEach((link) => {
      link.addEventListener("click", async (event) => {
        event.preventDefault();
        const url = link.dataset.preview;
        const name = link.dataset.name.toLowerCase();
        panel.innerHTML = "";
        const heading = document.createElement("h3");
        heading.textContent = link.dataset.name;
        panel.appendChild(heading);
        if (/\.(png|jpe?g|gif)$/.test(name)) {
          const img = document.createElement("img");
          img.src = url; img.alt = link.dataset.name;
          panel.appendChild(img);
          return;
        }
        const response = await fetch(url, { credentials: "same-origin" });
        const text = await response.text();
        if (!response.ok) { panel.append("Could not read it: " + text); return; }
        if (/\.(csv|tsv)$/.test(name)) {
          const sep = name.endsWith(".tsv") ? "\t" : ",";
          const table = document.createElement("table");
          table.className = "grid compact";
          text.split(/\r?\n/).filter((l) => l).slice(0, 200).forEach((line, i) => {
            const row = table.insertRow();
            line.split(sep).forEach((cell) => {
              const c = document.createElement(i === 0 ? "th" : "td");
              c.textContent = cell; row.appendChild(c);
            });
          });
          panel.appendChild(table);
          return;
        }
        const pre = document.createElement("pre");
        pre.textContent = text.length > 200000 ? text.slice(0, 200000) + "\n…" : text;
        panel.appendChild(pre);
      });
    });
  }

  function wireParamFilter() {
    const box = document.getElementById("only-differences");
    const table = document.getElementById("param-diff");
    if (!box || !table) return;
    const apply = () => table.classList.toggle("only-differences", box.checked);
    box.addEventListener("change", apply);
    apply();
  }

  function drawCharts() {
    const kinds = { history: historyChart, compare: compareChart, drift: driftChart,
      performance: performanceChart, delivery: deliveryChart };
    document.querySelectorAll("[data-chart]").forEach((element) => {
      const draw = kinds[element.dataset.chart];
      if (!draw) return;
      Promise.resolve(draw(element)).catch((error) => {
        element.innerHTML = "";
        const p = document.createElement("p");
        p.className = "error"; p.textContent = "The chart could not be drawn: " + error.message;
        element.appendChild(p);
      });
    });
    document.querySelectorAll("canvas[data-parallel]").forEach(parallel);
  }

  document.addEventListener("DOMContentLoaded", () => {
    wireButtons(document);
    wireLive();
    wireCompare();
    wirePreviews();
    wireParamFilter();
    if (window.uPlot) drawCharts();
  });
})();
