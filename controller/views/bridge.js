"use strict";
// The view's side of MCP Apps (the io.modelcontextprotocol/ui extension, protocol 2026-01-26),
// written by hand instead of bundling the App SDK: JSON-RPC 2.0 over postMessage with the host
// window that framed us. The view asks ui/initialize, says ui/notifications/initialized, then the
// host sends the tool's result (ui/notifications/tool-result); tools/call goes back through the
// host, which decides whether it reaches the server.
const Bridge = (() => {
  const PROTOCOL = "2026-01-26";
  const pending = new Map();
  const handlers = new Map();
  let nextId = 1;

  function send(message) {
    window.parent.postMessage({ jsonrpc: "2.0", ...message }, "*");
  }

  function request(method, params) {
    const id = nextId++;
    send({ id, method, params });
    return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
  }

  function notify(method, params) {
    send({ method, params });
  }

  function answered(message) {
    const waiting = pending.get(message.id);
    pending.delete(message.id);
    if (message.error) {
      const error = new Error(String(message.error.message || "the host refused the request"));
      error.code = message.error.code;
      waiting.reject(error);
    } else {
      waiting.resolve(message.result);
    }
  }

  function asked(message) {
    // The host's requests: a ping, or the teardown before it removes us. Nothing to keep.
    if (message.method === "ping" || message.method === "ui/resource-teardown") {
      send({ id: message.id, result: {} });
    } else {
      send({ id: message.id, error: { code: -32601, message: "Method not found" } });
    }
  }

  window.addEventListener("message", (event) => {
    if (event.source !== window.parent) return; // only the host that framed us speaks here
    const message = event.data;
    if (!message || message.jsonrpc !== "2.0") return;
    if (message.method === undefined && pending.has(message.id)) answered(message);
    else if (message.method !== undefined && message.id !== undefined) asked(message);
    else if (message.method !== undefined) {
      const handler = handlers.get(message.method);
      if (handler) handler(message.params || {});
    }
  });

  function theme(context) {
    if (context && context.theme) document.documentElement.dataset.theme = context.theme === "dark" ? "dark" : "light";
  }

  function watchSize() {
    let last = "";
    const observer = new ResizeObserver(() => {
      const height = Math.ceil(document.documentElement.scrollHeight);
      const width = Math.ceil(document.documentElement.scrollWidth);
      const size = width + "x" + height;
      if (size !== last) {
        last = size;
        notify("ui/notifications/size-changed", { width, height });
      }
    });
    observer.observe(document.body);
  }

  // on: {result(callToolResult), input(arguments), cancelled(reason)}
  async function start(on) {
    handlers.set("ui/notifications/tool-result", (result) => on.result(result));
    handlers.set("ui/notifications/tool-input", (params) => on.input && on.input(params.arguments || {}));
    handlers.set("ui/notifications/tool-cancelled", (params) => on.cancelled && on.cancelled(params.reason));
    handlers.set("ui/notifications/host-context-changed", theme);
    const init = await request("ui/initialize", {
      appInfo: { name: "crashfleet", version: "1" },
      appCapabilities: {},
      protocolVersion: PROTOCOL,
    });
    theme(init && init.hostContext);
    notify("ui/notifications/initialized", {});
    watchSize();
  }

  // A tool call through the host: the CallToolResult, or an Error with the host's reason.
  function callTool(name, args) {
    return request("tools/call", { name, arguments: args });
  }

  return { start, callTool };
})();
