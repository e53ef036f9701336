// fleet_check: hosts grouped by the facts they share (kernel, distro, tool versions...), each group
// with its hosts; the hosts that are down, and why.
function drawFleet(main, answer) {
  const groups = (answer.groups || []).filter((g) => g.status === "ok" || g.status === "running");
  const errors = answer.errors || [];
  add(
    main,
    el("h2", {}, groups.length + " group(s) of hosts alike" + (errors.length ? ", " + errors.length + " down or failing" : "")),
    summaryLine(answer.summary),
    answer.note ? el("p", { class: "muted" }, answer.note) : null,
  );
  if (errors.length) add(main, el("h3", { class: "status-failed" }, "Down hosts, and why"), downTable(errors));
  for (const group of groups) add(main, factsCard(group));
}

function downTable(errors) {
  return el(
    "table",
    { class: "down" },
    el("tr", {}, el("th", {}, "host"), el("th", {}, "status"), el("th", {}, "why"), el("th", {}, "what to check")),
    errors.map((e) => el("tr", {}, el("td", {}, name(e.host)), el("td", { class: "status-" + e.status }, e.status), el("td", {}, e.message), el("td", { class: "muted" }, e.hint || ""))),
  );
}

function factsCard(group) {
  const hosts = expandHosts(group.hosts);
  const rows = flatten(group.data || {}, "");
  return el(
    "section",
    { class: "card" },
    el("h3", {}, group.count + " host(s): ", name(group.hosts), group.status === "running" ? " (still answering)" : ""),
    el("ul", { class: "chips" }, hosts.slice(0, 60).map((h) => el("li", {}, name(h))), hosts.length > 60 ? el("li", {}, "+" + (hosts.length - 60) + " more") : null),
    rows.length
      ? el("table", { class: "facts" }, rows.map(([key, value]) => el("tr", {}, el("th", {}, key), el("td", {}, name(value)))))
      : group.output
        ? el("pre", { class: "output" }, multiline(group.output))
        : null,
  );
}

// {"tools": {"crash": {"version": "8.0.2"}}} -> [["tools.crash.version", "8.0.2"]]
function flatten(value, prefix) {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return [[prefix, Array.isArray(value) ? value.join(", ") : fmt(value)]];
  }
  const rows = [];
  for (const [key, inner] of Object.entries(value)) rows.push(...flatten(inner, prefix ? prefix + "." + key : key));
  return rows;
}

mount(drawFleet);
