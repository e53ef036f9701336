// profile_run / profile_result: the fleet-merged folded stacks as a flame graph (root at the top,
// callees below; click a frame to zoom on it, click the root or "Reset" to zoom out), the samples
// of a frame on hover, and the hosts that stand out.
const ROW = 18;
const MIN_SHARE = 0.002; // frames thinner than this share of the zoomed frame are not drawn

function drawFlame(main, answer, extra) {
  const profile = answer.profile;
  add(main, el("h2", {}, "CPU profile"), summaryLine(answer.summary));
  if (answer.job_id) add(main, el("p", { class: "muted" }, "Hosts still sampling: job ", answer.job_id));
  if (!profile) {
    add(main, el("p", { class: "muted" }, "No samples merged yet."));
    const errors = errorsTable(answer.errors);
    if (errors) add(main, errors);
    return;
  }
  add(main, el("p", { class: "muted" }, fmt(profile.samples) + " samples at " + answer.hz + " Hz over " + answer.duration + " s, " + fmt(profile.stack_count) + " distinct stacks"));
  const stacks = extra.stacks || profile.stacks || [];
  const root = tree(stacks);
  const readout = el("output", { class: "readout" }, "");
  const graph = el("div", { class: "flame", role: "tree", "aria-label": "flame graph" });
  const reset = el("button", { type: "button", class: "quiet reset" }, "Reset zoom");
  const state = { zoom: root };
  const redraw = () => paint(graph, root, state, readout, redraw);
  reset.addEventListener("click", () => {
    state.zoom = root;
    redraw();
  });
  add(main, el("p", {}, reset), graph, readout);
  redraw();
  add(main, standOut(profile, answer.outlier_rule), hostTable(profile.per_host || []));
  if (profile.note) add(main, el("p", { class: "muted" }, profile.note));
  const errors = errorsTable(answer.errors);
  if (errors) add(main, errors);
}

function tree(stacks) {
  const root = { name: "all", value: 0, children: new Map(), parent: null, depth: 0 };
  for (const entry of stacks) {
    let node = root;
    root.value += entry.samples;
    for (const frame of String(entry.stack).split(";")) {
      let child = node.children.get(frame);
      if (!child) {
        child = { name: frame, value: 0, children: new Map(), parent: node, depth: node.depth + 1 };
        node.children.set(frame, child);
      }
      child.value += entry.samples;
      node = child;
    }
  }
  return root;
}

function ancestors(node) {
  const path = [];
  for (let n = node.parent; n; n = n.parent) path.unshift(n);
  return path;
}

// The zoomed frame spans the width; its ancestors sit above it, full width and dimmed.
function paint(graph, root, state, readout, redraw) {
  graph.replaceChildren();
  const zoom = state.zoom;
  const path = ancestors(zoom);
  let deepest = 0;
  const place = (node, depth, left, width, dim) => {
    deepest = Math.max(deepest, depth);
    const share = node.value / root.value;
    const text = node.name + ": " + node.value.toLocaleString("en") + " samples (" + (100 * share).toFixed(1) + "% of all)";
    const frame = el(
      "div",
      {
        class: "frame" + (dim ? " path" : ""),
        role: "treeitem",
        tabindex: "0",
        title: text,
        "data-frame": visible(node.name),
        "data-samples": String(node.value),
        style: { left: left + "%", width: width + "%", top: depth * ROW + "px", background: color(node.name) },
      },
      node.name,
    );
    frame.addEventListener("click", () => {
      state.zoom = node === state.zoom && node.parent ? node.parent : node;
      redraw();
    });
    frame.addEventListener("mouseenter", () => (readout.textContent = visible(text)));
    graph.append(frame);
  };
  path.forEach((node, depth) => place(node, depth, 0, 100, true));
  const lay = (node, depth, left, width) => {
    place(node, depth, left, width, false);
    let x = left;
    for (const child of [...node.children.values()].sort((a, b) => b.value - a.value)) {
      const w = (width * child.value) / node.value;
      if (child.value / zoom.value >= MIN_SHARE) lay(child, depth + 1, x, w);
      x += w;
    }
  };
  lay(zoom, path.length, 0, 100);
  graph.style.height = (deepest + 1) * ROW + 2 + "px";
  graph.dataset.zoom = visible(zoom.name);
}

// Warm colours, stable per frame name; user-space frames ([user]) cooler.
function color(frame) {
  let hash = 0;
  for (const char of frame) hash = (hash * 31 + char.codePointAt(0)) | 0;
  const hue = frame.includes("[user]") ? 190 + (Math.abs(hash) % 40) : 10 + (Math.abs(hash) % 40);
  return "hsl(" + hue + ", 75%, " + (62 + (Math.abs(hash >> 8) % 14)) + "%)";
}

function standOut(profile, rule) {
  const outliers = profile.outliers || [];
  if (!outliers.length) return el("p", { class: "muted" }, "No host stands out.");
  return el(
    "section",
    { class: "outliers" },
    el("h3", {}, "Hosts that stand out"),
    el(
      "ul",
      {},
      outliers.map((o) =>
        el("li", { "data-host": visible(o.host) }, el("strong", {}, name(o.host)), ": " + (100 * o.share).toFixed(1) + "% of its samples in ", name(o.stack), " (the others: " + (100 * o.others_share).toFixed(1) + "%)"),
      ),
    ),
    rule ? el("p", { class: "muted" }, rule) : null,
  );
}

function hostTable(hosts) {
  if (!hosts.length) return null;
  return el(
    "table",
    {},
    el("tr", {}, el("th", {}, "host"), el("th", {}, "samples"), el("th", {}, "top stack"), el("th", {}, "share")),
    hosts.slice(0, 20).map((h) =>
      el("tr", {}, el("td", {}, name(h.host)), el("td", { class: "num" }, fmt(h.samples)), el("td", {}, name(h.top_stack || "")), el("td", { class: "num" }, h.top_share === undefined || h.top_share === null ? "" : (100 * h.top_share).toFixed(1) + "%")),
    ),
  );
}

mount(drawFlame);
