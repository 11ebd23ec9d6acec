"""A remote A2A agent for the orchestrator's delegation tests (the official `a2a-sdk`).

Every message gets a task that completes at once with one artifact: `Delegated: <text>`. The
JSON-RPC endpoint speaks A2A 1.0 (`SendMessage`) and, with `--v03`, also A2A 0.3
(`message/send`) on the same path. Requests that reach it are counted: `GET /count` answers the
number of JSON-RPC calls served (so a test can prove a retried call arrived exactly once).

Run: python a2a_delegate_agent.py --port 0 [--v03]
(prints `ready http://127.0.0.1:<port>/a2a` once listening)
"""

from __future__ import annotations

import argparse
import socket

import uvicorn
from a2a.helpers import get_message_text, new_task_from_user_message, new_text_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

SERVED = {"calls": 0}


class DelegateExecutor(AgentExecutor):
    """Completes each task with the artifact `Delegated: <text>`."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        SERVED["calls"] += 1
        task = context.current_task
        if task is None:
            task = new_task_from_user_message(context.message)
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue=event_queue, task_id=task.id, context_id=task.context_id)
        text = get_message_text(context.message) or ""
        await updater.add_artifact(
            parts=[new_text_part(text=f"Delegated: {text}", media_type="text/plain")],
            artifact_id="reply",
            name="reply",
        )
        await updater.complete(new_text_message("Done."))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        return None


def agent_card(url: str) -> AgentCard:
    return AgentCard(
        name="Palisade delegation test agent",
        description="Completes every task with 'Delegated: <text>'.",
        version="1.0.0",
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        capabilities=AgentCapabilities(streaming=False),
        supported_interfaces=[AgentInterface(protocol_binding="JSONRPC", protocol_version="1.0", url=url)],
        skills=[AgentSkill(id="delegate", name="Delegate", description="Echo with a prefix.", tags=["test"])],
    )


async def count(_request) -> PlainTextResponse:
    return PlainTextResponse(str(SERVED["calls"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--v03", action="store_true", help="also accept A2A 0.3 message/send")
    args = parser.parse_args()
    sock = socket.create_server((args.host, args.port))
    port = sock.getsockname()[1]
    card = agent_card(f"http://{args.host}:{port}/a2a")
    handler = DefaultRequestHandler(
        agent_executor=DelegateExecutor(), task_store=InMemoryTaskStore(), agent_card=card
    )
    routes = [
        *create_agent_card_routes(card),
        *create_jsonrpc_routes(handler, "/a2a", enable_v0_3_compat=args.v03),
        Route("/count", count),
    ]
    app = Starlette(routes=routes)
    print(f"ready http://{args.host}:{port}/a2a", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


if __name__ == "__main__":
    main()
