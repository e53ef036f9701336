"use strict";
// A test MCP Apps host built on the official host bridge (AppBridge and PostMessageTransport of
// @modelcontextprotocol/ext-apps, bundled as the global ExtApps): it reads the tool's view from the
// server (tools/list _meta.ui.resourceUri, then resources/read), frames it sandboxed, hands it the
// tool's input and result, and forwards the view's tool calls. The server is reached through the
// test (the DevTools binding crashfleetServer), which drives a real `crashfleet serve`.
const pending = new Map();
let nextRequest = 0;
window.__events = [];
window.__pwned = false;

window.__reply = (id, ok, payload) => {
  const waiting = pending.get(id);
  pending.delete(id);
  if (ok) waiting.resolve(payload);
  else waiting.reject(new Error(payload));
};

function server(method, params) {
  const id = ++nextRequest;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    window.crashfleetServer(JSON.stringify({ id, method, params }));
  });
}

// A hostile string that ran would say so to its parent.
window.addEventListener("message", (event) => {
  if (event.data === "pwned" || (event.data && event.data.pwned)) window.__pwned = true;
});

// Show `tool`'s view with its answer: `result` as given, else the tool is called (with `args`).
window.hostRun = async (tool, args, result) => {
  window.__events = [];
  const listed = await server("tools/list", {});
  const entry = listed.tools.find((t) => t.name === tool);
  const uri = entry && entry._meta && entry._meta.ui && entry._meta.ui.resourceUri;
  if (!uri) throw new Error(tool + " names no view");
  const read = await server("resources/read", { uri });
  const page = read.contents[0];
  const answer = result || (await server("tools/call", { name: tool, arguments: args }));
  await show(page.text, args, answer);
  return { uri, mimeType: page.mimeType, meta: page._meta || null };
};

async function show(html, args, result) {
  const frame = document.createElement("iframe");
  frame.id = "view";
  frame.setAttribute("sandbox", "allow-scripts");
  frame.setAttribute("title", "crashfleet view");
  frame.srcdoc = html;
  document.getElementById("frames").replaceChildren(frame);
  const bridge = new ExtApps.AppBridge(
    null,
    { name: "crashfleet-test-host", version: "1" },
    { serverTools: {}, logging: {} },
    { hostContext: { theme: "light", displayMode: "inline", availableDisplayModes: ["inline"], platform: "web" } },
  );
  bridge.oncalltool = async (params) => {
    window.__events.push({ call: params.name, arguments: params.arguments });
    const answer = await server("tools/call", { name: params.name, arguments: params.arguments || {} });
    window.__events.push({ answered: params.name, isError: !!answer.isError });
    return answer;
  };
  bridge.onsizechange = (size) => {
    if (size.height) frame.style.height = size.height + "px";
    window.__events.push({ size });
  };
  bridge.oninitialized = () => {
    window.__events.push({ initialized: true });
    bridge.sendToolInput({ arguments: args || {} });
    bridge.sendToolResult(result);
  };
  window.__bridge = bridge;
  await bridge.connect(new ExtApps.PostMessageTransport(frame.contentWindow, frame.contentWindow));
}
