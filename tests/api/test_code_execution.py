"""The code execution tool run by Wisegate, driven through the official SDK with the scripted backend."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import anthropic
import httpx
import pytest

from tests.api.code_execution_support import BETAS, TOOL, bash, call, result_of, run, still_serving
from tests.api.files_support import bundle, other_workspace_client
from tests.conftest import SCRIPTED_MODEL, LiveServer, make_key, postgres_database, scripted_settings, serve
from wisegate.backends.scripted import ScriptedBackend
from wisegate.protocol.events import (
    ContentBlockDelta,
    ContentBlockStart,
    ContentBlockStop,
    InputJsonDelta,
    MessageDelta,
    MessageDeltaBody,
    MessageDeltaUsage,
    MessageStart,
    MessageStop,
)
from wisegate.protocol.messages import Message, ToolUseBlock, Usage, new_id

pytestmark = pytest.mark.usefixtures("bwrap")


@pytest.fixture(scope="module")
def bwrap() -> None:
    import shutil

    if shutil.which("bwrap") is None:
        pytest.fail("bubblewrap is not installed: scripts/test installs it (apt-get install bubblewrap)")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = scripted_settings(
        tmp_path_factory.mktemp("code"),
        code_execution_max_rounds=3,
        container_idle_seconds=600,
        container_hour_price="3600",  # a dollar a second: every millisecond shows in the cost report
        ledger_journal=False,
        containers_per_workspace=100,  # every test starts containers of its own
        sandbox_disk_bytes=64 * 1024**2,
    )
    yield from serve(settings, backends={"scripted": ScriptedBackend()})


def test_a_bash_call_runs_and_its_output_returns(live: LiveServer) -> None:
    message = bash(live.client(), "echo hello; echo oops >&2; exit 3")
    use, result, text = message.content
    assert use.type == "server_tool_use" and use.name == "bash_code_execution"
    assert use.id.startswith("srvtoolu_") and use.input == {"command": "echo hello; echo oops >&2; exit 3"}
    assert result.type == "bash_code_execution_tool_result" and result.tool_use_id == use.id
    assert result.content.type == "bash_code_execution_result"
    assert (result.content.stdout, result.content.stderr, result.content.return_code) == (
        "hello\n",
        "oops\n",
        3,
    )
    assert result.content.content == []
    assert "hello" in text.text and "exit code 3" in text.text  # the model saw the result
    assert message.stop_reason == "end_turn"
    assert message.container is not None and message.container.id.startswith("container_")
    assert message.container.expires_at.timestamp() > time.time()
    capabilities = live.client().models.retrieve(SCRIPTED_MODEL).capabilities
    assert capabilities is not None and capabilities.code_execution.supported


def test_text_editor_create_view_and_replace(live: LiveServer) -> None:
    steps = "\n".join(
        [
            call(
                "text_editor_code_execution", command="create", path="notes.txt", file_text="one\ntwo\nthree"
            ),
            call(
                "text_editor_code_execution",
                command="str_replace",
                path="notes.txt",
                old_str="two",
                new_str="2",
            ),
            call("text_editor_code_execution", command="view", path="/home/user/notes.txt"),
            call("text_editor_code_execution", command="view", path="missing.txt"),
        ]
    )
    first = run(live.client(), steps)
    assert first.stop_reason == "pause_turn"  # three rounds at most per response on this server
    created, replaced, viewed = (result_of(first, i) for i in range(3))
    assert created.type == "text_editor_code_execution_create_result" and created.is_file_update is False
    assert replaced.type == "text_editor_code_execution_str_replace_result"
    assert (replaced.old_start, replaced.old_lines, replaced.new_lines) == (2, 1, 1)
    assert viewed.type == "text_editor_code_execution_view_result", viewed
    assert (viewed.content, viewed.total_lines, viewed.start_line) == ("one\n2\nthree", 3, 1)
    second = live.client().beta.messages.create(
        model=SCRIPTED_MODEL,
        max_tokens=200,
        tools=[TOOL],
        betas=BETAS,
        container=first.container.id,
        messages=[{"role": "user", "content": steps}, {"role": "assistant", "content": first.content}],
    )
    missing = result_of(second)
    assert missing.type == "text_editor_code_execution_tool_result_error"
    assert missing.error_code == "file_not_found"
    assert second.stop_reason == "end_turn"


def test_text_editor_refuses_a_device_and_a_view_range_ending_before_it_starts(live: LiveServer) -> None:
    steps = "\n".join(
        [
            call("text_editor_code_execution", command="view", path="/dev/zero"),
            call("text_editor_code_execution", command="create", path="lines.txt", file_text="a\nb\nc"),
            call("text_editor_code_execution", command="view", path="lines.txt", view_range=[2, 1]),
        ]
    )
    message = run(live.client(), steps)
    device, _created, backwards = (result_of(message, i) for i in range(3))
    assert device.type == "text_editor_code_execution_tool_result_error", device
    assert (device.error_code, device.error_message) == (
        "invalid_tool_input",
        "/dev/zero is not a regular file",
    )
    assert backwards.type == "text_editor_code_execution_tool_result_error", backwards
    assert (backwards.error_code, backwards.error_message) == (
        "invalid_tool_input",
        "Invalid view_range [2, 1]: its end 1 is before its start 2",
    )


@pytest.mark.parametrize("name", ["bash_code_execution", "text_editor_code_execution"])
def test_a_client_tool_named_like_a_code_execution_tool_is_refused_beside_it(
    live: LiveServer, name: str
) -> None:
    mine = {"name": name, "input_schema": {"type": "object"}}
    with pytest.raises(anthropic.BadRequestError) as refused:
        run(live.client(), "hi", tools=[TOOL, mine])
    assert refused.value.status_code == 400
    assert refused.value.body["error"] == {  # type: ignore[index]
        "type": "invalid_request_error",
        "message": f"tools.1.custom.name: '{name}' is the name of a tool of code_execution_20250825 (the "
        "code execution tool in this request), so it cannot name a client tool; rename it",
    }
    alone = run(live.client(), "hi", tools=[mine])  # no code execution tool, no collision
    assert alone.content[0].text == "hi"


def test_a_file_written_to_outputs_is_downloadable(live: LiveServer) -> None:
    client = live.client()
    message = bash(client, "printf 'a,b\\n1,2\\n' > /mnt/user-data/outputs/report.csv; echo written")
    result = result_of(message)
    assert result.stdout == "written\n" and len(result.content) == 1
    file_id = result.content[0].file_id
    assert result.content[0].type == "bash_code_execution_output"
    metadata = client.beta.files.retrieve_metadata(file_id)
    assert (metadata.filename, metadata.downloadable, metadata.size_bytes) == ("report.csv", True, 8)
    assert client.beta.files.download(file_id).read() == b"a,b\n1,2\n"
    # A second call lists only what it created or changed.
    again = bash(client, "echo nothing new", container=message.container.id)
    assert result_of(again).content == []


def test_output_names_the_files_api_refuses_are_sanitised_not_an_error(live: LiveServer) -> None:
    client = live.client()
    before = {f.id for f in client.beta.files.list(limit=1000)}
    script = (
        "cd /mnt/user-data/outputs && echo 1 > 'Q1: report.txt' && echo 2 > 'is it done?.txt' && "
        "echo 3 > $'line\\nbreak.txt' && echo 4 > $'bad-\\xff\\xfe.txt' && echo 5 > a.txt && "
        "mkdir -p sub/deep && echo 6 > sub/deep/a.txt && echo 7 > $'bidi-\\u202e.txt' && echo done"
    )
    message = bash(client, script)
    result = result_of(message)
    assert result.stdout == "done\n" and result.return_code == 0, result.stderr
    names = {}
    for output in result.content:
        metadata = client.beta.files.retrieve_metadata(output.file_id)
        names[metadata.filename] = client.beta.files.download(output.file_id).read()
    assert names == {
        "Q1_ report.txt": b"1\n",
        "is it done_.txt": b"2\n",
        "line_break.txt": b"3\n",
        "bad-\ufffd\ufffd.txt": b"4\n",
        "a.txt": b"5\n",
        "sub_deep_a.txt": b"6\n",
        "bidi-_.txt": b"7\n",
    }
    after = {f.id for f in client.beta.files.list(limit=1000)}
    assert after - before == {output.file_id for output in result.content}  # nothing orphaned


def test_a_container_keeps_its_files_between_requests(live: LiveServer) -> None:
    client = live.client()
    first = bash(client, "echo $((6*7)) > state.txt")
    container = first.container.id
    second = bash(client, "cat state.txt", container=container)
    assert second.container.id == container and result_of(second).stdout == "42\n"
    by_object = bash(client, "cat /home/user/state.txt", container={"id": container})
    assert result_of(by_object).stdout == "42\n"
    fresh = bash(client, "cat state.txt")
    assert fresh.container.id != container and result_of(fresh).return_code != 0


def test_a_skill_script_runs_from_its_mounted_directory(live: LiveServer) -> None:
    client = live.client()
    files = bundle("adder", name="adder", description="Adds numbers")
    files[1] = (
        "adder/scripts/add.py",
        b"import sys\nprint(sum(int(a) for a in sys.argv[1:]))\n",
        "text/x-python",
    )
    skill = client.beta.skills.create(files=files, betas=["skills-2025-10-02"])
    message = bash(
        client,
        "python3 /skills/adder/scripts/add.py 2 3 4; head -2 /skills/adder/SKILL.md; touch /skills/adder/x",
        container={"skills": [{"type": "custom", "skill_id": skill.id, "version": "latest"}]},
    )
    result = result_of(message)
    assert result.stdout.splitlines() == ["9", "---", "name: adder"]
    assert "Read-only file system" in result.stderr
    assert [(s.skill_id, s.type) for s in message.container.skills] == [(skill.id, "custom")]
    system = " ".join(b.text for b in live.backend.calls[-1].system_text())
    assert "/skills/adder/SKILL.md" in system and "Adds numbers" in system
    anthropic_skill = {"skills": [{"type": "anthropic", "skill_id": "xlsx", "version": "latest"}]}
    with pytest.raises(anthropic.NotFoundError, match="xlsx"):
        bash(client, "true", container=anthropic_skill)


def test_two_skills_in_one_folder_are_a_400_naming_both(live: LiveServer) -> None:
    client = live.client()
    one = client.beta.skills.create(files=bundle("tools", name="tools-one"), betas=["skills-2025-10-02"])
    two = client.beta.skills.create(files=bundle("tools", name="tools-two"), betas=["skills-2025-10-02"])

    def with_skills(*ids: str, **kwargs: object) -> object:
        skills = [{"type": "custom", "skill_id": i, "version": "latest"} for i in ids]
        return bash(client, "ls /skills", container={"skills": skills, **kwargs})

    with pytest.raises(anthropic.BadRequestError) as both:
        with_skills(one.id, two.id)
    assert one.id in str(both.value) and two.id in str(both.value) and "'tools'" in str(both.value)
    first = with_skills(one.id)
    with pytest.raises(anthropic.BadRequestError) as later:
        with_skills(two.id, id=first.container.id)  # type: ignore[attr-defined]
    assert one.id in str(later.value) and two.id in str(later.value)


def test_pause_turn_and_continuing_the_turn(live: LiveServer) -> None:
    client = live.client()
    steps = "\n".join(
        call("bash_code_execution", command=f"echo step{i} >> log.txt; cat log.txt | wc -l") for i in range(5)
    )
    first = run(client, steps)
    assert first.stop_reason == "pause_turn"
    assert [b.type for b in first.content].count("server_tool_use") == 3
    assert result_of(first, 2).stdout == "3\n"
    second = client.beta.messages.create(
        model=SCRIPTED_MODEL,
        max_tokens=200,
        tools=[TOOL],
        betas=BETAS,
        container=first.container.id,
        messages=[{"role": "user", "content": steps}, {"role": "assistant", "content": first.content}],
    )
    assert second.stop_reason == "end_turn"
    assert [result_of(second, i).stdout for i in range(2)] == ["4\n", "5\n"]


def test_max_tokens_bounds_the_output_of_all_rounds(live: LiveServer) -> None:
    client = live.client()
    # A scripted call costs one output token: two rounds spend the budget of 2, the third never starts.
    steps = "\n".join(call("bash_code_execution", command=f"echo {i}") for i in range(3))
    message = run(client, steps, max_tokens=2)
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 2
    assert [result_of(message, i).stdout for i in range(2)] == ["0\n", "1\n"]
    assert len(message.content) == 4
    # The answer after the call gets what the call left: 3 of 4 tokens (words, on this backend).
    message = run(client, call("bash_code_execution", command="echo one two three four five"), max_tokens=4)
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 4
    assert live.backend.calls[-1].max_tokens == 3
    assert message.content[-1].text == "exit code 0\nstdout:\none"


def test_a_call_cut_off_by_max_tokens_is_not_run(live: LiveServer) -> None:
    cut = '{"command": "touch /mnt/user-data/outputs/cut.txt'
    live.backend.enqueue(
        events=[
            MessageStart(
                message=Message(id=new_id("msg"), model=SCRIPTED_MODEL, usage=Usage(input_tokens=5))
            ),
            ContentBlockStart(
                index=0, content_block=ToolUseBlock(id=new_id("toolu"), name="bash_code_execution", input={})
            ),
            ContentBlockDelta(index=0, delta=InputJsonDelta(partial_json=cut)),
            ContentBlockStop(index=0),
            MessageDelta(
                delta=MessageDeltaBody(stop_reason="max_tokens"), usage=MessageDeltaUsage(output_tokens=8)
            ),
            MessageStop(),
        ]
    )
    client = live.client()
    with client.beta.messages.stream(
        model=SCRIPTED_MODEL,
        max_tokens=8,
        tools=[TOOL],
        betas=BETAS,
        messages=[{"role": "user", "content": "make a file"}],
    ) as stream:
        events = list(stream)
        message = stream.get_final_message()
    deltas = [e.delta.partial_json for e in events if e.type == "content_block_delta" and e.index == 0]
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 8
    assert [b.type for b in message.content] == ["server_tool_use"]  # returned as generated, not run
    assert "".join(deltas) == cut  # the input as far as it was generated
    listing = bash(client, "ls /mnt/user-data/outputs", container=message.container.id)
    assert result_of(listing).stdout == ""


def test_streaming_carries_the_same_blocks(live: LiveServer) -> None:
    client = live.client()
    with client.beta.messages.stream(
        model=SCRIPTED_MODEL,
        max_tokens=100,
        tools=[TOOL],
        betas=BETAS,
        messages=[{"role": "user", "content": call("bash_code_execution", command="echo streamed")}],
    ) as stream:
        kinds = [event.type for event in stream]
        message = stream.get_final_message()
    assert kinds.count("message_start") == 1 and kinds.count("message_stop") == 1
    assert [b.type for b in message.content] == ["server_tool_use", "bash_code_execution_tool_result", "text"]
    assert message.content[0].input == {"command": "echo streamed"}
    assert result_of(message).stdout == "streamed\n"


def test_container_upload_places_the_file(live: LiveServer) -> None:
    client = live.client()
    uploaded = client.beta.files.upload(file=("data.txt", b"uploaded bytes", "text/plain"))
    message = run(
        client,
        [
            {
                "type": "text",
                "text": call("bash_code_execution", command="cat /mnt/user-data/uploads/data.txt"),
            },
            {"type": "container_upload", "file_id": uploaded.id},
        ],
    )
    assert result_of(message).stdout == "uploaded bytes"
    with pytest.raises(anthropic.NotFoundError):
        run(client, [{"type": "text", "text": "hi"}, {"type": "container_upload", "file_id": "file_01nope"}])


def test_invalid_input_is_a_typed_error(live: LiveServer) -> None:
    message = run(live.client(), call("bash_code_execution", cmd="ls"))
    error = result_of(message)
    assert (error.type, error.error_code) == ("bash_code_execution_tool_result_error", "invalid_tool_input")


def test_inputs_past_the_argument_limit_run_and_past_a_mebibyte_are_refused(live: LiveServer) -> None:
    client = live.client()
    # One argument may not pass 128 KiB (the kernel's E2BIG); the inputs go on stdin instead.
    command = "echo start; : '" + "x" * 131_100 + "'; echo $(( 6 * 7 )); read -t 1 line; echo read=$?"
    assert len(command) > 131_072
    result = result_of(bash(client, command))
    assert (result.stdout, result.return_code) == ("start\n42\nread=1\n", 0), result.stderr
    text = "line\n" * 60_000  # 300 KB
    created = run(
        client,
        "\n".join(
            [
                call("text_editor_code_execution", command="create", path="big.txt", file_text=text),
                call("bash_code_execution", command="wc -c < big.txt"),
            ]
        ),
    )
    assert result_of(created, 0).type == "text_editor_code_execution_create_result"
    assert result_of(created, 1).stdout == f"{len(text)}\n"
    code = "import sys\nx = '" + "y" * 300_000 + "'\nprint(len(x), sys.argv[0] in ('-', '-c'))"
    python = result_of(
        run(
            client,
            call("code_execution", code=code),
            tools=[{"type": "code_execution_20250522", "name": "code_execution"}],
        )
    )
    assert (python.stdout, python.return_code) == ("300000 True\n", 0), python.stderr
    refused = run(
        client,
        "\n".join(
            [
                call("bash_code_execution", command="echo " + "z" * (1024 * 1024)),
                call("text_editor_code_execution", command="create", path="x", file_text="z" * 1024 * 1024),
            ]
        ),
    )
    too_long = result_of(refused, 0)
    assert (too_long.type, too_long.error_code) == (
        "bash_code_execution_tool_result_error",
        "invalid_tool_input",
    )
    editor = result_of(refused, 1)
    assert editor.error_code == "invalid_tool_input" and "1048576 bytes" in editor.error_message
    still_serving(live)


def test_output_past_the_cap_ends_with_a_line_saying_how_much_was_dropped(live: LiveServer) -> None:
    result = result_of(bash(live.client(), "head -c 100000 /dev/zero | tr '\\0' a; echo; echo err >&2"))
    kept, _, marker = result.stdout.rpartition("\n[")
    assert kept == "a" * 65536
    assert marker == "stdout truncated: 34465 more bytes dropped, 65536 bytes are kept]\n"
    assert result.stderr == "err\n" and result.return_code == 0


def test_a_nul_in_a_command_is_an_error_not_cut_off(live: LiveServer) -> None:
    message = bash(live.client(), "echo before\x00; touch /tmp/after")
    error = result_of(message)
    assert (error.type, error.error_code) == ("bash_code_execution_tool_result_error", "invalid_tool_input")


def test_another_workspace_cannot_use_the_container(live: LiveServer) -> None:
    container = bash(live.client(), "echo mine > secret.txt").container.id
    other = other_workspace_client(live, "code-other")
    with pytest.raises(anthropic.NotFoundError, match="Container not found"):
        bash(other, "cat secret.txt", container=container)
    with pytest.raises(anthropic.NotFoundError, match="Container not found"):
        bash(live.client(), "true", container="container_01doesnotexist")
    still_serving(live)


def test_an_expired_container_is_gone(tmp_path_factory: pytest.TempPathFactory) -> None:
    settings = scripted_settings(tmp_path_factory.mktemp("expiry"), container_idle_seconds=1)
    for live in serve(settings, backends={"scripted": ScriptedBackend()}):
        client = live.client()
        first = bash(client, "echo kept > kept.txt")
        directory = settings.data_dir / "containers" / first.container.id
        assert (directory / "home" / "kept.txt").exists()
        assert (first.container.expires_at.timestamp() - time.time()) <= 1.5
        time.sleep(1.2)
        with pytest.raises(anthropic.NotFoundError, match="expired") as caught:
            bash(client, "cat kept.txt", container=first.container.id)
        assert caught.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
        assert live.run(live.services.code_execution.containers.sweep(force=True)) >= 1
        assert not directory.exists()


def test_scaled_mode_names_the_node_that_holds_the_container(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Two nodes on one PostgreSQL database: a container is used only on the node that created it."""
    with postgres_database() as url:
        a = scripted_settings(tmp_path_factory.mktemp("node-a"), database_url=url, node_name="node-a")
        b = scripted_settings(tmp_path_factory.mktemp("node-b"), database_url=url, node_name="node-b")
        for live_a in serve(a, backends={"scripted": ScriptedBackend()}):
            container = bash(live_a.client(), "echo on a > here.txt").container.id
            for live_b in serve(b, backends={"scripted": ScriptedBackend()}):
                client_b = live_b.client(api_key=live_a.key)
                with pytest.raises(anthropic.BadRequestError, match="node 'node-a'") as caught:
                    bash(client_b, "cat here.txt", container=container)
                assert caught.value.body["error"]["details"]["error_code"] == "container_on_other_node"  # type: ignore[index]
                assert result_of(bash(client_b, "echo fresh")).stdout == "fresh\n"
            assert result_of(bash(live_a.client(), "cat here.txt", container=container)).stdout == "on a\n"


def test_container_time_is_metered_in_usage_and_cost_reports(live: LiveServer) -> None:
    client = other_workspace_client(live, "metered")
    workspace = live.run(live.services.keys.authenticate(client.api_key)).workspace_id
    message = run(
        client,
        "\n".join(
            [call("bash_code_execution", command="sleep 0.3"), call("bash_code_execution", command="true")]
        ),
    )
    assert [b.type for b in message.content].count("bash_code_execution_tool_result") == 2
    admin = make_key(live.settings, admin=True)
    now = datetime.now(UTC)
    window = {
        "starting_at": (now - timedelta(days=1)).strftime("%Y-%m-%dT00:00:00Z"),
        "ending_at": (now + timedelta(days=1)).strftime("%Y-%m-%dT00:00:00Z"),
    }
    headers = {"x-api-key": admin}
    usage = httpx.get(
        f"{live.base_url}/v1/organizations/usage_report/messages",
        params={**window, "bucket_width": "1d", "group_by[]": ["workspace_id"]},
        headers=headers,
    ).json()
    rows = [r for bucket in usage["data"] for r in bucket["results"] if r["workspace_id"] == workspace]
    mine = [r for r in rows if r["server_tool_use"]["code_execution_requests"] == 2]
    assert len(mine) == 1, rows
    seconds = mine[0]["server_tool_use"]["code_execution_seconds"]
    assert 0.3 <= seconds < 10
    cost = httpx.get(
        f"{live.base_url}/v1/organizations/cost_report",
        params={**window, "group_by[]": ["description", "workspace_id"]},
        headers=headers,
    ).json()
    lines = [
        r
        for bucket in cost["data"]
        for r in bucket["results"]
        if r["cost_type"] == "code_execution" and r["workspace_id"] == mine[0]["workspace_id"]
    ]
    assert len(lines) == 1 and lines[0]["token_type"] is None
    assert Decimal(lines[0]["amount"]) == Decimal(str(seconds)) * 100  # cents at $3600 an hour


def test_rate_limits_apply_to_every_round_of_the_loop(tmp_path_factory: pytest.TempPathFactory) -> None:
    from wisegate.settings.tiers import LimitsConfig, RateLimits, TierConfig

    steps = "\n".join(call("bash_code_execution", command=f"echo {i}") for i in range(4))
    measured = scripted_settings(tmp_path_factory.mktemp("unlimited"))
    for live in serve(measured, backends={"scripted": ScriptedBackend()}):
        # Four calls, then an answer: five rounds.
        per_round = run(live.client(), steps, max_tokens=10).usage.input_tokens // 5
    limits = LimitsConfig(
        model_classes={"scripted": ["scripted-*"]},
        tiers=[
            TierConfig(
                name="test",
                rate_limits={"scripted": RateLimits(rpm=100, itpm=per_round * 5 // 2, otpm=10**6)},
            )
        ],
        cache_seconds=0,
    )
    settings = scripted_settings(tmp_path_factory.mktemp("limited"), limits=limits)
    backend = ScriptedBackend()
    for live in serve(settings, backends={"scripted": backend}):
        with pytest.raises(anthropic.RateLimitError, match="input tokens"):
            run(live.client(), steps, max_tokens=10)
        assert len(backend.calls) == 2  # the third round was refused before it reached the model
        still_serving(live)
