"""``role: "system"`` messages with the per-turn fields Claude Code sends (anthropic 2.10 beta types)."""

from __future__ import annotations

import httpx

from tests.conftest import EMBEDDED_MODEL, SCRIPTED_MODEL, LiveServer


def post(server: LiveServer, messages: list[dict[str, object]]) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/v1/messages?beta=true",
        headers={
            "x-api-key": server.key,
            "anthropic-version": "2023-06-01",
            "anthropic-beta": "per-turn-control-2026-07-01,mid-conversation-tool-changes-2026-07-01",
        },
        json={"model": SCRIPTED_MODEL, "max_tokens": 16, "messages": messages},
    )


def test_system_message_output_config_and_clear_at_are_accepted(scripted_server: LiveServer) -> None:
    response = post(
        scripted_server,
        [
            {"role": "user", "content": "say hi"},
            {
                "role": "system",
                "content": [
                    {"type": "text", "text": "# Environment", "cache_control": {"type": "ephemeral"}}
                ],
                "output_config": {"effort": "medium"},
                "clear_at": "next_user_message",
            },
        ],
    )
    assert response.status_code == 200, response.text
    assert response.json()["content"][0]["text"] == "say hi"


def test_per_turn_fields_only_on_system_messages(scripted_server: LiveServer) -> None:
    response = post(scripted_server, [{"role": "user", "content": "hi", "output_config": {"effort": "low"}}])
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert message.startswith("messages.0") and 'only permitted on role: "system" messages' in message


def test_embedded_model_hoists_system_messages_into_its_system_turn(embedded_server: LiveServer) -> None:
    client = embedded_server.client()

    def count(**kwargs: object) -> int:
        result: int = client.messages.count_tokens(model=EMBEDDED_MODEL, **kwargs).input_tokens  # type: ignore[arg-type]
        return result

    hoisted = count(
        system="Be brief.",
        messages=[{"role": "user", "content": "hi"}, {"role": "system", "content": "# Environment: linux"}],
    )
    top = count(system="Be brief.\n\n# Environment: linux", messages=[{"role": "user", "content": "hi"}])
    assert hoisted == top
    cleared = count(
        system="Be brief.",
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "system", "content": "# Environment: linux", "clear_at": "next_user_message"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "bye"},
        ],
    )
    plain = count(
        system="Be brief.",
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "bye"},
        ],
    )
    assert cleared == plain
