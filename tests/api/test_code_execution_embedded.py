"""One real run of the code execution tool on the embedded model, with ``tool_choice`` forcing the call.

The 135M model cannot be relied on to write working code; the grammar-constrained tool input makes its
call well-formed, so what this shows is the loop end to end on a real backend: a ``bash_code_execution``
call with a string command, executed in the sandbox of a container with a custom skill mounted, and the
model asked again with the result.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.api.code_execution_support import BETAS, TOOL
from tests.conftest import EMBEDDED_MODEL, LiveServer, serve, settings_for


@pytest.fixture(scope="module")
def one_round(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The embedded model with one round per response: the forced call, its result, then pause_turn
    (the 135M model would otherwise keep calling the tool for every round the loop allows)."""
    settings = settings_for(tmp_path_factory.mktemp("embedded-code"), code_execution_max_rounds=1)
    yield from serve(settings)


@pytest.mark.xfail(
    strict=True,
    reason="known defect (issue #18 open): the forced bash_code_execution call on the embedded model "
    "reaches the loop with an empty input ({}), not the grammar-constrained command",
)
def test_forced_code_execution_on_the_embedded_model(one_round: LiveServer) -> None:
    if shutil.which("bwrap") is None:
        pytest.fail("bubblewrap is not installed: scripts/test installs it")
    client = one_round.client()
    script = b"print('sum:', 2 + 3 + 4)\nopen('/mnt/user-data/outputs/sum.txt', 'w').write('9')\n"
    skill = client.beta.skills.create(
        files=[
            (
                "adder/SKILL.md",
                b"---\nname: adder\ndescription: Adds numbers\n---\nRun scripts/add.py.\n",
                "text/markdown",
            ),
            ("adder/scripts/add.py", script, "text/x-python"),
        ],
        betas=["skills-2025-10-02"],
    )
    message = client.beta.messages.create(
        model=EMBEDDED_MODEL,
        max_tokens=120,  # room for the whole constrained JSON input
        extra_body={"temperature": 0},
        tools=[TOOL],
        tool_choice={"type": "tool", "name": "code_execution"},
        container={"skills": [{"type": "custom", "skill_id": skill.id, "version": "latest"}]},
        messages=[{"role": "user", "content": "Run this bash command: python3 /skills/adder/scripts/add.py"}],
        betas=BETAS,
    )
    use, result = message.content[0], message.content[1]
    assert use.type == "server_tool_use" and use.name == "bash_code_execution"
    assert isinstance(use.input, dict) and isinstance(use.input.get("command"), str)
    assert result.type == "bash_code_execution_tool_result" and result.tool_use_id == use.id
    assert result.content.type in ("bash_code_execution_result", "bash_code_execution_tool_result_error")
    if result.content.type == "bash_code_execution_result":
        assert isinstance(result.content.return_code, int)
        if "add.py" in use.input["command"] and result.content.return_code == 0:
            assert "sum: 9" in result.content.stdout and len(result.content.content) == 1
            file_id = result.content.content[0].file_id
            assert client.beta.files.download(file_id).read() == b"9"
    assert message.container is not None and [s.skill_id for s in message.container.skills] == [skill.id]
    assert message.stop_reason == "pause_turn" and len(message.content) == 2
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
