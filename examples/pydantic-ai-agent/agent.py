"""A pydantic-ai agent served over AG-UI (`pydantic_ai.ui.ag_ui.AGUIAdapter`), for Palisade.

The model is an offline, scripted `FunctionModel`, so the example runs without an API key and
behaves the same every time:

1. It streams a short text, then calls the backend tool `search_docs` with the user's words, and
   also `write_file` when the user's message contains the word "write". When the message
   contains "leak" it instead answers with a (fake) AWS access key, to show output guardrails.
2. After the tools return it calls every *frontend* tool the client offered (AG-UI `tools`), which
   ends the run with those calls pending for the client; when none was offered it streams a final
   answer quoting the search result.

Swap `FunctionModel(...)` for a real model (e.g. `"openai:gpt-5-mini"`) to use it for real.

Run: python agent.py --port 8000   (prints `ready http://127.0.0.1:8000/agent` once listening)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
from collections.abc import AsyncIterator

import uvicorn
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelRequest, ToolReturnPart, UserPromptPart
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, DeltaToolCalls, FunctionModel
from pydantic_ai.ui.ag_ui import AGUIAdapter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

# Seconds between streamed text deltas (`--delay`), so streaming is visible.
DELAY = 0.05


def _last_user_text(messages: list[ModelMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, ModelRequest):
            for part in message.parts:
                if isinstance(part, UserPromptPart) and isinstance(part.content, str):
                    return part.content
    return ""


async def scripted_model(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str | DeltaToolCalls]:
    """The offline model: text in small deltas, then tool calls, as described above."""
    last = messages[-1]
    returns = [p for p in getattr(last, "parts", []) if isinstance(p, ToolReturnPart)]
    if not returns:
        prompt = _last_user_text(messages)
        if "leak" in prompt.lower():
            # A model that leaks a credential (AWS's documented example key): what Palisade's
            # output guardrails are for.
            for chunk in ["Sure, the deploy key is ", "AKIAIOSFODNN7EXAMPLE", " - keep it safe."]:
                yield chunk
                await asyncio.sleep(DELAY)
            return
        # Turn 1: think out loud, then call the backend tools.
        for word in ["Let ", "me ", "look ", "that ", "up."]:
            yield word
            await asyncio.sleep(DELAY)
        calls: DeltaToolCalls = {
            1: DeltaToolCall(name="search_docs", json_args=json.dumps({"query": prompt}), tool_call_id="call_search"),
        }
        if "write" in prompt.lower():
            calls[2] = DeltaToolCall(
                name="write_file",
                json_args=json.dumps({"path": "/tmp/notes.txt", "content": prompt}),
                tool_call_id="call_write",
            )
        yield calls
        return
    # Turn 2: hand over to the client's (frontend) tools, or answer.
    frontend = [t for t in info.function_tools if t.kind == "external"]
    if frontend:
        yield {
            i: DeltaToolCall(name=t.name, json_args="{}", tool_call_id=f"call_{t.name}")
            for i, t in enumerate(frontend, start=1)
        }
        return
    found = next((str(r.content) for r in returns if r.tool_name == "search_docs"), "nothing")
    for chunk in ["Found: ", found, "."]:
        yield chunk
        await asyncio.sleep(DELAY)


agent = Agent(FunctionModel(stream_function=scripted_model, model_name="scripted"), name="assistant")


@agent.tool_plain
def search_docs(query: str) -> str:
    """Search the documentation."""
    return f"3 pages about {query!r}"


@agent.tool_plain
def write_file(path: str, content: str) -> str:
    """Write a file (a high-risk tool: Palisade's seed policies hide it from most roles)."""
    return f"wrote {len(content)} bytes to {path}"


async def run(request: Request) -> Response:
    return await AGUIAdapter.dispatch_request(request, agent=agent)


async def health(_: Request) -> Response:
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[Route("/agent", run, methods=["POST"]), Route("/healthz", health)])


def main() -> None:
    global DELAY
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed)")
    parser.add_argument("--delay", type=float, default=DELAY, help="seconds between text deltas")
    args = parser.parse_args()
    DELAY = args.delay
    # Bind first, so the ready line names the real port and nothing connects too early.
    sock = socket.create_server((args.host, args.port))
    port = sock.getsockname()[1]
    print(f"ready http://{args.host}:{port}/agent", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
