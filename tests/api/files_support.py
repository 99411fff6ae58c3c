"""Helpers for the Files/Skills tests: servers, a second workspace, generated PDFs and skill bundles."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import anthropic

from tests.conftest import LiveServer, make_key


def other_workspace_client(live: LiveServer, name: str = "other") -> anthropic.Anthropic:
    """A client whose key belongs to a second workspace of the same organization."""
    services = live.services
    workspace = live.run(services.keys.create_workspace(services.organization_id, name))
    return live.client(api_key=make_key(live.settings, workspace=workspace.id))


def blob_files(data_dir: Path) -> list[Path]:
    """Every blob and staging file on disk."""
    found: list[Path] = []
    for folder in ("files", "files-staging"):
        root = data_dir / folder
        if root.exists():
            found += [p for p in root.rglob("*") if p.is_file()]
    return found


def make_pdf(*pages: str) -> bytes:
    """A small valid PDF with one line of Helvetica text per page (enough for pypdf to extract)."""
    objects: list[bytes] = []
    page_ids = [3 + 2 * i for i in range(len(pages))]
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    kids = " ".join(f"{i} 0 R" for i in page_ids).encode()
    objects.append(b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % len(pages))
    font_id = 3 + 2 * len(pages)
    for i, text in enumerate(pages):
        content = b"BT /F1 12 Tf 72 720 Td (" + text.encode("latin-1") + b") Tj ET"
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << /Font << /F1 %d 0 R >> >> >>" % (page_ids[i] + 1, font_id)
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def skill_md(name: str = "greeter", description: str = "Greets people", body: str = "Say hello.") -> bytes:
    return f"---\nname: {name}\ndescription: {description}\n---\n{body}\n".encode()


def bundle(directory: str = "greeter", **kwargs: Any) -> list[tuple[str, bytes, str]]:
    """``files=`` for ``client.beta.skills.create``: SKILL.md plus a script, under one folder."""
    return [
        (f"{directory}/SKILL.md", skill_md(**kwargs), "text/markdown"),
        (f"{directory}/scripts/hello.py", b"print('hello')\n", "text/x-python"),
    ]
