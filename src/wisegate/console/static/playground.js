// The workbench: a conversation of turns kept in the form's `turns` field (JSON), edited here (add, edit,
// delete, an assistant turn last is a prefill); Send posts the form with `accept: text/event-stream` and
// reads the Claude API's own SSE events as they arrive (Stop aborts the read, which ends the request, and
// keeps the text received so far as the assistant turn); the answer becomes the next assistant turn, and its tool_use blocks can be answered with a tool_result.
// Count tokens and Get code post the same form to their endpoints. Without this script the form still
// works and the server renders the whole answer.
"use strict";
(function () {
  const form = document.getElementById("playground");
  if (!form || !window.fetch || !window.TextDecoder || !window.AbortController) return;
  const $ = (id) => document.getElementById(id);
  const output = $("playground-output");
  const usage = $("playground-usage");
  const cost = $("playground-cost");
  const error = $("playground-error");
  const turnsField = $("turns");
  const list = $("conversation");
  const toolUses = $("tool-uses");
  const send = form.querySelector("button[type=submit]:not([formaction])");
  const stop = $("stop");
  const message = form.elements.namedItem("message");
  let turns = [];
  try { turns = JSON.parse(turnsField.value || "[]"); } catch (e) { turns = []; }
  let controller = null;

  function save() { turnsField.value = JSON.stringify(turns); }
  function show(text) { error.textContent = text; error.hidden = false; }

  function render() {
    list.textContent = "";
    turns.forEach(function (turn, index) {
      const item = document.createElement("li");
      item.className = "turn";
      item.dataset.role = turn.role;
      const role = document.createElement("strong");
      role.textContent = turn.role;
      const text = document.createElement("textarea");
      const structured = typeof turn.content !== "string";
      text.value = structured ? JSON.stringify(turn.content, null, 2) : turn.content;
      text.rows = Math.min(8, text.value.split("\n").length + 1);
      text.setAttribute("aria-label", "Turn " + (index + 1) + " (" + turn.role + ")");
      text.addEventListener("change", function () {
        if (structured) {
          try { turn.content = JSON.parse(text.value); } catch (e) { show("Turn " + (index + 1) + ": not valid JSON"); return; }
        } else {
          turn.content = text.value;
        }
        save();
      });
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "danger";
      remove.textContent = "Delete turn";
      remove.addEventListener("click", function () { turns.splice(index, 1); save(); render(); });
      item.append(role, text, remove);
      list.append(item);
    });
  }

  function contentOf(raw) {
    const text = raw.trim();
    if (text.startsWith("[")) {
      try { return JSON.parse(text); } catch (e) { /* plain text that starts with a bracket */ }
    }
    return raw;
  }

  $("add-turn").hidden = false;
  $("add-turn-button").addEventListener("click", function () {
    const content = $("add-turn-content").value;
    if (!content.trim()) return;
    turns.push({ role: $("add-turn-role").value, content: contentOf(content) });
    $("add-turn-content").value = "";
    save();
    render();
  });
  $("clear-conversation").addEventListener("click", function () { turns = []; save(); render(); });

  function answerTurn(blocks) {
    const texts = blocks.filter((b) => b.type === "text");
    if (texts.length === blocks.length) return texts.map((b) => b.text).join("");
    return blocks;
  }

  function showToolUses(blocks) {
    toolUses.textContent = "";
    blocks.filter((b) => b.type === "tool_use").forEach(function (block) {
      const box = document.createElement("div");
      box.className = "card tool-use";
      box.dataset.toolUseId = block.id;
      const title = document.createElement("p");
      title.textContent = "Tool call " + block.name + " " + JSON.stringify(block.input);
      const result = document.createElement("textarea");
      result.rows = 2;
      result.setAttribute("aria-label", "Result of " + block.name);
      const answer = document.createElement("button");
      answer.type = "button";
      answer.textContent = "Send tool result";
      answer.addEventListener("click", function () {
        turns.push({ role: "user", content: [{ type: "tool_result", tool_use_id: block.id, content: result.value }] });
        save();
        render();
        form.requestSubmit(send);
      });
      box.append(title, result, answer);
      toolUses.append(box);
    });
  }

  // The question asked (if any) and the answer's blocks become turns; an answer to a prefill (an
  // assistant turn last, no new question) continues it.
  function keep(asked, answerBlocks) {
    if (asked) turns.push({ role: "user", content: asked });
    const answer = answerTurn(answerBlocks);
    const last = turns[turns.length - 1];
    if (!asked && last && last.role === "assistant" && typeof last.content === "string" && typeof answer === "string") {
      last.content += answer;
    } else {
      turns.push({ role: "assistant", content: answer });
    }
    message.value = "";
    save();
    render();
  }

  async function postForm(action) {
    save();
    const response = await fetch(action, { method: "POST", body: new FormData(form), credentials: "same-origin" });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error ? body.error.message : "The console answered " + response.status + ".");
    return body;
  }

  $("count-tokens").addEventListener("click", async function () {
    error.hidden = true;
    try {
      const counted = await postForm("/console/playground/count_tokens");
      $("token-count").textContent = counted.input_tokens + " input tokens";
    } catch (failure) { show(String(failure.message || failure)); }
  });

  $("get-code").addEventListener("click", async function () {
    error.hidden = true;
    try {
      const code = await postForm("/console/playground/code");
      for (const lang of ["curl", "python", "typescript"]) $("code-" + lang).textContent = code[lang];
      $("code").hidden = false;
    } catch (failure) { show(String(failure.message || failure)); }
  });

  stop.addEventListener("click", function () { if (controller) controller.abort(); });

  form.addEventListener("submit", async function (event) {
    if (event.submitter && event.submitter.getAttribute("formaction")) return; // Save prompt: a plain post
    event.preventDefault();
    save();
    output.textContent = "";
    usage.textContent = "";
    cost.textContent = "";
    toolUses.textContent = "";
    error.hidden = true;
    send.disabled = true;
    stop.hidden = false;
    form.dataset.state = "streaming";
    controller = new AbortController();
    const asked = message.value.trim();
    const blocks = [];
    let finished = false;
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        headers: { accept: "text/event-stream" },
        credentials: "same-origin",
        signal: controller.signal,
      });
      if (!response.ok || !response.body) throw new Error("The console answered " + response.status + ".");
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      const handle = function (name, data) {
        if (name === "content_block_start") {
          const block = Object.assign({}, data.content_block);
          if (block.type === "tool_use") block.partial = "";
          blocks[data.index] = block;
        } else if (name === "content_block_delta") {
          const block = blocks[data.index];
          if (data.delta.type === "text_delta") { block.text += data.delta.text; output.textContent += data.delta.text; }
          else if (data.delta.type === "input_json_delta") block.partial += data.delta.partial_json;
        } else if (name === "content_block_stop") {
          const block = blocks[data.index];
          if (block.type === "tool_use") { block.input = block.partial ? JSON.parse(block.partial) : {}; delete block.partial; }
        } else if (name === "message_start") {
          usage.dataset.input = data.message.usage.input_tokens;
        } else if (name === "message_delta") {
          usage.textContent = (usage.dataset.input || 0) + " input tokens · " + data.usage.output_tokens +
            " output tokens · stop reason " + data.delta.stop_reason;
        } else if (name === "message_stop") {
          finished = true;
        } else if (name === "wisegate_cost") {
          cost.textContent = "cost " + data.cost_usd;
        } else if (name === "error") {
          show(data.error.message);
        }
      };
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
      if (finished) {
        keep(asked, blocks.filter(Boolean));
        showToolUses(blocks.filter(Boolean));
      }
    } catch (failure) {
      if (failure.name === "AbortError") {
        usage.textContent = "stopped";
        // What was generated before Stop was billed and shown: it stays in the conversation (its text
        // only — a half-streamed tool call could not be answered).
        const partial = blocks.filter((b) => b && b.type === "text" && b.text);
        if (partial.length) keep(asked, partial);
      } else show(String(failure.message || failure));
    } finally {
      send.disabled = false;
      stop.hidden = true;
      controller = null;
      form.dataset.state = finished ? "done" : "stopped";
    }
  });

  render();
})();
