"""Frameworks' own structured-output calls against the embedded model: schema-valid JSON back.

langchain-anthropic (``with_structured_output(method="json_schema")``) and pydantic-ai
(``NativeOutput``) send ``output_config.format``; the embedded model answers under the schema's
grammar. One short generation each (CI budget).
"""

from __future__ import annotations

from typing import Literal

import pydantic

from tests.conftest import EMBEDDED_MODEL, LiveServer


class Verdict(pydantic.BaseModel):
    answer: Literal["yes", "no"]
    confidence: int


def test_langchain_with_structured_output(embedded_server: LiveServer) -> None:
    from langchain_anthropic import ChatAnthropic

    chat = ChatAnthropic(  # type: ignore[call-arg]
        model=EMBEDDED_MODEL,
        base_url=embedded_server.base_url,
        api_key=embedded_server.key,
        max_tokens=40,
        temperature=0,
        max_retries=0,
    )
    verdict = chat.with_structured_output(Verdict, method="json_schema").invoke("Is water wet?")
    assert isinstance(verdict, Verdict)


def test_pydantic_ai_native_output(embedded_server: LiveServer) -> None:
    from pydantic_ai import Agent, NativeOutput
    from pydantic_ai.models.anthropic import AnthropicModel
    from pydantic_ai.profiles.anthropic import AnthropicModelProfile
    from pydantic_ai.providers.anthropic import AnthropicProvider

    model = AnthropicModel(
        EMBEDDED_MODEL,
        provider=AnthropicProvider(api_key=embedded_server.key, base_url=embedded_server.base_url),
        # pydantic-ai decides by Claude model name whether a model takes output_config.format;
        # the embedded model's name is not one it knows.
        profile=AnthropicModelProfile(supports_json_schema_output=True),
    )
    agent = Agent(
        model, output_type=NativeOutput(Verdict), model_settings={"max_tokens": 40, "temperature": 0}
    )
    result = agent.run_sync("Is water wet?")
    assert isinstance(result.output, Verdict)
