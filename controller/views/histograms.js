// bpftrace_run / bpftrace_result: each histogram map as bars (log2 or linear buckets, the count on
// hover), the fleet's beside its outlier hosts' own; other maps as their values; the hosts' figures.
function drawHistograms(main, answer, extra) {
  const maps = answer.maps || [];
  const own = extra.outlier_histograms || {};
  add(main, 
    el("h2", {}, maps.length ? maps.length + " map(s) merged fleet-wide" : "No maps"),
    summaryLine(answer.summary),
    answer.job_id && (answer.summary || {}).running ? el("p", { class: "muted" }, "Hosts still tracing: job ", answer.job_id) : null,
    answer.note ? el("p", { class: "muted" }, answer.note) : null,
  );
  for (const merged of maps) add(main, mapSection(merged, own[merged.name] || {}));
  const printed = (answer.groups || []).filter((g) => g.output && g.status === "ok" && !maps.length);
  for (const group of printed) add(main, el("h3", {}, "Output of ", name(group.hosts)), el("pre", { class: "output" }, multiline(group.output)));
  if (answer.outlier_rule) add(main, el("p", { class: "muted" }, "Outliers: ", answer.outlier_rule));
  const errors = errorsTable(answer.errors);
  if (errors) add(main, errors);
}

function mapSection(merged, outlierBuckets) {
  const section = el(
    "section",
    { class: "map", "data-map": visible(merged.name) },
    el("h3", {}, name(merged.name), " (" + merged.kind + ") on ", name(merged.hosts)),
  );
  if (merged.histogram) {
    add(section, el("p", { class: "muted" }, "count " + fmt(merged.count) + " \u00b7 p50 " + fmt(merged.p50) + " \u00b7 p99 " + fmt(merged.p99)));
    const charts = el("div", { class: "charts" }, chart("fleet-wide", merged.histogram, "fleet"));
    for (const outlier of merged.outliers || []) {
      const buckets = outlierBuckets[outlier.host];
      if (buckets) add(charts, chart(outlier.host, buckets, "outlier small", outlier.why));
    }
    add(section, charts);
  } else if (merged.keys) {
    add(section, keyBars(merged.keys));
  } else if (merged.value !== undefined && merged.value !== null) {
    add(section, el("p", {}, "fleet-wide value: ", el("strong", {}, fmt(merged.value))));
  }
  if ((merged.outliers || []).length) {
    add(section, 
      el("ul", { class: "outliers" }, merged.outliers.map((o) => el("li", {}, name(o.host), ": ", o.why))),
    );
  }
  if ((merged.per_host || []).length) add(section, hostTable(merged.per_host));
  if (merged.note) add(section, el("p", { class: "muted" }, merged.note));
  return section;
}

// One bar per bucket; its count on hover (title) and in the readout line under the chart.
function chart(label, buckets, kind, why) {
  const top = Math.max(1, ...buckets.map((b) => b.count));
  const readout = el("output", { class: "readout" }, "");
  const bars = el("div", { class: "bars", role: "list" });
  const axis = el("div", { class: "axis", "aria-hidden": "true" });
  for (const bucket of buckets) {
    const text = bucketLabel(bucket) + ": " + bucket.count.toLocaleString("en");
    const bar = el("div", {
      class: "bar",
      role: "listitem",
      tabindex: "0",
      title: text,
      "aria-label": text,
      "data-count": String(bucket.count),
      style: { height: Math.max(bucket.count ? 2 : 0, (100 * bucket.count) / top) + "%" },
    });
    const show = () => (readout.textContent = visible(label) + " " + text);
    bar.addEventListener("mouseenter", show);
    bar.addEventListener("focus", show);
    bars.append(bar);
    axis.append(el("span", {}, bucketLabel(bucket)));
  }
  return el("figure", { class: "chart " + kind, "data-chart": visible(label) }, bars, axis, readout, el("figcaption", {}, name(label), why ? " \u00b7 " + why : ""));
}

function keyBars(keys) {
  const entries = Object.entries(keys);
  const top = Math.max(1, ...entries.map(([, v]) => Math.abs(v)));
  return el(
    "div",
    { class: "keys" },
    entries.map(([key, value]) =>
      el("div", { class: "hbar", title: key + ": " + fmt(value) }, name(key), el("div", { class: "fill", style: { width: (100 * Math.abs(value)) / top + "%" } }), el("span", { class: "num" }, fmt(value))),
    ),
  );
}

function hostTable(figures) {
  const rows = figures.slice(0, 12);
  const hist = rows.some((f) => f.p99 !== undefined && f.p99 !== null);
  return el(
    "table",
    {},
    el("tr", {}, el("th", {}, "host"), hist ? [el("th", {}, "count"), el("th", {}, "p50"), el("th", {}, "p99")] : el("th", {}, "value")),
    rows.map((f) =>
      el(
        "tr",
        {},
        el("td", {}, name(f.host)),
        hist
          ? [el("td", { class: "num" }, fmt(f.count)), el("td", { class: "num" }, fmt(f.p50)), el("td", { class: "num" }, fmt(f.p99))]
          : el("td", { class: "num" }, fmt(f.value)),
      ),
    ),
  );
}

mount(drawHistograms);
