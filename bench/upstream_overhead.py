"""Gateway overhead: Wisegate (auth + routing + usage records on) in front of a mock Anthropic upstream,
against calling the mock directly and against a bare 50-line Starlette + aiohttp passthrough.

Every server runs in its own process on 127.0.0.1; this process is the load generator (a raw asyncio
HTTP/1.1 keep-alive client, several times faster than the servers it measures). Runs are bounded in
time. Prints requests/s and latency percentiles per target, mode and concurrency, the latency
Wisegate adds over the direct call, the CPU the server used (all its processes), and resident memory
per open stream.

    .venv/bin/python bench/upstream_overhead.py --seconds 6 --rounds 3 --concurrency 1 16 64

``--workers 1 2 4`` runs one Wisegate per count (``wisegate serve --workers N``), measured side by
side in the same rounds (``wisegate×N`` in the table). ``--tree before=/path/to/src`` also runs
Wisegate from another source tree (``wisegate[before]``), in the same interleaved rounds: a before /
after comparison in one sitting (``git archive <commit> src | tar -x -C /tmp/before`` makes one).

``--targets ... litellm --litellm /work/litellm-venv/bin/litellm`` also runs the LiteLLM proxy (from its
own virtualenv; LiteLLM is not a dependency of this project) relaying ``/v1/messages`` to the same mock.
``--pin-gateways`` pins every gateway's process tree to one CPU and the mock and this load generator
to the others, so that the gateways' CPU per request compares like with like.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
PYTHON = sys.executable
MODEL = "claude-sonnet-4-5"

MESSAGE = json.dumps(
    {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "text", "text": "Hello! How can I help you today?"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 25,
            "output_tokens": 12,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }
).encode()


def _sse_events() -> list[bytes]:
    def frame(kind: str, data: dict[str, Any]) -> bytes:
        return b"event: " + kind.encode() + b"\ndata: " + json.dumps(data).encode() + b"\n\n"

    start = json.loads(MESSAGE)
    start.update(content=[], stop_reason=None)
    start["usage"]["output_tokens"] = 1
    events = [frame("message_start", {"type": "message_start", "message": start})]
    events.append(
        frame(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        )
    )
    for word in ("Hello!", " How", " can", " I", " help", " you", " today?") * 3:
        delta = {"type": "text_delta", "text": word}
        events.append(
            frame("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
        )
    events.append(frame("content_block_stop", {"type": "content_block_stop", "index": 0}))
    events.append(
        frame(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 21},
            },
        )
    )
    events.append(frame("message_stop", {"type": "message_stop"}))
    return events


# ---------------------------------------------------------------- mock upstream (raw asyncio HTTP/1.1)


class _MockProtocol(asyncio.Protocol):
    hold_seconds = 0.0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].lower()
            length = 0
            for line in head.split(b"\r\n"):
                if line.startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if len(self.buffer) < head_end + 4 + length:
                return
            body = self.buffer[head_end + 4 : head_end + 4 + length]
            self.buffer = self.buffer[head_end + 4 + length :]
            hold = HOLD in body
            if b'"stream":true' in body.replace(b" ", b""):
                asyncio.ensure_future(self._stream(hold))
            else:
                self.transport.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                    + str(len(MESSAGE)).encode()
                    + b"\r\n\r\n"
                    + MESSAGE
                )

    async def _stream(self, hold: bool) -> None:
        events = SSE_EVENTS
        write = self.transport.write
        write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        # A held stream sends up to the first text delta: LiteLLM opens its response only then.
        split = 3 if hold else 1
        head = b"".join(events[:split])
        write(b"%x\r\n%s\r\n" % (len(head), head))
        await asyncio.sleep(60 if hold else 0)
        rest = b"".join(events[split:])
        if not self.transport.is_closing():
            write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(rest), rest))


SSE_EVENTS = _sse_events()
# A request whose body carries this (as metadata.user_id, a field every gateway relays; none of them
# forwards the client's own headers) gets its stream held open after message_start.
HOLD = b"bench-hold-stream"


async def _mock(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_MockProtocol, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


# ---------------------------------------------------------------- bare passthrough (the reference point)

BARE = """
import aiohttp, sys
from starlette.applications import Starlette
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
import uvicorn

UPSTREAM = sys.argv[2]
session = None

async def messages(request):
    global session
    if session is None:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
    body = await request.body()
    upstream = await session.post(UPSTREAM + "/v1/messages", data=body,
                                  headers={"content-type": "application/json", "x-api-key": "k"})
    if "event-stream" in upstream.headers.get("content-type", ""):
        async def relay():
            async for chunk in upstream.content.iter_any():
                yield chunk
            upstream.release()
        return StreamingResponse(relay(), media_type="text/event-stream")
    data = await upstream.read()
    return Response(data, status_code=upstream.status, media_type="application/json")

app = Starlette(routes=[Route("/v1/messages", messages, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


# ---------------------------------------------------------------- load generator


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer


async def _open(port: int) -> Conn:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return Conn(reader, writer)


async def request(conn: Conn, raw: bytes) -> tuple[float, float, int]:
    """Send one request; (seconds to first body byte, seconds to last byte, status)."""
    started = time.perf_counter()
    conn.writer.write(raw)
    head = await conn.reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    first = time.perf_counter() - started
    if b"transfer-encoding: chunked" in lower:
        got_first = False
        while True:
            size_line = await conn.reader.readuntil(b"\r\n")
            size = int(size_line.strip(), 16)
            if not got_first:
                first, got_first = time.perf_counter() - started, True
            if size == 0:
                await conn.reader.readexactly(2)
                break
            await conn.reader.readexactly(size + 2)
    else:
        index = lower.find(b"content-length:")
        length = int(lower[index + 15 : lower.find(b"\r\n", index)]) if index >= 0 else 0
        await conn.reader.readexactly(length)
    return first, time.perf_counter() - started, status


def build(port: int, key: str, stream: bool, hold: bool = False) -> bytes:
    fields: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 256,
        "stream": stream,
        "messages": [{"role": "user", "content": "Hello"}],
    }
    if hold:
        fields["metadata"] = {"user_id": HOLD.decode()}
    body = json.dumps(fields).encode()
    return (
        f"POST /v1/messages HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nx-api-key: {key}\r\n"
        f"anthropic-version: 2023-06-01\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body


async def load(
    port: int, key: str, stream: bool, concurrency: int, seconds: float, pid: int
) -> dict[str, Any]:
    """Run ``concurrency`` keep-alive clients for ``seconds``; raw samples in seconds, and the CPU
    seconds the server ``pid`` (its process tree) used meanwhile. The connections are opened and warmed
    before the clock and the CPU count start (a slow server's warm-up would otherwise eat the run)."""
    raw = build(port, key, stream)
    firsts: list[float] = []
    lasts: list[float] = []
    errors = 0
    conns = await asyncio.gather(*(_open(port) for _ in range(concurrency)))
    for _ in range(3):  # warm-up
        await asyncio.gather(*(request(conn, raw) for conn in conns))
    cpu_before = cpu_seconds(pid)
    deadline = time.perf_counter() + seconds

    async def worker(conn: Conn) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            first, last, status = await request(conn, raw)
            if status != 200:
                errors += 1
            firsts.append(first)
            lasts.append(last)

    began = time.perf_counter()
    await asyncio.gather(*(worker(conn) for conn in conns))
    elapsed, cpu = time.perf_counter() - began, cpu_seconds(pid) - cpu_before
    for conn in conns:
        conn.writer.close()
    return {"firsts": firsts, "lasts": lasts, "errors": errors, "elapsed": elapsed, "cpu": cpu}


async def check(port: int, key: str, name: str) -> None:
    """One JSON and one streamed request through ``name``: both must answer 200 (the mock's answers
    accepted end to end), or the bench stops here instead of timing error responses."""
    conn = await _open(port)
    for stream in (False, True):
        for _ in range(3):  # the first requests also pay for lazy imports (LiteLLM: seconds)
            _, _, status = await request(conn, build(port, key, stream))
            if status != 200:
                raise RuntimeError(f"{name}: {'stream' if stream else 'json'} request answered {status}")
    conn.writer.close()


def summarize(runs: list[dict[str, Any]]) -> dict[str, float]:
    firsts = sorted(x for r in runs for x in r["firsts"])
    lasts = sorted(x for r in runs for x in r["lasts"])
    if not lasts:  # a server too slow to answer one request within the run (a saturated machine)
        nan = float("nan")
        return dict.fromkeys(("p50", "p99", "ttfb50", "ttfb99"), nan) | {"rps": 0.0, "n": 0, "errors": 0}

    def pct(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))] * 1000

    return {
        "rps": len(lasts) / sum(r["elapsed"] for r in runs),
        "p50": statistics.median(lasts) * 1000,
        "p99": pct(lasts, 0.99),
        "ttfb50": statistics.median(firsts) * 1000,
        "ttfb99": pct(firsts, 0.99),
        "n": len(lasts),
        "errors": sum(r["errors"] for r in runs),
    }


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (a server's worker processes, theirs in turn)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    pids = [pid]
    for one in pids:  # grows while it is walked: breadth first
        pids.extend(children.get(one, []))
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process and its descendants have used, the exited ones that were
    waited for included (robust to a busy machine, unlike wall time)."""
    total = 0.0
    for one in _tree(pid):
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(field) for field in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return total


def rss_kb(pid: int) -> int:
    total = 0
    for one in _tree(pid):
        try:
            lines = Path(f"/proc/{one}/status").read_text().splitlines()
        except OSError:
            continue
        total += sum(int(line.split()[1]) for line in lines if line.startswith("VmRSS:"))
    return total


async def memory_per_stream(port: int, key: str, pid: int, streams: int) -> tuple[float, int]:
    """Resident-set growth per stream held open, and how many of ``streams`` were (a stream that is
    refused, cut or not held is counted out instead of failing the run with an IncompleteReadError)."""
    raw = build(port, key, True, hold=True)
    conns = [await _open(port) for _ in range(streams)]
    warm = build(port, key, True)
    for conn in conns[:20]:  # warm the paths once; request() reads JSON errors and streams alike
        await request(conn, warm)
    await asyncio.sleep(0.5)
    before = rss_kb(pid)
    for conn in conns:
        conn.writer.write(raw)
    opened = await asyncio.gather(
        *(asyncio.wait_for(c.reader.readuntil(b"message_start"), 30) for c in conns), return_exceptions=True
    )
    await asyncio.sleep(0.5)
    after = rss_kb(pid)
    # Held: opened, and not finished (a gateway that dropped the hold marker lets the stream end).
    ended = await asyncio.gather(
        *(asyncio.wait_for(c.reader.readuntil(b"message_stop"), 0.2) for c in conns), return_exceptions=True
    )
    held = sum(
        1
        for first, last in zip(opened, ended, strict=True)
        if not isinstance(first, BaseException) and isinstance(last, TimeoutError)
    )
    for conn in conns:
        conn.writer.close()
    return (after - before) / max(1, held), held


# ---------------------------------------------------------------- orchestration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(cpus: set[int] | None) -> dict[str, Any]:
    """Popen arguments that start a process on ``cpus`` (its threads and children inherit them)."""
    if not cpus:
        return {}
    return {"preexec_fn": lambda: os.sched_setaffinity(0, cpus)}


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on {port} exited early")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


# Gateway overhead as the issue defines it: auth + routing + usage record. Anthropic's tier limits
# (Tier 1: 50 requests/min) would turn the load into 429s, so by default limits are off.
LIMITS_OFF = """
[limits]
enabled = false
"""
# --limits: everything on. One tier whose rate limits the load never reaches, under a monthly spend cap
# (so every priced request holds its worst case from a spend lease), and Anthropic's Sonnet prices.
LIMITS_ON = """
[limits]
enabled = true
model_classes = { all = ["*"] }

[[limits.tiers]]
name = "bench"
monthly_spend_cap_usd = "1000000"
rate_limits = { all = { rpm = 100000000, itpm = 100000000000, otpm = 100000000000 } }
"""


def start_wisegate(
    tmp: Path,
    upstream_port: int,
    port: int,
    log_level: str,
    limits: bool,
    workers: int,
    redis_url: str | None,
    tree: tuple[str, str] | None = None,
    cpus: set[int] | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    tmp = tmp / f"wisegate-{workers}-{tree[0] if tree else ''}"
    tmp.mkdir()
    config = tmp / "wisegate.toml"
    config.write_text(
        f"""
[backends.anthropic]
type = "anthropic"
options = {{ base_url = "http://127.0.0.1:{upstream_port}", api_key = "sk-ant-bench" }}

[[models]]
id = "{MODEL}"
backend = "anthropic"
"""
        + (LIMITS_ON if limits else LIMITS_OFF)
    )
    env = {**os.environ, "WISEGATE_CONFIG": str(config), "WISEGATE_DATA_DIR": str(tmp / "data"),
           "WISEGATE_LOG_LEVEL": log_level, "WISEGATE_PORT": str(port),
           "WISEGATE_WORKERS": str(workers)}  # fmt: skip
    if redis_url:
        prefix = f"bench-{os.getpid()}-{workers}-{tree[0] if tree else ''}"
        env.update(WISEGATE_REDIS_URL=redis_url, WISEGATE_REDIS_PREFIX=prefix)
    if tree:  # that tree's package first on the path, ahead of the installed one
        env["PYTHONPATH"] = tree[1]
    wisegate = str(Path(PYTHON).parent / "wisegate")
    subprocess.run([wisegate, "migrate"], env=env, check=True, capture_output=True)
    created = subprocess.run(
        [wisegate, "keys", "create", "--name", "bench"], env=env, check=True, capture_output=True
    )
    key = created.stdout.decode().split()[-1]
    proc = subprocess.Popen(
        [wisegate, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **pinned(cpus)
    )
    wait_port(port, proc)
    deadline = time.monotonic() + 120  # every worker spawned, then a few seconds to start its app
    while workers > 1 and len(_spawned(proc.pid)) < workers and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(3.0 if workers > 1 else 0)
    return proc, key


# The LiteLLM proxy as its docs set it up for Anthropic: one model entry, no database, no callbacks.
# A master key (1.108 refuses to start without one), sent as x-api-key like Wisegate's key.
LITELLM = """
model_list:
  - model_name: {model}
    litellm_params:
      model: anthropic/{model}
      api_base: http://127.0.0.1:{upstream_port}
      api_key: sk-ant-bench
litellm_settings:
  set_verbose: false
general_settings:
  master_key: {master_key}
"""


def start_litellm(
    tmp: Path, executable: str, upstream_port: int, port: int, cpus: set[int] | None
) -> tuple[subprocess.Popen[bytes], str]:
    """``litellm --config`` on ``port`` (one uvicorn worker), ``/v1/messages`` relayed to the mock;
    the process and its master key."""
    key = f"sk-bench-{secrets.token_hex(16)}"
    config = tmp / "litellm.yaml"
    config.write_text(LITELLM.format(model=MODEL, upstream_port=upstream_port, master_key=key))
    env = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "LITELLM_MASTER_KEY", "PYTHONPATH")
    }
    # Errors only; the price map from the package, not fetched from GitHub at start.
    env.update(LITELLM_LOG="ERROR", LITELLM_LOCAL_MODEL_COST_MAP="True")
    with tmp.joinpath("litellm.log").open("wb") as log:
        proc = subprocess.Popen(
            [executable, "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
             "--num_workers", "1"],
            env=env, stdout=subprocess.DEVNULL, stderr=log, **pinned(cpus),
        )  # fmt: skip
    try:
        wait_port(port, proc, timeout=180)  # the import alone takes several seconds
    except RuntimeError:
        sys.stderr.write(tmp.joinpath("litellm.log").read_text()[-4000:])
        raise
    return proc, key


def _spawned(pid: int) -> list[int]:
    return [p for p in _tree(pid)[1:] if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", nargs="?", default="bench", choices=["bench", "mock"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per cell")
    parser.add_argument("--log-level", default="INFO", help="Wisegate's log level during the run")
    parser.add_argument("--targets", nargs="+", default=["direct", "bare", "wisegate"])
    parser.add_argument("--limits", action="store_true", help="rate limits and a spend cap on too")
    parser.add_argument("--workers", type=int, nargs="+", default=[1], help="one Wisegate per count")
    parser.add_argument("--redis-url", default=None, help="rate-limit buckets there (--limits with workers)")
    parser.add_argument(
        "--tree",
        action="append",
        default=[],
        metavar="NAME=SRC",
        help="also run Wisegate from the source tree SRC (a src/ directory), as wisegate[NAME]",
    )
    parser.add_argument(
        "--litellm",
        default=None,
        metavar="PATH",
        help="the `litellm` executable of a virtualenv with litellm[proxy] (for the litellm target)",
    )
    parser.add_argument(
        "--pin-gateways",
        action="store_true",
        help="each gateway on the last CPU, the mock and the load generator on the others",
    )
    args = parser.parse_args()
    if "litellm" in args.targets and not args.litellm:
        parser.error("the litellm target needs --litellm PATH")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if args.role == "mock":
        asyncio.run(_mock(args.port))
        return

    gateway_cpus: set[int] | None = None
    if args.pin_gateways:
        allowed = sorted(os.sched_getaffinity(0))
        if len(allowed) < 2:
            parser.error("--pin-gateways needs two CPUs")
        gateway_cpus = {allowed[-1]}
        os.sched_setaffinity(0, set(allowed[:-1]))  # this process, and the mock it starts
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        try:
            mock_port, bare_port = free_port(), free_port()
            quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
            mock = subprocess.Popen([PYTHON, str(HERE), "mock", "--port", str(mock_port)], **quiet)
            procs.append(mock)
            wait_port(mock_port, mock)
            bare_file = tmp / "bare.py"
            bare_file.write_text(BARE)
            bare = subprocess.Popen(
                [PYTHON, str(bare_file), str(bare_port), f"http://127.0.0.1:{mock_port}"],
                **quiet,
                **pinned(gateway_cpus),
            )
            procs.append(bare)
            wait_port(bare_port, bare)
            ports = {"direct": mock_port, "bare": bare_port}
            pids = {"direct": mock.pid, "bare": bare.pid}
            keys = {"direct": "k", "bare": "k"}
            targets = [t for t in args.targets if t not in ("wisegate", "litellm")]
            trees: list[tuple[str, str] | None] = [None]
            trees += [(name, str(Path(src).resolve())) for name, src in (t.split("=", 1) for t in args.tree)]
            for workers in args.workers if "wisegate" in args.targets else []:
                for tree in trees:
                    name = "wisegate" if workers == 1 else f"wisegate×{workers}"
                    name += f"[{tree[0]}]" if tree else ""
                    ports[name] = free_port()
                    wisegate, keys[name] = start_wisegate(
                        tmp,
                        mock_port,
                        ports[name],
                        args.log_level,
                        args.limits,
                        workers,
                        args.redis_url,
                        tree,
                        gateway_cpus,
                    )
                    procs.append(wisegate)
                    pids[name] = wisegate.pid
                    targets.append(name)
            if "litellm" in args.targets:
                ports["litellm"] = free_port()
                litellm, keys["litellm"] = start_litellm(
                    tmp, args.litellm, mock_port, ports["litellm"], gateway_cpus
                )
                procs.append(litellm)
                pids["litellm"] = litellm.pid
                targets.append("litellm")
            for target in targets:
                asyncio.run(check(ports[target], keys[target], target))
            print(
                f"# {time.strftime('%Y-%m-%d')}  {os.cpu_count()} cores, {args.seconds:g} s per run, "
                f"limits {'on (spend cap, leases)' if args.limits else 'off'}, "
                + (
                    f"gateways pinned to CPU {min(gateway_cpus)}, mock and load generator to "
                    f"{sorted(os.sched_getaffinity(0))}"
                    if gateway_cpus
                    else "not pinned"
                )
            )
            print(
                "| mode | conc | target | req/s | req/s per round | last byte p50 / p99 ms "
                "| first byte p50 / p99 ms | added p50 ms (last / first byte) | server CPU µs/request "
                "| cores busy | n | err |"
            )
            print("|---|---|---|---|---|---|---|---|---|---|---|---|")
            for stream in (False, True):
                for concurrency in args.concurrency:
                    runs: dict[str, list[dict[str, Any]]] = {t: [] for t in targets}
                    cpu: dict[str, float] = dict.fromkeys(targets, 0.0)
                    for round_number in range(args.rounds):
                        # Interleaved, so drifting machine load hits all alike; every other round in
                        # reverse order, so no target always runs first.
                        for target in targets if round_number % 2 == 0 else targets[::-1]:
                            run = asyncio.run(
                                load(
                                    ports[target],
                                    keys[target],
                                    stream,
                                    concurrency,
                                    args.seconds / args.rounds,
                                    pids[target],
                                )
                            )
                            runs[target].append(run)
                            cpu[target] += run["cpu"]
                    summaries = {target: summarize(runs[target]) for target in targets}
                    base = summaries.get("direct", {})  # "added" needs the direct target in the run
                    for target in targets:
                        r = summaries[target]
                        busy = cpu[target] / sum(run["elapsed"] for run in runs[target])
                        added = (
                            f"{r['p50'] - base['p50']:.2f} / {r['ttfb50'] - base['ttfb50']:.2f}"
                            if base
                            else "-"
                        )
                        mode = "stream" if stream else "json"
                        rounds = " / ".join(
                            f"{len(run['lasts']) / run['elapsed']:.0f}" for run in runs[target]
                        )
                        print(
                            f"| {mode} | {concurrency} | {target} | {r['rps']:.0f} | {rounds} | "
                            f"{r['p50']:.2f} / {r['p99']:.2f} | {r['ttfb50']:.2f} / {r['ttfb99']:.2f} | "
                            f"{added} | "
                            f"{cpu[target] / max(1.0, r['n']) * 1e6:.0f} | {busy:.2f} | {r['n']:.0f} | "
                            f"{r['errors']:.0f} |",
                            flush=True,
                        )
            gateways = [t for t in targets if t != "direct"]
            print("\n| target | resident memory (RSS) MB, after the load | processes |\n|---|---|---|")
            for name in gateways:
                print(f"| {name} | {rss_kb(pids[name]) / 1024:.1f} | {len(_tree(pids[name]))} |")
            for name in gateways if args.streams else []:
                per_stream, held = asyncio.run(
                    memory_per_stream(ports[name], keys[name], pids[name], args.streams)
                )
                print(
                    f"\n{name}: resident memory per open stream ({held} of {args.streams} held open): "
                    f"{per_stream:.1f} KB",
                    flush=True,
                )
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGINT)
            for proc in procs:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    main()
