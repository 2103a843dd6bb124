// The admin page's "run it" panel: runs hello, process, submit and get_result, goodbye against the Thrift
// server's own port with Apache Thrift's JavaScript library (XHRConnection: HTTP POST, TJSONProtocol; the
// bundle scripts/gen-js builds, global ThriftHandshake), and draws each phase as it happens.
// Per call, "request" runs from the call until the reply's first bytes arrive (sending, the network and the
// server's work), "response" from there until the reply is read and decoded.
"use strict";
(function () {
  const CALL_TIMEOUT_MS = 15000;
  let target = null;   // state.json's "runit": where the calls go
  let running = false;

  const $ = (id) => document.getElementById(id);
  // The endpoint's own files by absolute URL without the page's user:password@ (fetch refuses URLs with
  // credentials, and a relative one inherits them from a page opened as http://user:token@host/).
  const here = (path) => new URL(path, location.origin + location.pathname).href;

  function status(state, text) {
    const line = $("runit-status");
    line.dataset.state = state;
    line.textContent = text;
  }

  async function load() {
    const panel = $("runit");
    panel.innerHTML = await (await fetch(here("admin/static/runit.html"), {cache: "no-store"})).text();
    target = (await (await fetch(here("admin/state.json"), {cache: "no-store"})).json()).runit;
    if (target.unavailable) {
      status("unavailable", "cannot run from a browser: " + target.unavailable);
      return;
    }
    $("runit-target").textContent = url();
    if (target.token_required) $("runit-form").elements.auth_token.placeholder = "required";
    try {
      await script(here(target.client));
    } catch (error) {
      status("unavailable", String(error));
      return;
    }
    $("runit-form").addEventListener("submit", (event) => { event.preventDefault(); run(); });
    $("runit-run").disabled = false;
    status("ready", "ready: the Thrift client is loaded");
  }

  function url() {
    const host = target.host || location.hostname;
    return (target.https ? "https://" : "http://") + (host.includes(":") ? "[" + host + "]" : host) + ":" +
      target.port + target.path;
  }

  // Loads the bundle; a 404 says how to build it.
  async function script(src) {
    const answer = await fetch(src, {cache: "no-store"});
    if (!answer.ok) throw new Error("the Thrift client is missing (" + answer.status + "): " + (await answer.text()).trim());
    await new Promise((resolve, reject) => {
      const tag = document.createElement("script");
      tag.src = src;
      tag.onload = resolve;
      tag.onerror = () => reject(new Error("the Thrift client did not load from " + src));
      document.head.appendChild(tag);
    });
    if (!window.ThriftHandshake) throw new Error(src + " did not define ThriftHandshake");
  }

  // An HTTP answer other than 200, or no answer at all: XHRConnection itself drops these silently.
  class HttpError extends Error {
    constructor(status, text) {
      super(status === 0 ? "no answer from " + url() + " (refused, unreachable, or blocked by CORS)"
        : "HTTP " + status + ": " + text.trim().slice(0, 200));
      this.name = status === 0 ? "NetworkError" : "HttpError";
      this.status = status;
    }
  }

  // One connection and client per run; each call resolves to {value, start, firstByte, end} or rejects with
  // the error as the library (or HttpError) gives it, with the same times.
  function connect() {
    const {thrift, HandshakeService} = window.ThriftHandshake;
    const host = target.host || location.hostname;
    const connection = thrift.createXHRConnection(host.includes(":") ? "[" + host + "]" : host, target.port,
      {path: target.path, https: target.https, useCORS: true, timeout: CALL_TIMEOUT_MS,
        protocol: thrift.TJSONProtocol, transport: thrift.TBufferedTransport,
        // the body's protocol by name (XHRConnection sends none); the browser asks the port first (CORS preflight)
        headers: {"Content-Type": "application/vnd.apache.thrift.json"}});
    let pending = null;
    const settle = (error, value) => {
      const call = pending;
      if (call === null) return;
      pending = null;
      call.end = performance.now();
      if (error && typeof error !== "object") error = new Error(String(error));  // the generated code's strings
      if (error) { error.times = call; call.reject(error); } else { call.value = value; call.resolve(call); }
    };
    connection.getXmlHttpRequestObject = function () {
      const xhr = new XMLHttpRequest();
      const call = pending;
      xhr.addEventListener("readystatechange", () => {
        if (xhr.readyState === 2 && call) call.firstByte = performance.now();
        if (xhr.readyState !== 4 || call !== pending) return;
        if (!call.firstByte) call.firstByte = performance.now();
        if (xhr.status !== 200) settle(new HttpError(xhr.status, xhr.responseText || ""));
        // a 200 whose body is no Thrift reply: the library throws while decoding and never calls back
        else setTimeout(() => { if (call === pending) settle(new Error("the reply is no Thrift JSON message: " + xhr.responseText.slice(0, 120))); }, 0);
      });
      return xhr;
    };
    connection.on("error", () => settle(new HttpError(0, "")));  // the library emits network errors and timeouts
    const client = thrift.createXHRClient(HandshakeService, connection);
    return function call(method, ...args) {
      return new Promise((resolve, reject) => {
        pending = {resolve, reject, start: performance.now(), firstByte: 0, end: 0};
        try {
          client[method](...args, (error, value) => settle(error, value));
        } catch (error) {
          settle(error);
        }
      });
    };
  }

  // "Name: field=value, ..." for a declared Thrift exception, "Name: message" for anything else.
  function describe(error) {
    if (error === null || typeof error !== "object") return "Error: " + String(error);
    const {Thrift} = window.ThriftHandshake.thrift;
    if (error instanceof Thrift.TApplicationException) {
      const types = Thrift.TApplicationExceptionType;
      const type = Object.keys(types).find((key) => types[key] === error.type) || error.type;
      return "TApplicationException (" + type + "): " + error.message;
    }
    if (!(error instanceof Thrift.TException)) return (error.name || "Error") + ": " + (error.message || String(error));
    const fields = Object.keys(error).filter((key) => !["name", "stack", "times"].includes(key) &&
      !(key === "message" && error.message === error.name) && error[key] !== null && error[key] !== undefined);
    return error.name + ": " + fields.map((key) => key + "=" + JSON.stringify(plain(error[key]))).join(", ");
  }

  const plain = (value) => (value && typeof value === "object" && typeof value.toNumber === "function" ? value.toNumber() : value);

  function rows(steps, origin) {
    const now = performance.now();
    const span = Math.max(...steps.map((step) => (step.end || now) - origin), 1);
    const body = document.querySelector("#runit-steps tbody");
    body.replaceChildren();
    for (const step of steps) {
      const row = body.insertRow();
      row.dataset.call = step.call;
      row.dataset.phase = step.phase;
      row.insertCell().textContent = step.phase;
      row.insertCell().textContent = step.call;
      const ms = row.insertCell();
      ms.className = "num";
      ms.textContent = step.start === undefined ? "-" : step.end ? (step.end - step.start).toFixed(1) : "...";
      const lane = document.createElement("div");
      lane.className = "lane";
      const bar = (kind, from, to) => {
        const part = document.createElement("div");
        part.className = "seg " + kind + (step.end ? "" : " pending");
        part.style.left = (100 * (from - origin) / span) + "%";
        part.style.width = (100 * (to - from) / span) + "%";
        part.title = kind + " " + (to - from).toFixed(1) + " ms";
        lane.appendChild(part);
      };
      const end = step.end || now;
      if (step.error) bar("error", step.start, end);
      else if (step.phase === "request" && step.firstByte) {
        bar("request", step.start, step.firstByte);
        bar("response", step.firstByte, end);
      } else if (step.start !== undefined) bar(step.phase === "request" ? "request" : step.phase, step.start, end);
      row.insertCell().appendChild(lane);
      const result = row.insertCell();
      result.textContent = step.error ? describe(step.error) : step.result || "";
      if (step.error) result.className = "failed";
    }
  }

  // The TCP connect inside the first request, as Resource Timing tells it (only when the Thrift port allows
  // it with Timing-Allow-Origin; a cross-origin connection's times are zero otherwise).
  function connectStep(address, since) {
    const entries = performance.getEntriesByType("resource")
      .filter((entry) => entry.name === address && entry.startTime >= since);
    const first = entries[0];
    if (first && first.connectEnd > 0) {
      return {phase: "connect", call: "TCP", start: first.connectStart, end: first.connectEnd,
        result: first.connectEnd > first.connectStart ? "a new connection" : "a kept-alive connection, reused"};
    }
    return {phase: "connect", call: "TCP", result: "inside hello's request (the Thrift port sends no Timing-Allow-Origin)"};
  }

  async function run() {
    if (running) return;
    running = true;
    $("runit-run").disabled = true;
    const form = $("runit-form").elements;
    const {session, handshake} = window.ThriftHandshake;
    const steps = [];
    const origin = performance.now();
    const call = connect();
    status("running", "running...");
    const step = async (phase, method, args, summary) => {
      const shown = {phase, call: method, start: performance.now()};
      steps.push(shown);
      rows(steps, origin);
      try {
        const done = await call(method, ...args);
        Object.assign(shown, {start: done.start, firstByte: done.firstByte, end: done.end, result: summary(done.value)});
        return done.value;
      } catch (error) {
        Object.assign(shown, error.times || {}, {error, end: (error.times || {}).end || performance.now()});
        throw error;
      } finally {
        rows(steps, origin);
      }
    };
    const request = (id) => new handshake.Request({request_id: id, payload: form.payload.value,
      work_ms: Number(form.work_ms.value) || 0, headers: {from: "the admin page"}});
    let failure = null, opened = false;
    try {
      const hello = new session.ClientHello({client_name: form.client_name.value, language: "javascript",
        min_version: 1, max_version: 2, features: [], auth_token: form.auth_token.value || null});
      await step("hello", "hello", [hello], (answer) =>
        "session " + answer.session_id + ", version " + answer.version + ", server " + answer.server_name);
      opened = true;
      steps.splice(steps.length - 1, 0, connectStep(url(), origin));
      rows(steps, origin);
      await step("request", "process", [request("browser-1")], (answer) => "digest " + answer.digest.slice(0, 12) +
        "..., sequence " + plain(answer.sequence) + ", the server's own time " + plain(answer.processing_us) + " us");
      const ack = await step("request", "submit", [request("browser-2")], (answer) => "ticket " + answer.ticket);
      await step("request", "get_result", [ack.ticket, 5000], (answer) => "digest " + answer.digest.slice(0, 12) +
        "... for " + answer.request_id);
    } catch (error) {
      failure = error;
    }
    if (opened) {
      try {
        await step("goodbye", "goodbye", [], (farewell) => plain(farewell.calls) + " calls in " +
          plain(farewell.duration_ms) + " ms");
      } catch (error) {
        failure = failure || error;
      }
    }
    const total = (performance.now() - origin).toFixed(1);
    if (failure) status("failed", "failed after " + total + " ms: " + describe(failure));
    else status("done", "done in " + total + " ms: " + steps.filter((s) => s.end && s.phase !== "connect").length + " calls");
    $("runit-run").disabled = false;
    running = false;
  }

  load().catch((error) => status("failed", "the panel did not load: " + error));
})();
