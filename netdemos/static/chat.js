// The chat page: the room's lines as they arrive, one box to speak in, and a
// WebSocket to /chat that comes back by itself when the server goes away.
//
// Every line is put on the page as text (textContent, never as markup), so
// "<img src=x onerror=alert(1)>" shows as those characters and runs nothing.
"use strict";

(() => {
  // Lines kept on the page; older ones are dropped, so a busy room cannot
  // grow the page without bound.
  const KEPT_LINES = 1000;
  // Reconnecting waits 1, 2, 4 ... seconds, at most this many.
  const MAX_WAIT_SECONDS = 30;

  const maxLine = Number(document.body.dataset.maxLine) || 4096;
  const lines = document.getElementById("lines");
  const status = document.getElementById("status");
  const form = document.getElementById("say");
  const input = document.getElementById("text");
  const encoder = new TextEncoder();

  let socket = null;
  let failures = 0;
  let retryTimer = null;
  // The nick this user took, to take again after reconnecting.
  let nick = null;
  let quitting = false;

  function chatAddress() {
    // Same host and path as the page; wss: when the page came over https:.
    const address = new URL("chat", location.href);
    address.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    address.search = "";
    address.hash = "";
    return address.href;
  }

  function setStatus(state, text) {
    status.dataset.state = state;
    status.textContent = text;
  }

  // Show one line.  kind is "local" for what the page itself says; otherwise
  // it follows from the line: "* " notices, "! " errors, "<name> " messages.
  function show(text, kind) {
    const item = document.createElement("li");
    const message = /^(<[^>]+>) ([\s\S]*)$/.exec(text);
    if (message) {
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = message[1];
      item.append(name, " " + message[2]);
    } else {
      item.textContent = text;
    }
    item.className =
      kind ||
      (message ? "message" : text.startsWith("! ") ? "error" : "notice");
    const following =
      lines.scrollHeight - lines.scrollTop - lines.clientHeight < 48;
    lines.append(item);
    while (lines.childElementCount > KEPT_LINES) {
      lines.firstElementChild.remove();
    }
    if (following) {
      lines.scrollTop = lines.scrollHeight;
    }
  }

  function whyClosed(code) {
    if (code === 1009) {
      return "a message was too long";
    }
    if (code === 1001) {
      return "the server is going away";
    }
    if (code === 1000) {
      return "the server closed the connection";
    }
    return "the connection was lost";
  }

  function connect() {
    retryTimer = null;
    setStatus("connecting", "connecting…");
    const ws = new WebSocket(chatAddress());
    socket = ws;
    ws.addEventListener("open", () => {
      failures = 0;
      setStatus("open", "connected");
      if (nick !== null) {
        ws.send("/nick " + nick);
      }
    });
    ws.addEventListener("message", (event) => {
      const text = String(event.data);
      const renamed = /^\* you are now (\S+)$/.exec(text);
      if (renamed) {
        nick = renamed[1];
      }
      show(text);
    });
    ws.addEventListener("close", (event) => {
      if (socket !== ws) {
        return;
      }
      socket = null;
      if (quitting) {
        setStatus("closed", "you left");
        show("you left the room; reload the page to come back", "local");
        return;
      }
      const seconds = Math.min(MAX_WAIT_SECONDS, 2 ** failures);
      failures += 1;
      const why = whyClosed(event.code);
      setStatus("waiting", `disconnected; reconnecting in ${seconds} s`);
      show(`disconnected (${why}); reconnecting in ${seconds} s`, "local");
      // A little jitter, so that a room full of pages does not come back
      // all in the same instant.
      const jitter = 0.8 + 0.4 * Math.random();
      retryTimer = setTimeout(connect, seconds * 1000 * jitter);
    });
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value;
    if (!text.trim()) {
      return;
    }
    if (encoder.encode(text).length > maxLine) {
      show(`too long: a line may be up to ${maxLine} bytes`, "local");
      return;
    }
    if (socket === null || socket.readyState !== WebSocket.OPEN) {
      show("not connected yet; your line is kept", "local");
      if (retryTimer !== null) {
        clearTimeout(retryTimer);
        connect();
      }
      return;
    }
    quitting = /^\/quit(\s|$)/.test(text);
    socket.send(text);
    input.value = "";
  });

  connect();
})();
