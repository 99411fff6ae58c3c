// The playground streams: the form is posted with `accept: text/event-stream` and the Claude API's own
// SSE events are read as they arrive; text deltas are appended to the answer. Without this script the
// form still works and the server renders the whole answer.
"use strict";
(function () {
  const form = document.getElementById("playground");
  if (!form || !window.fetch || !window.TextDecoder) return;
  const output = document.getElementById("playground-output");
  const usage = document.getElementById("playground-usage");
  const error = document.getElementById("playground-error");
  const button = form.querySelector("button[type=submit]");

  function handle(name, data) {
    if (name === "content_block_delta" && data.delta && data.delta.type === "text_delta") {
      output.textContent += data.delta.text;
    } else if (name === "message_start") {
      usage.dataset.input = data.message.usage.input_tokens;
    } else if (name === "message_delta") {
      usage.textContent = (usage.dataset.input || 0) + " input tokens · " + data.usage.output_tokens +
        " output tokens · stop reason " + data.delta.stop_reason;
    } else if (name === "error") {
      error.textContent = data.error.message;
      error.hidden = false;
    }
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    output.textContent = "";
    usage.textContent = "";
    error.hidden = true;
    button.disabled = true;
    form.dataset.state = "streaming";
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        headers: { accept: "text/event-stream" },
        credentials: "same-origin",
      });
      if (!response.ok || !response.body) throw new Error("The console answered " + response.status + ".");
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let name = "message";
          let data = "";
          for (const line of frame.split("\n")) {
            if (line.startsWith("event: ")) name = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (data) handle(name, JSON.parse(data));
        }
      }
    } catch (failure) {
      error.textContent = String(failure.message || failure);
      error.hidden = false;
    } finally {
      button.disabled = false;
      form.dataset.state = "done";
    }
  });
})();
