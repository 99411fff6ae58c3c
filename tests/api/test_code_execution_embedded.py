"""One real run of the code execution tool on the embedded model, with ``tool_choice`` forcing the call.

The 135M model does not work out a command by itself; the grammar holds its forced call to the tool's
input schema, and when the user spells the input out the model copies it. What this shows is the loop
end to end on a real backend: a custom skill's script run from its mounted directory in the sandbox,
its output and the file it wrote (downloadable), then the model asked again with the result, every
round within the request's ``max_tokens``.
"""

from __future__ import annotations

import shutil

from tests.api.code_execution_support import BETAS, TOOL
from tests.conftest import EMBEDDED_MODEL, LiveServer

COMMAND = "python3 /skills/adder/scripts/add.py"


def test_forced_code_execution_runs_a_skill_script_on_the_embedded_model(embedded_server: LiveServer) -> None:
    assert shutil.which("bwrap") is not None, "bubblewrap is not installed: scripts/test installs it"
    client = embedded_server.client()
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
        max_tokens=32,  # the call takes about 18; the round after it gets the rest
        extra_body={"temperature": 0},
        tools=[TOOL],
        tool_choice={"type": "tool", "name": "code_execution"},
        container={"skills": [{"type": "custom", "skill_id": skill.id, "version": "latest"}]},
        messages=[{"role": "user", "content": f'Call bash_code_execution with {{"command": "{COMMAND}"}}'}],
        betas=BETAS,
    )
    use, result = message.content[0], message.content[1]
    assert use.type == "server_tool_use" and use.name == "bash_code_execution"
    assert use.input == {"command": COMMAND}
    assert result.type == "bash_code_execution_tool_result" and result.tool_use_id == use.id
    assert result.content.type == "bash_code_execution_result"
    assert (result.content.stdout, result.content.return_code) == ("sum: 9\n", 0)
    assert len(result.content.content) == 1
    assert client.beta.files.download(result.content.content[0].file_id).read() == b"9"
    assert message.container is not None and [s.skill_id for s in message.container.skills] == [skill.id]
    assert 0 < message.usage.output_tokens <= 32 and message.usage.input_tokens > 0
