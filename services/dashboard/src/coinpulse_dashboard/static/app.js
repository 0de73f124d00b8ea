/* coinpulse dashboard. Community text is untrusted: every string from the API goes into the page through
   textContent or an attribute set by the DOM API, never through innerHTML. Links are kept only for http(s) URLs. */
"use strict";

(function () {
  const LWC = window.LightweightCharts;
  const COLORS = { up: "#26c281", down: "#f05a5a", vol: "rgba(90,110,150,0.45)", men: "#b084f5",
                   menUp: "rgba(38,194,129,0.75)", menDown: "rgba(240,90,90,0.75)", sent: "#f5b041",
                   grid: "#182033", text: "#8a94a7", spike: "#ff5cd6", rcMen: "#c39bff", rcSent: "#f5b041",
                   lagSig: "#4fb3ff", lagNs: "#3a4763" };
  const LIMIT = { "1m": 1440, "5m": 864, "1h": 720 };
  const state = { market: null, tf: "1m", step: 60, bars: [], mentions: new Map(), overview: null,
                  lastVersion: null, loading: false, live: false,
                  metric: "mentions_absret", link: null, ranking: null, linkAsOf: null,
                  rolling: new Map(), spikes: new Map(), spikeMarkers: 0 };
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
  // the third pane: the marts' rolling 60-minute correlations, −1…+1, on the same time axis
  const corrRange = () => ({ priceRange: { minValue: -1, maxValue: 1 } });
  const corrFormat = { type: "custom", minMove: 0.01, formatter: (v) => (v > 0 ? "+" : "") + v.toFixed(2) };
  const rollMen = chart.addSeries(LWC.LineSeries, {
    color: COLORS.rcMen, lineWidth: 2, lastValueVisible: true, priceLineVisible: false,
    crosshairMarkerVisible: false, autoscaleInfoProvider: corrRange, priceFormat: corrFormat,
  }, 2);
  const rollSent = chart.addSeries(LWC.LineSeries, {
    color: COLORS.rcSent, lineWidth: 1, lineStyle: LWC.LineStyle.Solid, lastValueVisible: true,
    priceLineVisible: false, crosshairMarkerVisible: false, autoscaleInfoProvider: corrRange, priceFormat: corrFormat,
  }, 2);
  rollMen.createPriceLine({ price: 0, color: "#34415c", lineWidth: 1, lineStyle: LWC.LineStyle.Dashed,
                            axisLabelVisible: false });
  // mention spikes (marts.mention_spikes) as markers above the candles
  const spikeMarkers = LWC.createSeriesMarkers(candles, []);
  const panes = chart.panes();
  if (panes[0] && panes[0].setStretchFactor) {
    panes[0].setStretchFactor(3); panes[1].setStretchFactor(1); if (panes[2]) panes[2].setStretchFactor(1);
  }

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

  // ---- the link on the chart: rolling correlations (third pane) and spike markers -----------------------------------
  function renderLinkSeries() {
    const rs = Array.from(state.rolling.values()).sort((a, b) => a.time - b.time);
    const line = (key) => rs.map((r) => (r[key] === null ? { time: r.time } : { time: r.time, value: r[key] }));
    rollMen.setData(line("corr_mentions_absret"));
    rollSent.setData(line("corr_sentiment_ret"));
    const defined = rs.some((r) => r.corr_mentions_absret !== null || r.corr_sentiment_ret !== null);
    $("roll-note").textContent = defined ? "" : "rolling correlation: not enough data yet";
    // a marker needs a candle to sit on: spikes of quiet minutes (no trade) go to the next candle's bucket
    const times = state.bars.map((b) => b.time);
    const ms = [];
    const sp = Array.from(state.spikes.values()).sort((a, b) => a.time - b.time);
    let j = 0;
    for (const x of sp) {
      while (j < times.length && times[j] < x.time) j++;
      if (j >= times.length) break;
      const t = times[j];
      if (ms.length && ms[ms.length - 1].time === t) continue;
      ms.push({ time: t, position: "aboveBar", shape: "arrowDown", color: COLORS.spike, size: 1.2,
                text: x.mentions + "", id: "spike-" + x.time });
    }
    spikeMarkers.setMarkers(ms);
    state.spikeMarkers = ms.length;
    $("spike-count").textContent = String(ms.length);
  }
  async function loadLinkSeries(full) {
    if (!state.market || !state.bars.length) return;
    const m = state.market, tf = state.tf;
    const lastRoll = full ? null : Math.max(0, ...state.rolling.keys());
    const since = lastRoll ? lastRoll - 3 * state.step : state.bars[0].time;
    const data = await getJSON("/api/link/series?market=" + encodeURIComponent(m) + "&tf=" + tf + "&since=" +
      since + "&limit=" + (LIMIT[tf] + 8));
    if (m !== state.market || tf !== state.tf) return;
    if (full || !lastRoll) { state.rolling = new Map(); state.spikes = new Map(); }
    for (const r of data.rolling) state.rolling.set(r.time, r);
    for (const x of data.spikes) state.spikes.set(x.time, x);
    renderLinkSeries();
  }

  // ---- the lead–lag panel --------------------------------------------------------------------------------------
  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const k in attrs) e.setAttribute(k, String(attrs[k]));
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  const signed = (v, d) => (v === null || v === undefined) ? "—" : (v > 0 ? "+" : v < 0 ? "−" : "") +
    Math.abs(v).toFixed(d === undefined ? 2 : d);
  function pFmt(p) {
    if (p === null || p === undefined) return "—";
    if (p < 0.001) return "<0.001";
    return String(Number(Math.min(p, 1).toPrecision(2))); // as the API's p_text: 0.003, 0.049, 0.5, 1
  }
  function hhmm(t) { return t ? new Date(t * 1000).toISOString().slice(11, 16) : "—"; }
  function renderLagChart(d) {
    const root = $("lag-chart");
    clear(root);
    const lags = d.lags.filter((x) => x.corr !== null);
    if (!lags.length) {
      const msg = d.state === "no_data" ? "the lead–lag mart has no rows for " + d.market + " yet"
        : "too few minutes for a correlation at any lag yet";
      root.appendChild(el("div", "empty placeholder", msg));
      return;
    }
    const W = Math.max(320, root.clientWidth || 640), H = Math.max(200, root.clientHeight || 220);
    const pad = { l: 44, r: 12, t: 22, b: 26 };
    const lo = Math.min(...d.lags.map((x) => x.lag)), hi = Math.max(...d.lags.map((x) => x.lag));
    // the y range covers the bars and zero, in steps of 0.1 (at least ±0.1 around zero)
    const up = (v) => Math.ceil(v * 10 - 1e-9) / 10;
    const ytop = Math.max(0.1, up(Math.max(0, ...lags.map((x) => x.corr)) * 1.12));
    const ybot = -Math.max(0.1, up(Math.max(0, ...lags.map((x) => -x.corr)) * 1.12));
    const step = (W - pad.l - pad.r) / (hi - lo + 1);
    const xOf = (k) => pad.l + (k - lo + 0.5) * step;
    const yOf = (v) => pad.t + (ytop - v) / (ytop - ybot) * (H - pad.t - pad.b);
    const s = svg("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img",
                          "aria-label": "correlation per lag" });
    // halves: market first (lag < 0), community first (lag > 0)
    const x0 = xOf(0);
    s.appendChild(svg("rect", { x: pad.l, y: pad.t, width: x0 - step / 2 - pad.l, height: H - pad.t - pad.b,
                               class: "half follows" }));
    s.appendChild(svg("rect", { x: x0 + step / 2, y: pad.t, width: W - pad.r - x0 - step / 2,
                               height: H - pad.t - pad.b, class: "half leads" }));
    s.appendChild(svg("text", { x: pad.l + 6, y: pad.t - 8, class: "cap" }, "← market moves first"));
    s.appendChild(svg("text", { x: W - pad.r - 6, y: pad.t - 8, class: "cap end" }, "community moves first →"));
    const ticks = [];
    const tick = (ytop - ybot) > 0.45 ? 0.2 : 0.1;
    for (let v = Math.ceil(ybot / tick - 1e-9) * tick; v <= ytop + 1e-9; v += tick) ticks.push(Math.round(v * 100) / 100);
    for (const v of ticks) {
      s.appendChild(svg("line", { x1: pad.l, x2: W - pad.r, y1: yOf(v), y2: yOf(v), class: v === 0 ? "zero" : "gl" }));
      s.appendChild(svg("text", { x: pad.l - 6, y: yOf(v) + 3.5, class: "yl" }, signed(v, 2)));
    }
    const best = d.summary ? d.summary.best_lag : null;
    for (const x of d.lags) {
      const tx = xOf(x.lag);
      if (x.lag % 5 === 0 || x.lag === best) {
        s.appendChild(svg("text", { x: tx, y: H - pad.b + 15, class: "xl" + (x.lag === best ? " best" : "") },
          (x.lag > 0 ? "+" : "") + x.lag));
      }
      if (x.corr === null) continue;
      const y = yOf(Math.max(x.corr, 0)), h = Math.max(1, Math.abs(yOf(x.corr) - yOf(0)));
      const r = svg("rect", { x: tx - step * 0.36, y: y, width: step * 0.72, height: h, rx: 1.5,
                              class: "lagbar " + (x.significant ? "sig" : "ns") + (x.lag === best ? " best" : "") });
      r.dataset.lag = x.lag;
      r.appendChild(svg("title", {}, "lag " + (x.lag > 0 ? "+" : "") + x.lag + " min: r = " + signed(x.corr, 3) +
        ", p = " + pFmt(x.p_value) + ", n = " + x.n + (x.significant ? " (significant)" : "")));
      s.appendChild(r);
      if (x.significant) {
        const my = x.corr >= 0 ? yOf(x.corr) - 5 : yOf(x.corr) + 13;
        const star = svg("text", { x: tx, y: my, class: "star" }, "★");
        star.dataset.lag = x.lag;
        s.appendChild(star);
      }
    }
    s.appendChild(svg("text", { x: (pad.l + W - pad.r) / 2, y: pad.t - 8, class: "cap mid" },
      "correlation at each lag (minutes)"));
    root.appendChild(s);
  }
  function renderLink(d) {
    state.link = d;
    $("link-market").textContent = d.market;
    const v = $("link-verdict");
    v.className = "verdict " + d.verdict + (d.state === "no_data" ? " no-data" : "");
    $("link-sentence").textContent = d.sentence;
    $("link-p").textContent = d.p_text;
    const sm = d.summary;
    const detail = [];
    if (d.state === "no_data" && d.reason) detail.push(d.reason);
    if (sm && sm.best_corr !== null) {
      detail.push("best r = " + signed(sm.best_corr) + " at " + (sm.best_lag > 0 ? "+" : "") + sm.best_lag + " min");
    }
    if (sm && sm.n !== null) detail.push("n = " + sm.n.toLocaleString("en") + " minutes");
    if (d.lags.length) detail.push(d.lags.filter((x) => x.significant).length + " of " + d.lags.length +
                                   " lags significant");
    if (sm && sm.window_start) detail.push("window " + hhmm(sm.window_start) + "–" + hhmm(sm.window_end) + " UTC");
    detail.push(d.metric_label);
    if (d.as_of) detail.push("updated " + hhmm(d.as_of) + " UTC");
    $("link-detail").textContent = detail.join(" · ");
    renderLagChart(d);
  }
  async function loadLink() {
    if (!state.market) return;
    const m = state.market, metric = state.metric;
    const d = await getJSON("/api/link?market=" + encodeURIComponent(m) + "&metric=" + metric);
    if (m !== state.market || metric !== state.metric) return;
    renderLink(d);
  }
  const SHORT = { community_leads: (l) => "leads " + Math.abs(l) + " min",
                  community_follows: (l) => "follows " + Math.abs(l) + " min", together: () => "together",
                  no_link: () => "no link", insufficient_data: () => "too little data" };
  async function loadRanking() {
    const metric = state.metric;
    const d = await getJSON("/api/link/ranking?metric=" + metric);
    if (metric !== state.metric) return;
    state.ranking = d;
    renderRanking();
  }
  function renderRanking() {
    const d = state.ranking;
    if (!d) return;
    $("rank-metric").textContent = d.metric_label;
    $("rank-metric").title = "significant links first, then by |r| at the best lag";
    fillTable("link-table", d.markets, (r) => {
      const short = SHORT[r.verdict] ? SHORT[r.verdict](r.best_lag) : r.sentence;
      const v = el("td", "verdict-cell " + r.verdict); v.title = r.sentence;
      v.appendChild(el("i", "vdot " + (r.significant ? "sig" : "ns")));
      v.appendChild(el("span", "vtxt", short));
      return [el("td", "rank", r.rank), el("td", "", r.market), v,
              el("td", "r", r.abs_corr === null ? "—" : r.abs_corr.toFixed(2)),
              el("td", "r" + (r.significant ? " sigp" : ""), r.p_adjusted === null ? "—"
                : r.p_adjusted < 0.001 ? "<0.001" : Math.min(r.p_adjusted, 1).toFixed(3))];
    });
  }
  for (const b of document.querySelectorAll("#metric-group button")) {
    b.addEventListener("click", async () => {
      for (const o of document.querySelectorAll("#metric-group button")) o.classList.toggle("on", o === b);
      state.metric = b.dataset.metric;
      await Promise.all([loadLink(), loadRanking()]);
    });
  }
  if (window.ResizeObserver) {
    let w = 0, h = 0;
    new ResizeObserver(() => {
      const nw = $("lag-chart").clientWidth, nh = $("lag-chart").clientHeight;
      if (state.link && (Math.abs(nw - w) > 4 || Math.abs(nh - h) > 4)) { w = nw; h = nh; renderLagChart(state.link); }
    }).observe($("lag-chart"));
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
      const tr = el("tr", "none"); const td = el("td", "empty", "no data yet"); td.colSpan = 5; tr.appendChild(td);
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
  function hashMarket() { // the coin in the URL's #fragment; a malformed one (bad %-escape) is no coin
    try { return decodeURIComponent(location.hash.slice(1)); } catch (e) { return ""; }
  }
  async function loadOverview() {
    const ov = await getJSON("/api/overview");
    ov.all = new Map();
    for (const r of ov.top_trade_value.concat(ov.volatility)) ov.all.set(r.market, r);
    state.overview = ov;
    if (!state.market && ov.markets.length) {
      const fromHash = hashMarket();
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
    else {
      if (f.error) fb.appendChild(el("div", "err", f.error));  // a deployment's last run failed, runs are late
      if (!f.runs.length) fb.appendChild(el("div", "empty", "no flow runs yet"));
      else for (const r of f.runs.slice(0, 6)) {
        const t = r.start ? new Date(r.start).toISOString().slice(5, 16).replace("T", " ") : "";
        kv(fb, r.flow + " · " + t, r.state_name || r.state || "?",
          r.state === "COMPLETED" ? "up" : (r.state === "FAILED" || r.state === "CRASHED") ? "down" : "");
      }
    }
    root.appendChild(fb);
    const s = h.services;
    const sb = box("Services", s.state);
    if (s.state === "down") sb.appendChild(el("div", "err", s.error));
    else for (const x of s.services) {
      kv(sb, x.name, x.state, x.state === "up" ? "up" : "down");
      if (x.error) sb.appendChild(el("div", "err", x.error));  // why: e.g. a probe URL the service does not serve
    }
    root.appendChild(sb);
  }

  // ---- selection, live updates ------------------------------------------------------------------------------------
  async function selectMarket(m) {
    state.market = m;
    state.bars = [];
    history.replaceState(null, "", "#" + encodeURIComponent(m));
    renderStrip(); renderKpis(); renderHeader();
    renderRanking(); // re-mark the selected row
    await Promise.all([loadSeries(true).then(() => loadLinkSeries(true)), loadPosts(), loadLink()]);
  }
  for (const b of document.querySelectorAll("#tf-group button")) {
    b.addEventListener("click", async () => {
      for (const o of document.querySelectorAll("#tf-group button")) o.classList.toggle("on", o === b);
      state.tf = b.dataset.tf;
      state.bars = [];
      await loadSeries(true);
      await loadLinkSeries(true);
    });
  }
  function setStatus(text) { $("status-line").textContent = text; }
  async function refreshAll(full) {
    if (state.loading) return;
    state.loading = true;
    try {
      await loadOverview();
      // a rebuilt link mart rewrites its recent minutes: then the chart's link series is reloaded whole
      const linkAsOf = state.lastVersion ? JSON.parse(state.lastVersion).link_as_of : null;
      const linkFull = full || linkAsOf !== state.linkAsOf;
      state.linkAsOf = linkAsOf;
      await Promise.all([loadSeries(full).then(() => loadLinkSeries(linkFull)), loadPosts(), loadLink(),
                         loadRanking()]);
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
