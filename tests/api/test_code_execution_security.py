"""Hostile code in the sandbox, each attempt made from inside a container through the official SDK.

Every attempt is refused or contained, and the server keeps serving.
"""

from __future__ import annotations

import io
import os
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.code_execution_support import bash, call, result_of, run, still_serving
from tests.api.files_support import bundle
from tests.conftest import LiveServer, scripted_settings, serve
from wisegate.backends.scripted import ScriptedBackend

DISK = 8 * 1024 * 1024
MEMORY = 256 * 1024 * 1024


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = scripted_settings(
        tmp_path_factory.mktemp("hostile"),
        sandbox_wall_seconds=6,
        sandbox_cpu_seconds=5,
        sandbox_memory_bytes=MEMORY,
        sandbox_processes=32,
        sandbox_disk_bytes=DISK,
        containers_per_workspace=100,  # every test starts containers of its own
    )
    yield from serve(settings, backends={"scripted": ScriptedBackend()})


def test_the_data_dir_config_and_server_environment_are_unreachable(
    live: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_TEST_SECRET", "s3cr3t-marker")  # in the server process's environment
    config = tmp_path / "wisegate.toml"
    config.write_text('console_secret = "config-marker"\n')
    data_dir = live.settings.data_dir.resolve()
    result = result_of(
        bash(
            live.client(),
            f"ls {data_dir}; cat {data_dir}/wisegate.db | head -c 100; cat {config}; "
            f"cat /proc/{os.getpid()}/environ; cat /proc/*/environ; env; ls /proc | grep -c '^[0-9]'",
        )
    )
    output = result.stdout + result.stderr
    assert "No such file or directory" in result.stderr
    assert "SQLite" not in output and "config-marker" not in output and "s3cr3t-marker" not in output
    assert "WISEGATE" not in output and "ANTHROPIC" not in output
    assert int(result.stdout.strip().splitlines()[-1]) <= 6  # only the sandbox's own processes
    still_serving(live)


def test_nothing_outside_the_work_directories_is_writable(live: LiveServer) -> None:
    result = result_of(
        bash(
            live.client(), "for p in /usr/x /etc/x /x /dev/shm/x /skills/x /proc/x; do touch $p || true; done"
        )
    )
    assert result.stderr.count("Read-only file system") + result.stderr.count("No such file") >= 5
    assert not Path("/usr/x").exists() and not Path("/x").exists() and not Path("/etc/x").exists()


def test_no_user_namespace_can_be_made_inside(live: LiveServer) -> None:
    result = result_of(
        bash(live.client(), "unshare -Ur true; echo rc=$?; touch /home/user/ok && echo writable")
    )
    assert "rc=0" not in result.stdout and "rc=" in result.stdout, result.stderr
    assert "writable" in result.stdout  # the sandbox's own directories still work as before


def test_no_network_connection_leaves_the_sandbox(live: LiveServer) -> None:
    port = int(live.base_url.rsplit(":", 1)[1])
    probe = (
        "import socket\n"
        f"targets = [('127.0.0.1', 5432), ('127.0.0.1', 6379), ('127.0.0.1', {port}), ('1.1.1.1', 443)]\n"
        "for host, port in targets:\n"
        "    try:\n"
        "        socket.create_connection((host, port), timeout=2)\n"
        "        print('connected', port)\n"
        "    except OSError as exc:\n"
        "        print('refused', port, exc.errno)\n"
    )
    result = result_of(
        run(
            live.client(),
            call("code_execution", code=probe),
            tools=[{"type": "code_execution_20250522", "name": "code_execution"}],
        )
    )
    assert result.type == "code_execution_result"
    lines = result.stdout.splitlines()
    assert len(lines) == 4 and all(line.startswith("refused") for line in lines), result
    still_serving(live)


def test_a_fork_bomb_is_contained(live: LiveServer) -> None:
    started = time.monotonic()
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    message = bash(live.client(), f"python3 -c '{bomb}'")
    assert time.monotonic() - started < 30
    content = result_of(message)
    assert content.type in ("bash_code_execution_result", "bash_code_execution_tool_result_error")
    assert not _processes_of(live.settings.sandbox_uid)
    still_serving(live)


def test_memory_past_the_limit_is_refused(live: LiveServer) -> None:
    result = result_of(bash(live.client(), f"python3 -c 'x = bytearray({MEMORY * 2})'"))
    assert result.return_code != 0 and "MemoryError" in result.stderr
    still_serving(live)


def test_the_disk_quota_holds(live: LiveServer) -> None:
    client = live.client()
    one_file = bash(client, f"head -c {DISK * 4} /dev/zero > big; ls -la")
    result = result_of(one_file)
    assert result.return_code != 0 and "Disk quota" in result.stderr
    many = bash(
        client,
        "for i in $(seq 1 40); do head -c 1000000 /dev/zero > /tmp/f$i; done; sleep 2",
        container=one_file.container.id,
    )
    assert "Disk quota" in result_of(many).stderr
    # What the files hold (a tmpfs directory's own size counts entries, not bytes stored) and the blocks
    # in use: neither passes the quota.
    after = bash(
        client,
        "find /home/user /tmp -type f -printf '%s\\n' | awk '{s+=$1} END {print s}'; "
        "du -sB1 /home/user /tmp | awk '{s+=$1} END {print s}'",
        container=one_file.container.id,
    )
    files, blocks = map(int, result_of(after).stdout.split())
    assert 0 < files <= DISK and blocks <= DISK
    still_serving(live)


def test_the_wall_time_limit_and_no_process_outlives_its_call(live: LiveServer) -> None:
    client = live.client()
    slow = bash(client, "sleep 60")
    assert result_of(slow).error_code == "execution_time_exceeded"
    left = bash(
        client,
        "(sleep 2; touch /home/user/late) > /dev/null 2>&1 & disown; "
        "nohup sleep 100 >/dev/null 2>&1 & echo started",
    )
    assert result_of(left).stdout == "started\n"
    time.sleep(3)
    assert not _processes_of(live.settings.sandbox_uid)
    later = bash(client, "ls /home/user; ps -e --no-headers | wc -l", container=left.container.id)
    assert "late" not in result_of(later).stdout
    still_serving(live)


def test_links_in_outputs_are_not_followed(live: LiveServer) -> None:
    data_dir = live.settings.data_dir.resolve()
    message = bash(
        live.client(),
        f"ln -s {data_dir}/wisegate.db /mnt/user-data/outputs/db.sqlite; "
        "ln -s / /mnt/user-data/outputs/root; "
        "mkfifo /mnt/user-data/outputs/pipe; echo linked",
    )
    result = result_of(message)
    assert result.stdout == "linked\n" and result.content == []
    names = [f.filename for f in live.client().beta.files.list()]
    assert "db.sqlite" not in names and "pipe" not in names


def test_container_upload_replaces_a_planted_link_instead_of_following_it(
    live: LiveServer, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("original")
    os.chmod(tmp_path, 0o755)
    client = live.client()
    planted = bash(client, f"ln -s {victim} /mnt/user-data/uploads/data.txt; echo planted")
    uploaded = client.beta.files.upload(file=("data.txt", b"uploaded", "text/plain"))
    message = client.beta.messages.create(
        model="scripted-1",
        max_tokens=100,
        tools=[{"type": "code_execution_20250825", "name": "code_execution"}],
        container=planted.container.id,
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "text",
                        "text": call(
                            "bash_code_execution",
                            command="cat /mnt/user-data/uploads/data.txt; "
                            "test -L /mnt/user-data/uploads/data.txt || echo ' regular'",
                        ),
                    },
                    {"type": "container_upload", "file_id": uploaded.id},
                ],
            }
        ],
        betas=["code-execution-2025-08-25", "files-api-2025-04-14"],
    )
    assert result_of(message).stdout == "uploaded regular\n"
    assert victim.read_text() == "original"


def test_a_tampered_skill_archive_cannot_plant_links_or_escape(live: LiveServer) -> None:
    client = live.client()
    skill = client.beta.skills.create(
        files=bundle("tricky", name="tricky", description="Tricks"), betas=["skills-2025-10-02"]
    )
    blob = _skill_blob(live, skill.id)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle_zip:
        bundle_zip.writestr("tricky/SKILL.md", "---\nname: tricky\ndescription: Tricks\n---\n")
        link = zipfile.ZipInfo("tricky/passwd")
        link.external_attr = 0o120777 << 16  # a symlink entry whose target is /etc/passwd
        bundle_zip.writestr(link, "/etc/passwd")
        bundle_zip.writestr("tricky/../../escaped.txt", "out")
        bundle_zip.writestr("/absolute.txt", "out")
    blob.write_bytes(archive.getvalue())
    message = bash(
        client,
        "test -L /skills/tricky/passwd && echo link || cat /skills/tricky/passwd; "
        "echo; ls /skills /skills/tricky",
        container={"skills": [{"type": "custom", "skill_id": skill.id}]},
    )
    lines = result_of(message).stdout.splitlines()
    assert lines[0] == "/etc/passwd"  # the entry became a file holding the link's text
    assert "escaped.txt" not in lines and "absolute.txt" not in lines
    containers = live.settings.data_dir / "containers"
    assert not list(containers.rglob("escaped.txt")) and not list(containers.rglob("absolute.txt"))


def _skill_blob(live: LiveServer, skill_id: str) -> Path:
    found = [p for p in (live.settings.data_dir / "files").rglob("*.zip") if skill_id in str(p)]
    assert len(found) == 1
    return found[0]


def _processes_of(uid: int) -> list[str]:
    """Processes of the sandbox's user still running on the host."""
    if os.geteuid() != 0:
        return []  # the sandbox runs as this user; its own processes are the server's
    running = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                status = Path(entry.path, "status").read_text()
            except OSError:
                continue
            if f"\nUid:\t{uid}\t" in status:
                running.append(entry.name)
    return running
