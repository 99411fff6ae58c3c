"""One code execution call: validate the model's input, run it in the container, build the result.

``bash_code_execution`` runs ``bash -c <command>``, ``code_execution`` (the 20250522 tool) runs
``python3 -c <code>``; both report stdout, stderr, the return code and the files the call created in
the outputs directory (stored as downloadable Files). ``text_editor_code_execution`` (``view``,
``create``, ``str_replace``) runs a small Python program inside the sandbox too, so that paths are
resolved there and never on the host.
"""

from __future__ import annotations

import json
import time
from typing import Any

import anyio.to_thread

from wisegate.domain.code_execution.containers import Container, ContainerService, OutputTooLarge
from wisegate.domain.code_execution.sandbox import MAX_ENTRIES, MOUNTS, disk_usage
from wisegate.domain.keys import Principal
from wisegate.protocol.code_execution import BASH, TEXT_EDITOR, run_result, tool_error

EDITOR_COMMANDS = ("view", "create", "str_replace")
MAX_INPUT_BYTES = 1024 * 1024  # a call's command, code or text editor input, in UTF-8
# The command and code reach the sandbox on stdin (one argument may not pass 128 KiB); bash reads it
# all, then runs it with /dev/null as its stdin, as `bash -c` would.
_BASH = ["/bin/bash", "-c", 'eval "$(cat)" </dev/null']
_PYTHON = ["/usr/bin/python3", "-"]

_EDITOR = r"""
import json, os, sys
a = json.load(sys.stdin); c = a["command"]; p = a["path"]
def done(**k): print(json.dumps(k)); sys.exit(0)
def fail(code, message): done(error_code=code, error_message=message)
if c == "create":
    existed = os.path.exists(p)
    try:
        os.makedirs(os.path.dirname(p) or ".", exist_ok=True)
        with open(p, "w", encoding="utf-8") as f: f.write(a.get("file_text") or "")
    except OSError as e: fail("invalid_tool_input", f"{p}: {e.strerror}")
    done(type="text_editor_code_execution_create_result", is_file_update=existed)
if not os.path.exists(p): fail("file_not_found", f"The path {p} does not exist.")
if os.path.isdir(p):
    if c != "view": fail("invalid_tool_input", f"{p} is a directory")
    names = sorted(os.listdir(p)); text = "\n".join(names)
    done(type="text_editor_code_execution_view_result", file_type="text", content=text,
         num_lines=len(names), start_line=1, total_lines=len(names))
if not os.path.isfile(p): fail("invalid_tool_input", f"{p} is not a regular file")
try:
    with open(p, encoding="utf-8", errors="replace") as f: data = f.read()
except OSError as e: fail("invalid_tool_input", f"{p}: {e.strerror}")
lines = data.split("\n")
if c == "view":
    start, end = 1, len(lines)
    r = a.get("view_range")
    if r:
        start, stop = int(r[0]), int(r[1])
        if stop != -1 and stop < start:
            fail("invalid_tool_input", f"Invalid view_range {r}: its end {stop} is before its start {start}")
        end = len(lines) if stop == -1 else stop
    shown = lines[start - 1:end]
    done(type="text_editor_code_execution_view_result", file_type="text", content="\n".join(shown),
         num_lines=len(shown), start_line=start, total_lines=len(lines))
old, new = a.get("old_str") or "", a.get("new_str") or ""
count = data.count(old) if old else 0
if count != 1:
    fail("invalid_tool_input", f"old_str must appear exactly once in {p}; it appears {count} times")
at = data[: data.index(old)].count("\n") + 1
with open(p, "w", encoding="utf-8") as f: f.write(data.replace(old, new, 1))
old_lines, new_lines = old.split("\n"), new.split("\n")
done(type="text_editor_code_execution_str_replace_result", old_start=at, old_lines=len(old_lines),
     new_start=at, new_lines=len(new_lines),
     lines=["-" + x for x in old_lines] + ["+" + x for x in new_lines])
"""


async def execute(
    containers: ContainerService, principal: Principal, container: Container, name: str, given: Any
) -> dict[str, Any]:
    """The result block ``content`` for one call of ``name`` with input ``given``."""
    if name == TEXT_EDITOR:
        return await _editor(containers, container, given)
    field = "command" if name == BASH else "code"
    source = given.get(field) if isinstance(given, dict) else None
    if not isinstance(source, str) or not source.strip():
        return tool_error(name, "invalid_tool_input")
    if "\x00" in source:
        return tool_error(
            name, "invalid_tool_input", f"{field} contains a NUL character, which cannot be run"
        )
    data = source.encode("utf-8", "replace")
    if len(data) > MAX_INPUT_BYTES:
        return tool_error(name, "invalid_tool_input", _too_long(field, len(data)))
    argv = _BASH if name == BASH else _PYTHON
    async with container.lock:
        before = await anyio.to_thread.run_sync(containers.snapshot, container)
        result, started = await _run(containers, container, argv, data)
        if result.timed_out:
            return tool_error(name, "execution_time_exceeded")
        stderr = result.stderr
        if result.disk_exceeded or result.disk_full:
            stderr += "\n" + await anyio.to_thread.run_sync(_disk_note, containers, container, started)
        try:
            records, skipped, refused = await containers.collect(principal, container, before)
        except OutputTooLarge:
            return tool_error(name, "output_file_too_large")
    if skipped:
        shown = ", ".join(skipped[:10]) + (", ..." if len(skipped) > 10 else "")
        stderr += (
            f"\n{len(skipped)} more new files in {MOUNTS['outputs']} were not returned as files: at most "
            f"{containers.max_output_files} are returned per call (skipped: {shown}). Combine them into "
            "an archive if they are all needed."
        )
    if refused:
        stderr += (
            f"\n{len(refused)} new files in {MOUNTS['outputs']} were not returned as files, their names "
            f"cannot be File names: {'; '.join(refused[:10])}{'; ...' if len(refused) > 10 else ''}. Rename "
            'them (printable characters, none of < > : " | ? * \\) to get them back.'
        )
    code = result.return_code if not result.disk_exceeded or result.return_code else 1
    return run_result(name, result.stdout, stderr.lstrip("\n"), code, [r.id for r in records])


def _disk_note(containers: ContainerService, container: Container, started: float) -> str:
    """What the tool result says when the call filled the container's disk."""
    limit = f"Disk quota of {containers.sandbox.limits.disk_bytes} bytes or {MAX_ENTRIES} files"
    if containers.sandbox.hard:
        return f"{limit} reached: writes past it failed; delete files to make room."
    containers.remove_since(container, started)
    return f"{limit} exceeded: the files this call wrote were removed."


async def _editor(containers: ContainerService, container: Container, given: Any) -> dict[str, Any]:
    if not isinstance(given, dict) or given.get("command") not in EDITOR_COMMANDS:
        return tool_error(TEXT_EDITOR, "invalid_tool_input", f"command must be one of {EDITOR_COMMANDS}")
    if not isinstance(given.get("path"), str) or not given["path"]:
        return tool_error(TEXT_EDITOR, "invalid_tool_input", "path is required")
    data = json.dumps(given).encode()
    if len(data) > MAX_INPUT_BYTES:
        return tool_error(TEXT_EDITOR, "invalid_tool_input", _too_long("input", len(data)))
    async with container.lock:
        result, started = await _run(containers, container, ["/usr/bin/python3", "-c", _EDITOR], data)
        if result.disk_exceeded:
            note = await anyio.to_thread.run_sync(_disk_note, containers, container, started)
            if not containers.sandbox.hard or result.return_code:
                return tool_error(TEXT_EDITOR, "invalid_tool_input", note)
    if result.timed_out:
        return tool_error(TEXT_EDITOR, "execution_time_exceeded")
    try:
        answer = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return tool_error(TEXT_EDITOR, "unavailable", result.stderr.strip()[-500:] or None)
    if not isinstance(answer, dict):
        return tool_error(TEXT_EDITOR, "unavailable")
    if "error_code" in answer:
        return tool_error(TEXT_EDITOR, str(answer["error_code"]), answer.get("error_message"))
    return answer


def _too_long(field: str, size: int) -> str:
    return (
        f"{field} is {size} bytes, more than the {MAX_INPUT_BYTES} bytes a call may pass; write large "
        "content to a file in several calls (or upload it with container_upload) instead"
    )


async def _run(
    containers: ContainerService, container: Container, argv: list[str], stdin: bytes
) -> tuple[Any, float]:
    used = 0
    if not containers.sandbox.hard:  # with a tmpfs the kernel counts; no need to walk the files
        used, _ = await anyio.to_thread.run_sync(disk_usage, container.root)
    started = time.time()
    result = await containers.sandbox.run(container.root, argv, used, stdin, container.workspace_id)
    container.run_seconds += result.seconds
    return result, started
