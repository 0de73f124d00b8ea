/* coinpulse dashboard. Community text is untrusted: every string from the API goes into the page through
   textContent or an attribute set by the DOM API, never through innerHTML. Links are kept only for http(s) URLs. */
"use strict";

(function () {
  const LWC = window.LightweightCharts;
  const COLORS = { up: "#26c281", down: "#f05a5a", vol: "rgba(90,110,150,0.45)", men: "#b084f5",
                   menUp: "rgba(38,194,129,0.75)", menDown: "rgba(240,90,90,0.75)", sent: "#f5b041",
                   grid: "#182033", text: "#8a94a7" };
  const LIMIT = { "1m": 1440, "5m": 864, "1h": 720 };
  const state = { market: null, tf: "1m", step: 60, bars: [], mentions: new Map(), overview: null,
                  lastVersion: null, loading: false, live: false };
  window.coinpulse = state; // read by the end-to-end test

  // ---- small DOM helpers (text only) ------------------------------------------------------------------------------
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  const $ = (id) => document.getElementById(id);
  const compact = new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 2 });
  function price(v) {
    if (v === null || v === undefined) return "—";
    const a = Math.abs(v);
    const d = a >= 1000 ? 0 : a >= 100 ? 1 : a >= 1 ? 2 : a >= 0.01 ? 4 : 6;
    return v.toLocaleString("en", { minimumFractionDigits: d, maximumFractionDigits: d });
  }
  function pct(v, digits) {
    if (v === null || v === undefined) return "—";
    return (v > 0 ? "+" : "") + (v * 100).toFixed(digits === undefined ? 2 : digits) + "%";
  }
  function sign(v) { return v > 0 ? "up" : v < 0 ? "down" : ""; }
  function age(s) {
    if (s === null || s === undefined) return "no data";
    if (s < 1) return "now"; // clocks of other hosts may run slightly ahead
    if (s < 90) return Math.round(s) + " s";
    if (s < 5400) return Math.round(s / 60) + " min";
    if (s < 172800) return (s / 3600).toFixed(1) + " h";
    return Math.round(s / 86400) + " d";
  }
  function ago(s) { const a = age(s); return a === "now" || a === "no data" ? a : a + " ago"; }
  async function getJSON(url) {
    const r = await fetch(url, { cache: "no-store" });
    if (!r.ok) {
      let msg = url.split("?")[0] + " -> " + r.status;
      try { const b = await r.json(); if (b.error) msg = b.error; } catch (e) { /* not JSON */ }
      throw new Error(msg);
    }
    return r.json();
  }

  // ---- chart ---------------------------------------------------------------------------------------------------------
  const chart = LWC.createChart($("chart"), {
    autoSize: true,
    layout: { background: { type: "solid", color: "transparent" }, textColor: COLORS.text, fontSize: 11,
              panes: { separatorColor: "#222c3f", separatorHoverColor: "#2d3b57" } },
    grid: { vertLines: { color: COLORS.grid }, horzLines: { color: COLORS.grid } },
    rightPriceScale: { borderColor: "#222c3f" },
    leftPriceScale: { borderColor: "#222c3f" },
    timeScale: { borderColor: "#222c3f", timeVisible: true, secondsVisible: false, rightOffset: 4 },
    crosshair: { mode: LWC.CrosshairMode.Normal },
  });
  const candles = chart.addSeries(LWC.CandlestickSeries, {
    upColor: COLORS.up, downColor: COLORS.down, borderVisible: false,
    wickUpColor: COLORS.up, wickDownColor: COLORS.down,
  }, 0);
  const volume = chart.addSeries(LWC.HistogramSeries, {
    priceScaleId: "vol", priceFormat: { type: "volume" }, lastValueVisible: false, priceLineVisible: false,
  }, 0);
  volume.priceScale().applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
  candles.priceScale().applyOptions({ scaleMargins: { top: 0.06, bottom: 0.22 } });
  const mentions = chart.addSeries(LWC.HistogramSeries, {
    priceFormat: { type: "volume" }, color: COLORS.men, lastValueVisible: false, priceLineVisible: false,
  }, 1);
  const sentiment = chart.addSeries(LWC.LineSeries, {
    priceScaleId: "left", color: COLORS.sent, lineWidth: 2, lastValueVisible: false, priceLineVisible: false,
    lineType: LWC.LineType.Curved, crosshairMarkerVisible: false,
    autoscaleInfoProvider: () => ({ priceRange: { minValue: -1, maxValue: 1 } }),
  }, 1);
  chart.priceScale("left", 1).applyOptions({ visible: true, borderColor: "#222c3f" });
  const panes = chart.panes();
  if (panes[0] && panes[0].setStretchFactor) { panes[0].setStretchFactor(3); panes[1].setStretchFactor(1); }

  function barOf(c) { return { time: c.time, open: c.open, high: c.high, low: c.low, close: c.close }; }
  function volOf(c) {
    return { time: c.time, value: c.volume, color: c.close >= c.open ? "rgba(38,194,129,0.35)" : "rgba(240,90,90,0.35)" };
  }
  function menOf(m) {
    const color = m.sentiment > 0.15 ? COLORS.menUp : m.sentiment < -0.15 ? COLORS.menDown : COLORS.men;
    return { time: m.time, value: m.mentions, color: color };
  }
  // the sentiment line is a trend: an exponentially weighted mean of the buckets' sentiment, weighted by mentions
  function sentimentTrend(ms) {
    const alpha = 0.15;
    let num = 0, den = 0;
    return ms.map((m) => {
      num = (1 - alpha) * num + alpha * m.sentiment * m.mentions;
      den = (1 - alpha) * den + alpha * m.mentions;
      return { time: m.time, value: den > 0 ? num / den : 0 };
    });
  }
  function renderMentions() {
    const ms = Array.from(state.mentions.values()).sort((a, b) => a.time - b.time);
    mentions.setData(ms.map(menOf));
    sentiment.setData(sentimentTrend(ms));
  }
  function applyPriceFormat() {
    const last = state.bars.length ? state.bars[state.bars.length - 1].close : 1;
    const a = Math.abs(last);
    const d = a >= 1000 ? 0 : a >= 100 ? 1 : a >= 1 ? 2 : a >= 0.01 ? 4 : 6;
    candles.applyOptions({ priceFormat: { type: "custom", minMove: Math.pow(10, -d), formatter: price } });
  }
  function renderOhlc(c) {
    const o = $("ohlc");
    if (!c) { o.textContent = ""; return; }
    const t = new Date(c.time * 1000).toISOString().replace("T", " ").slice(0, 16) + " UTC";
    o.textContent = t + "   O " + price(c.open) + "  H " + price(c.high) + "  L " + price(c.low) + "  C " +
      price(c.close) + "  V " + compact.format(c.volume) + "  trades " + c.trade_count;
  }
  chart.subscribeCrosshairMove((p) => {
    if (!p || p.time === undefined) { renderOhlc(state.bars[state.bars.length - 1]); return; }
    const c = state.bars.find((b) => b.time === p.time);
    renderOhlc(c || state.bars[state.bars.length - 1]);
  });

  function rows(d) { // the series API sends arrays plus their field names (compact); make objects
    const obj = (fields) => (r) => { const o = {}; fields.forEach((f, i) => { o[f] = r[i]; }); return o; };
    d.candles = d.candles.map(obj(d.candle_fields));
    d.mentions = d.mentions.map(obj(d.mention_fields));
    return d;
  }
  async function loadSeries(full) {
    if (!state.market) return;
    const m = state.market, tf = state.tf;
    let url = "/api/series?market=" + encodeURIComponent(m) + "&tf=" + tf + "&limit=" + LIMIT[tf];
    const last = state.bars.length ? state.bars[state.bars.length - 1].time : null;
    if (!full && last !== null) url += "&since=" + (last - 3 * state.step); // revisions of the last bars too
    const data = rows(await getJSON(url));
    if (m !== state.market || tf !== state.tf) return; // the user switched meanwhile
    state.step = data.step;
    if (full || last === null) {
      state.bars = data.candles;
      state.mentions = new Map(data.mentions.map((x) => [x.time, x]));
      applyPriceFormat();
      candles.setData(state.bars.map(barOf));
      volume.setData(state.bars.map(volOf));
      renderMentions();
      chart.timeScale().fitContent();
      if (state.bars.length > 240) {
        const n = state.bars.length;
        chart.timeScale().setVisibleLogicalRange({ from: n - 240, to: n + 4 });
      }
    } else {
      const byTime = new Map(state.bars.map((b, i) => [b.time, i]));
      let rewrite = false;
      for (const c of data.candles) {
        if (byTime.has(c.time)) {
          const i = byTime.get(c.time);
          state.bars[i] = c;
          if (i !== state.bars.length - 1) rewrite = true;
        } else if (c.time > state.bars[state.bars.length - 1].time) {
          state.bars.push(c);
        } else {
          rewrite = true; // a late bar in the middle
          state.bars.push(c);
        }
      }
      if (rewrite) {
        state.bars.sort((a, b) => a.time - b.time);
        candles.setData(state.bars.map(barOf));
        volume.setData(state.bars.map(volOf));
      } else {
        for (const c of data.candles) { candles.update(barOf(c)); volume.update(volOf(c)); }
      }
      for (const x of data.mentions) state.mentions.set(x.time, x);
      renderMentions();
    }
    renderOhlc(state.bars[state.bars.length - 1]);
    renderHeader();
  }

  // ---- header, market strip --------------------------------------------------------------------------------------
  function marketInfo(m) {
    if (!state.overview) return null;
    return state.overview.all.get(m) || null;
  }
  function renderHeader() {
    $("market-title").textContent = state.market || "—";
    const last = state.bars.length ? state.bars[state.bars.length - 1].close : null;
    $("market-price").textContent = price(last);
    const info = marketInfo(state.market);
    const chg = $("market-change");
    chg.textContent = info ? pct(info.change) + " 24h" : "";
    chg.className = "chg " + (info ? sign(info.change) : "");
    document.title = state.market ? state.market + " " + price(last) + " · coinpulse" : "coinpulse";
  }
  function renderStrip() {
    const strip = $("market-strip");
    clear(strip);
    for (const m of state.overview.markets) {
      const info = marketInfo(m);
      const b = el("button", m === state.market ? "on" : "");
      b.dataset.market = m;
      b.appendChild(el("span", "", m.replace(/^KRW-/, "")));
      if (info) b.appendChild(el("span", "c " + sign(info.change), pct(info.change, 1)));
      b.addEventListener("click", () => selectMarket(m));
      strip.appendChild(b);
    }
  }

  // ---- KPI tables ----------------------------------------------------------------------------------------------
  function fillTable(id, rows, cells) {
    const body = $(id).querySelector("tbody");
    clear(body);
    if (!rows.length) {
      const tr = el("tr"); const td = el("td", "empty", "no data yet"); td.colSpan = 5; tr.appendChild(td);
      body.appendChild(tr); return;
    }
    for (const r of rows) {
      const tr = el("tr", r.market === state.market ? "sel" : "");
      tr.dataset.market = r.market;
      for (const c of cells(r)) tr.appendChild(c);
      tr.addEventListener("click", () => selectMarket(r.market));
      body.appendChild(tr);
    }
  }
  function barCell(text, frac) {
    const td = el("td", "r bar");
    const i = el("i"); i.style.width = Math.max(0, Math.min(100, frac * 100)).toFixed(1) + "%";
    td.appendChild(i); td.appendChild(el("span", "", text));
    return td;
  }
  function renderKpis() {
    const ov = state.overview;
    $("kpi-window").textContent = "last " + Math.round(ov.window_minutes / 60) + " h of data";
    const maxTv = ov.top_trade_value.length ? ov.top_trade_value[0].trade_value : 1;
    fillTable("top-table", ov.top_trade_value, (r) => [
      el("td", "rank", r.rank), el("td", "", r.market), barCell(compact.format(r.trade_value), r.trade_value / maxTv),
      el("td", "r", price(r.last)), el("td", "r " + sign(r.change), pct(r.change)),
    ]);
    const maxV = ov.volatility.length ? ov.volatility[0].volatility : 1;
    fillTable("vol-table", ov.volatility, (r) => [
      el("td", "rank", r.rank), el("td", "", r.market), barCell(pct(r.volatility, 3), r.volatility / maxV),
      el("td", "r", pct(r.range, 1)), el("td", "r " + sign(r.change), pct(r.change)),
    ]);
  }
  async function loadOverview() {
    const ov = await getJSON("/api/overview");
    ov.all = new Map();
    for (const r of ov.top_trade_value.concat(ov.volatility)) ov.all.set(r.market, r);
    state.overview = ov;
    if (!state.market && ov.markets.length) {
      const fromHash = decodeURIComponent(location.hash.slice(1));
      state.market = ov.markets.includes(fromHash) ? fromHash
        : (ov.top_trade_value[0] ? ov.top_trade_value[0].market : ov.markets[0]);
    }
    renderStrip(); renderKpis(); renderHeader();
  }

  // ---- posts ---------------------------------------------------------------------------------------------------
  function safeUrl(u) {
    try {
      const p = new URL(u, location.href);
      return (p.protocol === "http:" || p.protocol === "https:") ? p.href : null;
    } catch (e) { return null; }
  }
  async function loadPosts() {
    if (!state.market) return;
    const m = state.market;
    const data = await getJSON("/api/posts?market=" + encodeURIComponent(m) + "&limit=25");
    if (m !== state.market) return;
    $("posts-market").textContent = m;
    const ul = $("posts");
    clear(ul);
    if (!data.posts.length) { ul.appendChild(el("li", "empty", "no recent posts mention " + m)); return; }
    for (const p of data.posts) {
      const li = el("li");
      const t = el("div", "pt");
      const href = p.url ? safeUrl(p.url) : null;
      if (href) {
        const a = el("a", "", p.title); a.href = href; a.rel = "noopener noreferrer nofollow"; a.target = "_blank";
        t.appendChild(a);
      } else {
        t.textContent = p.title;
      }
      li.appendChild(t);
      const when = new Date(p.created_at * 1000).toISOString().replace("T", " ").slice(5, 16);
      li.appendChild(el("div", "pm", p.gallery + " · " + when + " UTC · " + p.views + " views · " + p.reply_count +
        " replies · +" + p.recommend));
      if (p.snippet) li.appendChild(el("div", "ps", p.snippet));
      ul.appendChild(li);
    }
  }

  // ---- health --------------------------------------------------------------------------------------------------
  function box(title, st) {
    const b = el("div", "hbox");
    const h = el("h3"); h.appendChild(el("i", "dot " + (st || ""))); h.appendChild(el("span", "", title));
    b.appendChild(h);
    return b;
  }
  function kv(b, k, v, cls) {
    const row = el("div", "kv"); row.appendChild(el("span", "", k)); row.appendChild(el("span", cls || "", v));
    b.appendChild(row);
  }
  function renderHealth(h) {
    const root = $("health");
    clear(root);
    $("health-at").textContent = "updated " + new Date(h.at * 1000).toLocaleTimeString();
    const db = h.database;
    const ingest = box("Ingest & candles", db.state);
    if (db.state === "down") { ingest.appendChild(el("div", "err", "database: " + db.error)); } else {
      kv(ingest, "newest trade", ago(db.ingest.newest_trade_age_s));
      kv(ingest, "newest 1m candle", ago(db.ingest.newest_candle_age_s));
      kv(ingest, "emit delay p50", db.ingest.emit_delay_p50_s === null ? "—" : db.ingest.emit_delay_p50_s + " s");
      kv(ingest, "newest mention minute", ago(db.mentions.newest_mention_age_s));
    }
    root.appendChild(ingest);
    const crawl = box("Crawl", db.state);
    if (db.state === "down") { crawl.appendChild(el("div", "err", "database down")); } else {
      kv(crawl, "last page fetched", ago(db.crawl.newest_fetch_age_s));
      kv(crawl, "newest post", ago(db.crawl.newest_post_age_s));
      kv(crawl, "posts (24 h)", db.crawl.posts_24h);
    }
    root.appendChild(crawl);
    const c = h.connect;
    const cb = box("Connectors", c.state);
    if (c.state === "down") cb.appendChild(el("div", "err", "Kafka Connect unreachable: " + c.error));
    else if (!c.connectors.length) cb.appendChild(el("div", "empty", "no connectors"));
    else {
      const ok = (x) => x.state === "RUNNING" && x.tasks.length > 0 && x.tasks.every((t) => t === "RUNNING");
      const bad = c.connectors.filter((x) => !ok(x));
      kv(cb, "running", (c.connectors.length - bad.length) + " / " + c.connectors.length, bad.length ? "down" : "up");
      // failing ones first, then the project's own; test connectors (other prefixes) only count
      const own = c.connectors.filter((x) => ok(x) && /^coinpulse-/.test(x.name));
      for (const x of bad.concat(own).slice(0, 7)) {
        const running = x.tasks.filter((t) => t === "RUNNING").length;
        kv(cb, x.name.replace(/^coinpulse-/, ""), x.state + " · tasks " + running + "/" + x.tasks.length,
          ok(x) ? "up" : "down");
      }
    }
    root.appendChild(cb);
    const f = h.prefect;
    const fb = box("Flow runs", f.state);
    if (f.state === "down") fb.appendChild(el("div", "err", "Prefect unreachable: " + f.error));
    else if (!f.runs.length) fb.appendChild(el("div", "empty", "no flow runs yet"));
    else for (const r of f.runs.slice(0, 6)) {
      const t = r.start ? new Date(r.start).toISOString().slice(5, 16).replace("T", " ") : "";
      kv(fb, r.flow + " · " + t, r.state_name || r.state || "?",
        r.state === "COMPLETED" ? "up" : (r.state === "FAILED" || r.state === "CRASHED") ? "down" : "");
    }
    root.appendChild(fb);
    const s = h.services;
    const sb = box("Services", s.state);
    if (s.state === "down") sb.appendChild(el("div", "err", s.error));
    else for (const x of s.services) kv(sb, x.name, x.state, x.state === "up" ? "up" : "down");
    root.appendChild(sb);
  }

  // ---- selection, live updates ------------------------------------------------------------------------------------
  async function selectMarket(m) {
    state.market = m;
    state.bars = [];
    history.replaceState(null, "", "#" + encodeURIComponent(m));
    renderStrip(); renderKpis(); renderHeader();
    await Promise.all([loadSeries(true), loadPosts()]);
  }
  for (const b of document.querySelectorAll("#tf-group button")) {
    b.addEventListener("click", async () => {
      for (const o of document.querySelectorAll("#tf-group button")) o.classList.toggle("on", o === b);
      state.tf = b.dataset.tf;
      state.bars = [];
      await loadSeries(true);
    });
  }
  function setStatus(text) { $("status-line").textContent = text; }
  async function refreshAll(full) {
    if (state.loading) return;
    state.loading = true;
    try {
      await loadOverview();
      await Promise.all([loadSeries(full), loadPosts()]);
      const a = state.overview.anchor;
      setStatus((state.live ? "live · " : "") + "data to " +
        (a ? new Date(a * 1000).toISOString().slice(0, 16).replace("T", " ") + " UTC" : "—"));
      document.body.dataset.ready = "1";
    } catch (e) {
      setStatus("error: " + e.message);
    } finally {
      state.loading = false;
    }
  }
  function connectStream() {
    const es = new EventSource("/api/stream");
    es.onopen = () => { state.live = true; $("live-dot").classList.add("live"); };
    es.onerror = () => { state.live = false; $("live-dot").classList.remove("live"); };
    es.addEventListener("version", (ev) => {
      const v = ev.data;
      if (v !== state.lastVersion) {
        const first = state.lastVersion === null;
        state.lastVersion = v;
        if (!first) refreshAll(false);
      }
    });
    es.addEventListener("health", (ev) => renderHealth(JSON.parse(ev.data)));
  }
  getJSON("/api/health").then(renderHealth).catch(() => {});
  refreshAll(true).then(connectStream);
  setInterval(() => { if (!state.live) refreshAll(false); }, 30000); // if the stream is down, poll
})();
