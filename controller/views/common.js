// What every view shares. Every string of a result (host names, comm names, DNS names, stack frames,
// outputs) reaches the page as a text node, never as markup; control and bidi characters are shown
// as their code points, not obeyed, so a name cannot reorder or hide what is around it.
const INVISIBLE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u00ad\u061c\u115f\u1160\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\u3164\ufeff\ufff9-\ufffb]/g;
const INVISIBLE_IN_NAMES = /[\t\n]/g;
const VIEW_META = "crashfleet/view";

function codePoint(char) {
  return "\u27e8U+" + char.codePointAt(0).toString(16).toUpperCase().padStart(4, "0") + "\u27e9";
}

// A name or one-line value: nothing in it acts, tabs and newlines included.
function visible(value) {
  return String(value === undefined || value === null ? "" : value)
    .replace(INVISIBLE, codePoint)
    .replace(INVISIBLE_IN_NAMES, codePoint);
}

// Several lines (a command's output): newlines and tabs stay, the rest as for names.
function multiline(value) {
  return document.createTextNode(String(value === undefined || value === null ? "" : value).replace(INVISIBLE, codePoint));
}

// el("p", {class: "x", onclick: fn}, "text", child...): strings become visible() text nodes.
function el(tag, props, ...kids) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "title") node.title = visible(value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "style") Object.assign(node.style, value);
    else node.setAttribute(key, String(value));
  }
  return add(node, ...kids);
}

// Append what is there (null, undefined and false are nothing); strings as visible() text.
function add(parent, ...kids) {
  for (const kid of kids.flat(4)) {
    if (kid === undefined || kid === null || kid === false) continue;
    parent.append(kid instanceof Node ? kid : document.createTextNode(visible(kid)));
  }
  return parent;
}

function name(value) {
  return el("span", { class: "name" }, value);
}

function errorBox(message) {
  return el("div", { class: "error", role: "alert" }, multiline(message));
}

function fmt(value) {
  if (value === undefined || value === null) return "";
  if (typeof value === "number") return Number.isInteger(value) ? value.toLocaleString("en") : String(+value.toPrecision(4));
  return String(value);
}

// 1024-based short numbers for bucket bounds: 4K, 1M.
function short(value) {
  if (value === undefined || value === null) return "?";
  const units = [["G", 2 ** 30], ["M", 2 ** 20], ["K", 2 ** 10]];
  for (const [unit, size] of units) if (Math.abs(value) >= size) return +(value / size).toPrecision(3) + unit;
  return String(value);
}

// [min, max + 1) as bpftrace prints it: max is the bucket's last value (1M - 1 would read "1020K")
function bucketLabel(bucket) {
  return bucket.max === undefined || bucket.max === null ? short(bucket.min) + "+" : short(bucket.min) + "-" + short(bucket.max + 1);
}

// "web[01-03,07],db1" -> ["web01", "web02", "web03", "web07", "db1"] (ClusterShell's folding).
function expandHosts(folded, limit = 5000) {
  const parts = [];
  let depth = 0;
  let start = 0;
  const text = String(folded || "");
  for (let i = 0; i < text.length; i++) {
    if (text[i] === "[") depth++;
    else if (text[i] === "]") depth--;
    else if (text[i] === "," && depth === 0) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(text.slice(start));
  const hosts = [];
  for (const part of parts) for (const host of expandOne(part)) if (hosts.length < limit) hosts.push(host);
  return hosts.filter((h) => h !== "");
}

function expandOne(pattern) {
  const open = pattern.indexOf("[");
  const close = pattern.indexOf("]", open);
  if (open < 0 || close < 0) return [pattern];
  const head = pattern.slice(0, open);
  const tails = expandOne(pattern.slice(close + 1));
  const out = [];
  for (const range of pattern.slice(open + 1, close).split(",")) {
    const [low, high] = range.split("-");
    if (high === undefined || !/^\d+$/.test(low) || !/^\d+$/.test(high)) {
      for (const tail of tails) out.push(head + range + tail);
      continue;
    }
    for (let n = Number(low); n <= Number(high) && out.length < 5000; n++) {
      const number = String(n).padStart(low.length, "0");
      for (const tail of tails) out.push(head + number + tail);
    }
  }
  return out;
}

function resultText(result) {
  return ((result && result.content) || []).filter((c) => c.type === "text").map((c) => c.text).join("\n");
}

// The answer a tool gave: its structuredContent (the JSON text when a host drops it).
function answerOf(result) {
  if (result && result.structuredContent && typeof result.structuredContent === "object") return result.structuredContent;
  try {
    return JSON.parse(resultText(result));
  } catch (e) {
    return null;
  }
}

// A tool called from the view: its answer, or an Error saying why not (the host's refusal, the tool's error).
async function call(tool, args) {
  let result;
  try {
    result = await Bridge.callTool(tool, args);
  } catch (err) {
    throw new Error(tool + " could not be called: " + err.message);
  }
  if (!result || result.isError) throw new Error(tool + " failed: " + (resultText(result) || "no reason given"));
  const answer = answerOf(result);
  if (answer === null) throw new Error(tool + " answered nothing this view can read");
  return answer;
}

function wait(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function summaryLine(summary) {
  if (!summary) return null;
  const parts = [summary.total + " host(s)"];
  for (const key of ["ok", "running", "failed", "timeout", "unreachable"]) if (summary[key]) parts.push(summary[key] + " " + key);
  if (summary.elapsed_ms) parts.push((summary.elapsed_ms / 1000).toFixed(1) + " s");
  return el("p", { class: "muted" }, parts.join(" \u00b7 "));
}

function errorsTable(errors, heading) {
  if (!errors || !errors.length) return null;
  return [
    el("h3", {}, heading || "Hosts that did not answer"),
    el(
      "table",
      {},
      el("tr", {}, el("th", {}, "host"), el("th", {}, "status"), el("th", {}, "why")),
      errors.map((e) =>
        el(
          "tr",
          {},
          el("td", {}, name(e.host)),
          el("td", { class: "status-" + e.status }, e.status),
          el("td", {}, e.message, e.hint ? el("div", { class: "muted" }, e.hint) : null),
        ),
      ),
    ),
  ];
}

// Start the view: draw(main, answer, extra) for each result; errors shown, never a blank frame.
function mount(draw) {
  const main = document.getElementById("view");
  Bridge.start({
    result(result) {
      main.replaceChildren();
      if (!result || result.isError) {
        add(main, errorBox(resultText(result) || "the tool failed without saying why"));
        return;
      }
      const answer = answerOf(result);
      if (answer === null) {
        add(main, errorBox("the tool's answer is not one this view can read"), el("pre", { class: "output" }, multiline(resultText(result))));
        return;
      }
      try {
        draw(main, answer, (result._meta && result._meta[VIEW_META]) || {});
      } catch (err) {
        add(main, errorBox("this view could not draw the answer: " + err.message));
      }
    },
    cancelled(reason) {
      main.replaceChildren(errorBox("the tool call was cancelled" + (reason ? ": " + reason : "")));
    },
  }).catch((err) => main.replaceChildren(errorBox("the host did not start this view: " + err.message)));
}
