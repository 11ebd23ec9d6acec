"""The official `mcp` SDK client, driven by tests/peers/mcp.rs through Palisade.

Usage: python mcp_client.py URL TOKEN MODE   (MODE: legacy | auto, the SDK's connect modes)

Lists the tools, calls `search_docs` (3 pages, recording when each progress notification
arrived), `read_file` and `write_file`, and prints one JSON object:
  {"tools": [...], "session": "<Mcp-Session-Id or null>",
   "calls": {"<tool>": "<first text>" | "error" | "refused <JSON-RPC code>"},
   "progress_ms": [<ms since the call started, per notification>], "result_ms": <ms>}
"""

import asyncio
import json
import sys
import time

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

url, token, mode = sys.argv[1], sys.argv[2], sys.argv[3]


async def main() -> None:
    sessions: list[str] = []

    async def record_session(response: httpx2.Response) -> None:
        if sid := response.headers.get("mcp-session-id"):
            sessions.append(sid)

    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {token}"} if token else {},
        timeout=20,
        event_hooks={"response": [record_session]},
    )
    out: dict = {"calls": {}}
    async with Client(streamable_http_client(url, http_client=http), mode=mode, cache=None) as client:
        tools = await client.list_tools()
        out["tools"] = sorted(t.name for t in tools.tools)

        arrivals: list[float] = []
        start = time.monotonic()

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            arrivals.append(round((time.monotonic() - start) * 1000, 1))

        calls = [
            ("search_docs", {"query": "cedar", "pages": 3}, on_progress),
            ("read_file", {"path": "/srv/a.txt"}, None),
            ("write_file", {"path": "/tmp/x", "content": "hi"}, None),
        ]
        for name, args, callback in calls:
            try:
                r = await client.call_tool(name, args, progress_callback=callback)
                out["calls"][name] = "error" if r.is_error else r.content[0].text
            except Exception as e:  # the SDK raises MCPError for a JSON-RPC error answer
                out["calls"][name] = f"refused {getattr(getattr(e, 'error', None), 'code', None)}"
            if name == "search_docs":
                out["progress_ms"] = arrivals
                out["result_ms"] = round((time.monotonic() - start) * 1000, 1)
    out["session"] = sessions[0] if sessions else None
    print(json.dumps(out, sort_keys=True))


asyncio.run(main())
