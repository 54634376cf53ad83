"""SubAgent: chat models, runnables, compiled graphs and callables, with config passed through."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig, RunnableLambda

from langgraph_fanout import ConfigurationError, SubAgent, dispatch_agents


class Recorder(AsyncCallbackHandler):
    """Records the tags and metadata of every chat model start it sees."""

    def __init__(self) -> None:
        self.starts: list[tuple[list[str], dict[str, Any]]] = []

    async def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.starts.append((list(tags or []), dict(metadata or {})))


def fake_model(n: int = 10) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter([AIMessage(f"answer {i}") for i in range(n)]))


async def test_chat_model_gets_a_human_message_and_config() -> None:
    model = fake_model()
    recorder = Recorder()
    result = await dispatch_agents(
        "Classify: {text}",
        [{"text": "a"}, {"text": "b"}],
        agent=model,
        config={"callbacks": [recorder], "tags": ["batch-7"], "metadata": {"job": "j1"}},
    )
    assert all(isinstance(r.output, AIMessage) for r in result)
    assert len(recorder.starts) == 2
    assert all("batch-7" in tags and meta.get("job") == "j1" for tags, meta in recorder.starts)


def test_subagent_reads_model_facts() -> None:
    from langchain_openai import ChatOpenAI

    model = ChatOpenAI(model="gpt-4o-mini", api_key="sk-test", max_tokens=300, max_retries=0)
    agent = SubAgent.of(model)
    assert agent.name == "gpt-4o-mini"
    assert agent.model == "gpt-4o-mini"
    assert agent.provider == "openai"
    assert agent.max_output_tokens == 300
    assert agent.kind == "chat_model"
    assert agent.identity()["max_tokens"] == 300
    renamed = SubAgent.of(agent, name="writer")
    assert renamed.name == "writer" and renamed.model == "gpt-4o-mini"
    assert SubAgent.of(agent) is agent


async def test_runnable_receives_config() -> None:
    seen: list[RunnableConfig] = []

    def body(x: str, config: RunnableConfig) -> str:
        seen.append(config)
        return x.upper()

    runnable = RunnableLambda(body, name="shout")
    result = await dispatch_agents(
        "{t}", [{"t": "hi"}], agent=runnable, config={"tags": ["t1"], "metadata": {"m": 1}}
    )
    assert result.outputs == ["HI"]
    assert result[0].agent == "shout"
    assert "t1" in seen[0].get("tags", []) and seen[0].get("metadata", {}).get("m") == 1


async def test_compiled_agent_graph_gets_messages_and_returns_last_message() -> None:
    from langchain.agents import create_agent

    graph = create_agent(fake_model(), tools=[])
    agent = SubAgent.of(graph, name="helper")
    assert agent.kind == "runnable"
    result = await dispatch_agents("Say {x}", [{"x": "hi"}], agent=agent)
    assert result[0].ok, result[0].error
    assert isinstance(result[0].output, AIMessage)
    assert result[0].output.content == "answer 0"


async def test_callables_sync_and_async_with_optional_config() -> None:
    async def a(x: str) -> str:
        return "a" + x

    def s(x: str, config: RunnableConfig) -> str:
        return "s" + x + str(config.get("tags"))

    r1 = await dispatch_agents(None, ["1"], agent=a)
    r2 = await dispatch_agents(None, ["1"], agent=s, config={"tags": ["z"]})
    assert r1.outputs == ["a1"]
    assert r2.outputs == ["s1['z']"]


async def test_a_chat_model_gets_text_as_one_human_message() -> None:
    # Text goes to the model as is, and LangChain sends it as one human message, exactly as
    # model.ainvoke(text) would; messages are passed through untouched.
    seen: list[list[BaseMessage]] = []

    class Recording(FakeListChatModel):
        async def _agenerate(self, messages: Any, stop: Any = None, **kw: Any) -> Any:
            seen.append(messages)
            return await super()._agenerate(messages, stop, **kw)

    agent = SubAgent.of(Recording(responses=["a", "b"]))
    assert agent.prepare("hello") == "hello"
    messages = [HumanMessage("x")]
    assert agent.prepare(messages) is messages
    await agent.ainvoke("hello")
    await agent.ainvoke(messages)
    assert [[(m.type, m.content) for m in call] for call in seen] == [
        [("human", "hello")],
        [("human", "x")],
    ]


def test_bad_agents_are_rejected() -> None:
    with pytest.raises(ConfigurationError, match="cannot use str"):
        SubAgent.of("gpt-4o")
    with pytest.raises(ConfigurationError, match="max_output_tokens"):
        SubAgent.of(lambda x: x, max_output_tokens=0)


def test_chat_models_that_retry_on_their_own_are_warned_about() -> None:
    from langchain_openai import ChatOpenAI

    from langgraph_fanout.errors import ClientRetriesWarning

    with pytest.warns(ClientRetriesWarning, match="max_retries=0"):
        SubAgent.of(ChatOpenAI(model="gpt-4.1-nano", api_key="sk-test"))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SubAgent.of(ChatOpenAI(model="gpt-4.1-nano", api_key="sk-test", max_retries=0))


def test_error_details_never_carry_secrets() -> None:
    from langgraph_fanout.guards.classify import classify_error

    err = classify_error(
        PermissionError("invalid key sk-proj-0123456789abcdefghijklmnop for jane@example.com"),
        agent="a",
    )
    assert "sk-proj" not in str(err) and "jane@example.com" not in str(err)
    assert "[REDACTED:OPENAI_KEY]" in str(err)


def test_identity_tells_distinct_agents_apart_and_is_stable() -> None:
    from langchain_openai import ChatOpenAI

    def upper(x: str) -> str:
        return x.upper()

    def lower(x: str) -> str:
        return x.lower()

    f, g = SubAgent.of(lambda x: x, name="f"), SubAgent.of(lambda x: x * 2, name="f")
    assert f.identity() != g.identity()  # two lambdas, one name
    chain_a = RunnableLambda(upper) | RunnableLambda(lower)
    chain_b = RunnableLambda(lower) | RunnableLambda(upper)
    assert SubAgent.of(chain_a).identity() != SubAgent.of(chain_b).identity()
    assert SubAgent.of(chain_a).identity() == SubAgent.of(chain_a).identity()
    here = ChatOpenAI(model="m", api_key="sk-secret-123", max_retries=0)
    there = ChatOpenAI(model="m", api_key="sk-secret-123", max_retries=0, base_url="http://o/v1")
    assert SubAgent.of(here).identity() != SubAgent.of(there).identity()
    assert "sk-secret-123" not in str(SubAgent.of(there).identity())  # no secrets in keys


IDENTITY_CHILD = """
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel
from langgraph_fanout import SubAgent

def summarize(xs):
    return sum(len(x) for x in xs)  # a generator expression: a nested code object

graph = create_agent(GenericFakeChatModel(messages=iter([])), tools=[])
print(SubAgent.of(graph).identity(), SubAgent.of(summarize).identity())
"""


def test_identity_is_the_same_in_every_process() -> None:
    import subprocess
    import sys

    runs = [
        subprocess.run(
            [sys.executable, "-c", IDENTITY_CHILD], capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    assert "0x" not in runs[0]
    assert "nodes=" in runs[0]  # a compiled graph is known by its shape
