"""An A2A agent (the official `a2a-sdk`, A2A protocol 1.0, JSON-RPC binding) to put behind Palisade.

It answers every message with a task that streams its work: a `working` status, the reply as
three artifact chunks `--delay` seconds apart, then `completed`. So a streaming client
(`SendStreamingMessage`) sees updates arrive one by one, and a plain `SendMessage` gets the
finished task.

Endpoints:
- `POST /a2a`: JSON-RPC (`SendMessage`, `SendStreamingMessage`, `GetTask`, `CancelTask`, ...).
- `GET /.well-known/agent-card.json`: the agent card. Its interface URL is `--public-url`, which
  should be the address clients use, i.e. Palisade's (default: this server's own `/a2a`).

Run: python agent.py --port 8002 --public-url http://127.0.0.1:8080/a2a
(prints `ready http://127.0.0.1:8002/a2a` once listening; `--port 0` picks a free port)
"""

from __future__ import annotations

import argparse
import asyncio
import socket

import uvicorn
from a2a.helpers import get_message_text, new_task_from_user_message, new_text_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill
from a2a.types.a2a_pb2 import TaskState
from starlette.applications import Starlette


class EchoExecutor(AgentExecutor):
    """Replies `You said: <text>` in three streamed artifact chunks."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task = context.current_task
        if task is None:
            task = new_task_from_user_message(context.message)
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue=event_queue, task_id=task.id, context_id=task.context_id)
        await updater.update_status(TaskState.TASK_STATE_WORKING, message=new_text_message("Working..."))
        text = get_message_text(context.message) or ""
        chunks = ["You ", "said: ", text]
        for i, chunk in enumerate(chunks):
            await asyncio.sleep(self.delay)
            await updater.add_artifact(
                parts=[new_text_part(text=chunk, media_type="text/plain")],
                artifact_id="reply",
                name="reply",
                append=i > 0,
                last_chunk=i == len(chunks) - 1,
            )
        await updater.complete(new_text_message("Done."))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        task = context.current_task
        if task is not None:
            updater = TaskUpdater(event_queue=event_queue, task_id=task.id, context_id=task.context_id)
            await updater.update_status(TaskState.TASK_STATE_CANCELED)


def agent_card(public_url: str) -> AgentCard:
    return AgentCard(
        name="Palisade example agent",
        description="Echoes your message back as a streamed artifact.",
        version="1.0.0",
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        capabilities=AgentCapabilities(streaming=True),
        supported_interfaces=[AgentInterface(protocol_binding="JSONRPC", protocol_version="1.0", url=public_url)],
        skills=[
            AgentSkill(
                id="echo",
                name="Echo",
                description="Repeats the message, streamed in chunks.",
                tags=["example"],
                examples=["hello"],
            )
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002, help="0 picks a free port (printed)")
    parser.add_argument("--public-url", help="JSON-RPC URL clients use (default: this server's /a2a)")
    parser.add_argument("--delay", type=float, default=0.2, help="seconds between artifact chunks")
    args = parser.parse_args()
    # Bind first, so the ready line names the real port and nothing connects too early.
    sock = socket.create_server((args.host, args.port))
    port = sock.getsockname()[1]
    card = agent_card(args.public_url or f"http://{args.host}:{port}/a2a")
    handler = DefaultRequestHandler(
        agent_executor=EchoExecutor(args.delay), task_store=InMemoryTaskStore(), agent_card=card
    )
    routes = [*create_agent_card_routes(card), *create_jsonrpc_routes(handler, "/a2a")]
    app = Starlette(routes=routes)
    print(f"ready http://{args.host}:{port}/a2a", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


if __name__ == "__main__":
    main()
