// crash_triage: one card per crash title (culprit frames, hosts folded and listed, kernels, where the
// log came from); "Open crash and show bt" opens the crash session on the chosen host (crash_open)
// and shows its backtrace (crash_run 'bt'), both as tool calls through the host.
const MAX_CHIPS = 60;

function drawTriage(main, answer, extra) {
  const dumps = extra.dumps || {};
  const groups = answer.groups || [];
  const crashed = groups.filter((g) => g.data && g.data.title);
  add(main, 
    el("h2", {}, crashed.length ? crashed.length + " crash title(s)" : "No crash found"),
    summaryLine(answer.summary),
    answer.note ? el("p", { class: "muted" }, answer.note) : null,
  );
  for (const group of crashed) add(main, card(group, dumps));
  const quiet = groups.filter((g) => !(g.data && g.data.title));
  for (const group of quiet) add(main, quietGroup(group));
  const errors = errorsTable(answer.errors, "Hosts whose crash could not be read");
  if (errors) add(main, errors);
}

function card(group, dumps) {
  const data = group.data;
  const hosts = expandHosts(group.hosts);
  const frames = data.frames || [];
  const out = el("div", { class: "drill" });
  return el(
    "section",
    { class: "card", "data-title": visible(data.title) },
    el("h3", {}, name(data.title)),
    el(
      "p",
      {},
      el("strong", {}, group.count + " host(s): "),
      name(group.hosts),
      data.culprit ? [" \u00b7 culprit ", name(data.culprit)] : null,
      data.module ? [" in module ", name(data.module)] : null,
    ),
    frames.length
      ? el("ol", { class: "frames" }, frames.map((f) => el("li", { class: f === data.culprit ? "culprit" : null }, f)))
      : null,
    facts(data),
    el(
      "ul",
      { class: "chips", "aria-label": "hosts" },
      hosts.slice(0, MAX_CHIPS).map((h) => el("li", {}, name(h))),
      hosts.length > MAX_CHIPS ? el("li", {}, "+" + (hosts.length - MAX_CHIPS) + " more") : null,
    ),
    (data.notes || []).map((n) => el("p", { class: "muted" }, n)),
    drillControls(hosts, dumps, out),
    out,
  );
}

function facts(data) {
  const sources = Object.entries(data.sources || {}).map(([source, n]) => source + " (" + n + ")");
  return el(
    "table",
    {},
    (data.releases || []).length ? el("tr", {}, el("th", {}, "kernels"), el("td", {}, data.releases.join(", "))) : null,
    sources.length ? el("tr", {}, el("th", {}, "read from"), el("td", {}, sources.join(", "))) : null,
    (data.modules || []).length ? el("tr", {}, el("th", {}, "modules"), el("td", {}, data.modules.join(" "))) : null,
    (data.taint || []).length ? el("tr", {}, el("th", {}, "taint"), el("td", {}, data.taint.join(" "))) : null,
  );
}

function drillControls(hosts, dumps, out) {
  const withDump = hosts.filter((h) => dumps[h]);
  if (!withDump.length) return el("p", { class: "muted" }, "No dump on these hosts: their crash came from pstore or the journal.");
  const choice = el("select", { "aria-label": "host to open" }, withDump.map((h) => el("option", { value: h }, h)));
  const button = el("button", { type: "button", class: "open-bt" }, "Open crash and show bt");
  button.addEventListener("click", () => drill(withDump[choice.selectedIndex], dumps, out, button));
  return el("p", {}, choice, " ", button);
}

async function drill(host, dumps, out, button) {
  button.disabled = true;
  out.replaceChildren(el("p", { class: "muted" }, "Opening the crash session on ", name(host), "\u2026"));
  try {
    const session = await openSession(host, dumps[host], out);
    out.replaceChildren(el("p", { class: "muted" }, "Running bt in ", name(session), "\u2026"));
    const bt = await call("crash_run", { session_id: session, command: "bt" });
    out.replaceChildren(
      el("h4", {}, "bt on ", name(host), " (session ", name(session), ")"),
      el("pre", { class: "output bt" }, multiline(bt.text || "")),
    );
  } catch (err) {
    out.replaceChildren(errorBox(err.message));
  } finally {
    button.disabled = false;
  }
}

// crash_open answers within the call's budget; a dump still opening then is a job to poll.
async function openSession(host, vmcore, out) {
  let opened = await call("crash_open", { host, vmcore });
  for (let polls = 0; !opened.session && opened.job_id && polls < 300; polls++) {
    out.replaceChildren(el("p", { class: "muted" }, "crash is still opening the dump on ", name(host), " (job ", opened.job_id, ")\u2026"));
    await wait(2000);
    const status = await call("job_status", { job_id: opened.job_id });
    const group = (status.groups || [])[0];
    if (group && group.status === "failed") throw new Error("crash_open failed on " + host + ": " + (group.output || "no reason given"));
    if (group && group.status === "ok" && group.data) opened = group.data;
  }
  if (!opened.session) throw new Error("crash_open gave no session on " + host + (opened.note ? ": " + opened.note : ""));
  return opened.session.session_id;
}

function quietGroup(group) {
  const why = (group.data && group.data.why) || group.output || "";
  return el("section", { class: "card" }, el("h3", {}, group.data ? "No crash found" : group.status), el("p", {}, name(group.hosts)), why ? el("p", { class: "muted" }, why) : null);
}

mount(drawTriage);
