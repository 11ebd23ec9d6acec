"""The official `a2a-sdk` client, driven by tests/peers/a2a.rs through Palisade.

Usage: python a2a_client.py BASE_URL TOKEN

Resolves the agent card from BASE_URL (`/.well-known/agent-card.json`), then sends one message
with `SendMessage` (and `CancelTask` on the task it got) and one with `SendStreamingMessage`
through the card's JSON-RPC interface, and prints one JSON object:
  {"card": {"name", "url"} | "refused <error>",
   "send": {"state", "text"} | "refused <error>",
   "cancel": "<task state>" | "refused <error>"   (only when `send` got a task),
   "stream": {"kinds": [...], "at_ms": [...], "text", "state"} | "refused <error>"}
`text` is the artifact text the agent returned; `kinds` the stream's update kinds in order.
"""

import asyncio
import json
import sys
import time
from uuid import uuid4

import httpx
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types.a2a_pb2 import CancelTaskRequest, Message, Part, Role, SendMessageRequest, TaskState

base_url, token = sys.argv[1], sys.argv[2]


def refused(e: Exception) -> str:
    return f"refused {type(e).__name__}: {e}"


def request(text: str) -> SendMessageRequest:
    message = Message(role=Role.ROLE_USER, parts=[Part(text=text)], message_id=uuid4().hex)
    return SendMessageRequest(message=message)


def artifact_text(task) -> str:
    return "".join(p.text for a in task.artifacts for p in a.parts)


async def main() -> None:
    out: dict = {}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(headers=headers, timeout=20) as http:
        try:
            card = await A2ACardResolver(httpx_client=http, base_url=base_url).get_agent_card()
        except Exception as e:
            out["card"] = refused(e)
            print(json.dumps(out, sort_keys=True))
            return
        out["card"] = {"name": card.name, "url": card.supported_interfaces[0].url}

        client = ClientFactory(config=ClientConfig(streaming=False, httpx_client=http)).create(card)
        try:
            task = None
            async for item in client.send_message(request("hello")):
                if item.HasField("task"):
                    task = item.task
            out["send"] = {
                "state": TaskState.Name(task.status.state) if task else None,
                "text": artifact_text(task) if task else None,
            }
            if task is not None:
                try:
                    cancelled = await client.cancel_task(CancelTaskRequest(id=task.id))
                    out["cancel"] = TaskState.Name(cancelled.status.state)
                except Exception as e:
                    out["cancel"] = refused(e)
        except Exception as e:
            out["send"] = refused(e)

        streaming = ClientFactory(config=ClientConfig(streaming=True, httpx_client=http)).create(card)
        kinds, at_ms, text, state = [], [], "", None
        start = time.monotonic()
        try:
            async for item in streaming.send_message(request("streamed")):
                at_ms.append(round((time.monotonic() - start) * 1000, 1))
                kind = item.WhichOneof("payload")
                kinds.append(kind)
                if kind == "artifact_update":
                    text += "".join(p.text for p in item.artifact_update.artifact.parts)
                elif kind == "status_update":
                    state = TaskState.Name(item.status_update.status.state)
                elif kind == "task":
                    state = TaskState.Name(item.task.status.state)
            out["stream"] = {"kinds": kinds, "at_ms": at_ms, "text": text, "state": state}
        except Exception as e:
            out["stream"] = refused(e)
    print(json.dumps(out, sort_keys=True))


asyncio.run(main())
