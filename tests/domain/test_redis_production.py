"""The limiter's Redis client against production set-ups, run locally from Debian's redis-server: a
TLS endpoint (with a certificate the test makes, a password, and a client certificate), and a Sentinel
set-up (a master, a replica and a sentinel) through a failover."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from wisegate.domain.limits import Bucket
from wisegate.domain.limits.redis_store import RedisLimiter
from wisegate.domain.limits.resp import RespClient, RespError


class Redis:
    """redis-server processes in a temporary directory, stopped at the end."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, *args: str, config: str | None = None, ping: list[str] | None = None
    ) -> subprocess.Popen[bytes]:
        command = ["redis-server"]
        if config is not None:
            path = self.directory / f"conf-{len(self.procs)}.conf"
            path.write_text(config)
            command.append(str(path))
        command += [*args, "--dir", str(self.directory), "--save", "", "--appendonly", "no"]
        log = (self.directory / f"redis-{len(self.procs)}.log").open("ab")
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        if ping is not None:
            deadline = time.monotonic() + 20
            while subprocess.run(["redis-cli", *ping, "ping"], capture_output=True).stdout.strip() != b"PONG":
                assert proc.poll() is None and time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[Redis]:
    servers = Redis(tmp_path)
    try:
        yield servers
    finally:
        servers.stop()


def _certificate(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def _take(url: str) -> bool:
    limiter = RedisLimiter(url, f"wgtest-{uuid.uuid4().hex[:8]}")
    try:
        bucket = Bucket(f"b{uuid.uuid4().hex}", "requests", "organization", "x", "c", 60)
        return (await limiter.take([(bucket, 1)])).admitted
    finally:
        await limiter.close()


def test_tls_with_a_password_and_a_client_certificate(redis: Redis, tmp_path: Path) -> None:
    server_cert, server_key = _certificate(tmp_path, "server")
    client_cert, client_key = _certificate(tmp_path, "client")
    port = free_port()
    redis.start(
        "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(server_cert),
        "--tls-key-file", str(server_key), "--tls-ca-cert-file", str(client_cert),
        "--tls-auth-clients", "yes", "--requirepass", "tls-pw",
        ping=["--tls", "--cacert", str(server_cert), "--cert", str(client_cert), "--key", str(client_key),
              "-p", str(port), "-a", "tls-pw", "--no-auth-warning"],
    )  # fmt: skip
    base = f"rediss://:tls-pw@127.0.0.1:{port}/2"
    tls = f"ssl_ca_certs={server_cert}&ssl_certfile={client_cert}&ssl_keyfile={client_key}"
    assert asyncio.run(_take(f"{base}?{tls}"))

    async def refused(url: str) -> str:
        client = RespClient(url, timeout=3)
        try:
            with pytest.raises(RespError) as caught:
                await client.call("PING")
            return str(caught.value)
        finally:
            await client.close()

    # The server's certificate is not one the system trusts.
    assert "certificate was not verified (self-signed certificate" in asyncio.run(
        refused(f"{base}?ssl_certfile={client_cert}&ssl_keyfile={client_key}")
    )
    # No client certificate: the server hangs up during the handshake or right after.
    assert asyncio.run(refused(f"{base}?ssl_ca_certs={server_cert}"))
    # A wrong password is Redis's own error reply.
    wrong = f"rediss://:nope@127.0.0.1:{port}/0?{tls}"
    assert "WRONGPASS" in asyncio.run(refused(wrong)) or "invalid" in asyncio.run(refused(wrong))


def test_sentinel_finds_the_master_and_follows_a_failover(redis: Redis) -> None:
    master_port, replica_port, sentinel_port = free_port(), free_port(), free_port()
    master = redis.start("--port", str(master_port), ping=["-p", str(master_port)])
    redis.start(
        "--port",
        str(replica_port),
        "--replicaof",
        "127.0.0.1",
        str(master_port),
        ping=["-p", str(replica_port)],
    )
    redis.start(
        "--sentinel", "--port", str(sentinel_port),
        config=(
            f"sentinel monitor wgmaster 127.0.0.1 {master_port} 1\n"
            "sentinel down-after-milliseconds wgmaster 1000\n"
            "sentinel failover-timeout wgmaster 5000\n"
        ),
        ping=["-p", str(sentinel_port)],
    )  # fmt: skip
    url = (
        f"redis+sentinel://127.0.0.1:{free_port()},127.0.0.1:{sentinel_port}/wgmaster/0"  # one dead sentinel
    )

    async def run() -> tuple[int, float]:
        client = RespClient(url, timeout=2)
        key = f"wgtest:{uuid.uuid4().hex}"
        try:
            await client.call("SET", key, "before", "EX", "60")
            assert await client.call("INFO", "server")  # on the master
            assert client._conn is not None
            master.kill()  # the sentinel promotes the replica after down-after-milliseconds
            failures = 0
            started = time.monotonic()
            while True:
                try:
                    await client.call("SET", key, "after", "EX", "60")
                    break
                except RespError:
                    failures += 1
                    assert time.monotonic() - started < 30, "no failover within 30 s"
                    await asyncio.sleep(0.2)
            assert await client.call("GET", key) == b"after"
            return failures, time.monotonic() - started
        finally:
            await client.close()

    failures, seconds = asyncio.run(run())
    print(f"failover: {failures} failed calls over {seconds:.1f} s")
    assert failures >= 1  # the old master was really gone
    role = subprocess.run(
        ["redis-cli", "-p", str(replica_port), "role"], capture_output=True, text=True
    ).stdout
    assert role.startswith("master")
    assert asyncio.run(_take(url))


def test_a_sentinel_url_names_its_master() -> None:
    with pytest.raises(ValueError, match="names the master"):
        RespClient("redis+sentinel://127.0.0.1:26379")
    with pytest.raises(ValueError, match="not 'example:1'"):
        RespClient("http://user:secret@example:1")
