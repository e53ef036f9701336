// capture_summary: the problems ranked across hosts with their evidence, the packets lost between
// the capture's hosts, and each host's capture in figures (DNS names and all as plain text).
function drawCapture(main, answer) {
  const hosts = Object.entries(answer.hosts || {});
  const problems = answer.problems || [];
  const lost = answer.lost_between_hosts || [];
  add(main, 
    el("h2", {}, "Capture ", answer.job_id || "", ": " + problems.length + " problem(s) on " + hosts.length + " host(s)"),
    answer.note ? el("p", { class: "muted" }, answer.note) : null,
  );
  add(main, el("h3", {}, "Problems, most severe first"));
  add(main, 
    problems.length
      ? el("ol", { class: "problems" }, problems.map(problem))
      : el("p", { class: "muted" }, "No problem found in what was captured."),
  );
  if (lost.length) add(main, el("h3", {}, "Lost between hosts"), lossTable(lost));
  if (hosts.length) add(main, el("h3", {}, "Per host"), hostTable(hosts));
  for (const [host, summary] of hosts) if (summary.dns) add(main, dnsNames(host, summary.dns));
  const errors = errorsTable(answer.errors, "Hosts without a summary");
  if (errors) add(main, errors);
}

function problem(p) {
  const severity = String(p.severity || "low");
  const where = p.hosts || p.host;
  return el(
    "li",
    { "data-kind": visible(p.kind) },
    el("span", { class: "sev-" + (["high", "medium", "low"].includes(severity) ? severity : "low") }, severity),
    " ",
    p.text,
    where ? [" \u00b7 ", name(where)] : null,
    evidence(p),
  );
}

function evidence(p) {
  const parts = [];
  if ((p.packets || []).length) parts.push("packets " + p.packets.join(", "));
  for (const key of ["conversations", "evidence", "names"]) {
    const value = p[key];
    if (Array.isArray(value) && value.length) parts.push(key + ": " + value.map((v) => (typeof v === "string" ? v : JSON.stringify(v))).join("; "));
  }
  return parts.length ? el("div", { class: "muted" }, parts.join(" \u00b7 ")) : null;
}

function lossTable(lost) {
  return el(
    "table",
    { class: "loss" },
    el("tr", {}, ["from", "to", "flow", "sent", "arrived", "lost", "first lost packets"].map((h) => el("th", {}, h))),
    lost.map((l) =>
      el(
        "tr",
        {},
        el("td", {}, name(l.from)),
        el("td", {}, name(l.to)),
        el("td", {}, name(l.flow)),
        el("td", { class: "num" }, fmt(l.sent)),
        el("td", { class: "num" }, fmt(l.arrived)),
        el("td", { class: "num" }, fmt(l.lost === undefined ? l.sent - l.arrived : l.lost)),
        el("td", {}, (l.packets || []).join(", ")),
      ),
    ),
  );
}

function hostTable(hosts) {
  return el(
    "table",
    {},
    el("tr", {}, ["host", "packets", "bytes", "seconds", "protocols", "TCP"].map((h) => el("th", {}, h))),
    hosts.map(([host, s]) =>
      el(
        "tr",
        {},
        el("td", {}, name(host)),
        el("td", { class: "num" }, fmt(s.packets)),
        el("td", { class: "num" }, fmt(s.bytes)),
        el("td", { class: "num" }, fmt(s.duration_s)),
        el("td", {}, Object.entries(s.protocols || {}).map(([k, v]) => k + " " + v).join(", ")),
        el("td", {}, figures(s.tcp)),
      ),
    ),
  );
}

// {"retransmissions": 3, "ended": {"closed": 6}} -> "retransmissions 3 · ended closed 6"
function figures(tcp) {
  if (!tcp || typeof tcp !== "object") return "";
  const parts = [];
  for (const [key, value] of Object.entries(tcp)) {
    if (typeof value === "number") parts.push(key.replace(/_/g, " ") + " " + fmt(value));
    else if (value && typeof value === "object") {
      const inner = Object.entries(value).map(([k, v]) => k + " " + fmt(v)).join(", ");
      if (inner) parts.push(key.replace(/_/g, " ") + ": " + inner);
    }
  }
  return parts.join(" \u00b7 ");
}

// The names asked, failed ones first: "NAME TYPE" as the host's summary has them.
function dnsNames(host, dns) {
  const rows = [
    ["NXDOMAIN", dns.nxdomain_names],
    ["SERVFAIL", dns.servfail_names],
    ["unanswered", dns.unanswered_names],
    ["answered", dns.top_names],
  ].filter(([, names]) => Array.isArray(names) && names.length);
  if (!rows.length) return null;
  return el(
    "section",
    { class: "dns" },
    el("h4", {}, "DNS on ", name(host), " (" + fmt(dns.queries) + " queries)"),
    el(
      "table",
      {},
      rows.map(([label, names]) =>
        el("tr", {}, el("th", {}, label), el("td", {}, el("ul", { class: "chips" }, names.slice(0, 20).map((n) => el("li", {}, name(n)))))),
      ),
    ),
  );
}

mount(drawCapture);
