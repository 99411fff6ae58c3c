"""``wisegate batch submit | status | results``: a Message Batches client for a running server."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import httpx

from wisegate.protocol.json_depth import parse_json

_FINISHED = ("succeeded", "errored", "canceled", "expired")


@contextmanager
def _client(base_url: str, api_key: str) -> Iterator[httpx.Client]:
    """A client of the server at ``base_url``; not reaching it is one line saying so, no traceback."""
    try:
        with httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"x-api-key": api_key, "anthropic-version": "2023-06-01"},
            timeout=httpx.Timeout(60.0, read=600.0),
        ) as client:
            yield client
    except httpx.TransportError as exc:
        raise click.ClickException(
            f"cannot reach the server at {base_url} ({type(exc).__name__}: {exc}); is `wisegate serve` "
            "running there? (--base-url or ANTHROPIC_BASE_URL)"
        ) from None


def _check(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        response.read()
        try:
            error = response.json()["error"]
            message = f"{response.status_code} {error['type']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            message = f"{response.status_code}: {response.text[:500]}"
        raise click.ClickException(message)
    return response.json()


def _options(command: Any) -> Any:
    command = click.option(
        "--base-url",
        envvar="ANTHROPIC_BASE_URL",
        default="http://127.0.0.1:8080",
        show_default=True,
        help="The Wisegate server (or ANTHROPIC_BASE_URL).",
    )(command)
    return click.option(
        "--api-key", envvar="ANTHROPIC_API_KEY", required=True, help="An API key (or ANTHROPIC_API_KEY)."
    )(command)


@click.group()
def batch() -> None:
    """Submit Message Batches from JSONL files and fetch their results."""


def _upload(path: Path) -> Iterator[bytes]:
    """``{"requests": [...]}`` built line by line from the file, with a progress bar."""
    yield b'{"requests":['
    first = True
    with (
        path.open("rb") as lines,
        click.progressbar(length=path.stat().st_size, label="Uploading ", file=sys.stderr) as bar,
    ):
        for number, line in enumerate(lines, 1):
            bar.update(len(line))
            if not line.strip():
                continue
            try:
                request = parse_json(line)
            except ValueError as exc:  # messages made to be shown (depth, numbers, syntax)
                raise click.ClickException(f"{path}:{number}: {exc}") from None
            if not isinstance(request, dict):
                raise click.ClickException(f"{path}:{number}: not a JSON object")
            yield (b"" if first else b",") + line.strip()
            first = False
    yield b"]}"


def _finished(batch: dict[str, Any]) -> int:
    return sum(int(batch["request_counts"][k]) for k in _FINISHED)


def _summary(batch: dict[str, Any]) -> str:
    counts = batch["request_counts"]
    parts = ", ".join(f"{counts[k]} {k}" for k in _FINISHED)
    return f"{batch['id']}\t{batch['processing_status']}\t{parts}"


@batch.command("submit")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_options
@click.option("--wait/--no-wait", default=True, help="Show processing progress until the batch ends.")
def submit(file: Path, base_url: str, api_key: str, wait: bool) -> None:
    """Submit FILE (one {"custom_id", "params"} request per line) and follow its progress."""
    with _client(base_url, api_key) as client:
        created = _check(
            client.post(
                "/v1/messages/batches", content=_upload(file), headers={"content-type": "application/json"}
            )
        )
        click.echo(created["id"])
        if not wait:
            return
        total = _finished(created) + int(created["request_counts"]["processing"])
        current = created
        with click.progressbar(length=total, label="Processing", file=sys.stderr) as bar:
            done = 0
            while True:
                finished = _finished(current)
                bar.update(finished - done)
                done = finished
                if current["processing_status"] == "ended":
                    break
                time.sleep(0.5)
                current = _check(client.get(f"/v1/messages/batches/{created['id']}"))
        click.echo(_summary(current))


@batch.command("status")
@click.argument("batch_id")
@_options
def status(batch_id: str, base_url: str, api_key: str) -> None:
    """Print the batch object (JSON)."""
    with _client(base_url, api_key) as client:
        click.echo(json.dumps(_check(client.get(f"/v1/messages/batches/{batch_id}")), indent=2))


@batch.command("results")
@click.argument("batch_id")
@_options
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Where to write."
)
def results(batch_id: str, base_url: str, api_key: str, output: Path) -> None:
    """Download the results (JSONL) of an ended batch to OUTPUT."""
    with _client(base_url, api_key) as client:
        current = _check(client.get(f"/v1/messages/batches/{batch_id}"))
        if not current.get("results_url"):
            raise click.ClickException(f"{batch_id} is {current['processing_status']}; no results yet")
        total = _finished(current)
        partial = output.with_name(output.name + ".part")
        with (
            client.stream(
                "GET", current["results_url"], headers={"accept": "application/binary"}
            ) as response,
            partial.open("wb") as out,
            click.progressbar(length=total, label="Downloading", file=sys.stderr) as bar,
        ):
            if response.status_code >= 400:
                _check(response)
            for chunk in response.iter_bytes():
                out.write(chunk)
                bar.update(chunk.count(b"\n"))
        partial.replace(output)
        click.echo(f"{total} results written to {output}")
