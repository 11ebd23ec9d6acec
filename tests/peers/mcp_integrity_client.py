"""The official `mcp` SDK client for tests/peers/mcp.rs (tool-definition integrity).

Usage: python mcp_integrity_client.py URL MODE TOOL...   (MODE: legacy | auto)

Lists the tools, calls each TOOL with {"path": "/srv/a.txt"} (`query` for search_docs) and
prints one JSON object:
  {"tools": [...], "calls": {"<tool>": "<first text>" | "error" | "refused <JSON-RPC code>"},
   "messages": {"<tool>": "<the refusal's message>"}}
"""

import asyncio
import json
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

url, mode, names = sys.argv[1], sys.argv[2], sys.argv[3:]


async def main() -> None:
    out: dict = {"calls": {}, "messages": {}}
    http = httpx2.AsyncClient(timeout=20)
    async with Client(streamable_http_client(url, http_client=http), mode=mode, cache=None) as client:
        tools = await client.list_tools()
        out["tools"] = sorted(t.name for t in tools.tools)
        for name in names:
            args = {"query": "cedar"} if name == "search_docs" else {"path": "/srv/a.txt"}
            try:
                r = await client.call_tool(name, args)
                out["calls"][name] = "error" if r.is_error else r.content[0].text
            except Exception as e:  # the SDK raises MCPError for a JSON-RPC error answer
                error = getattr(e, "error", None)
                out["calls"][name] = f"refused {getattr(error, 'code', None)}"
                out["messages"][name] = getattr(error, "message", str(e))
    print(json.dumps(out, sort_keys=True))


asyncio.run(main())
