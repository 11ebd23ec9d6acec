"""An MCP server (the official `mcp` Python SDK, Streamable HTTP) to put behind Palisade.

Tools (names match Palisade's seed tool catalog in policies/tools.yaml, so the seed policies
decide them):

- `search_docs(query, pages=1)`: low risk. Reports progress once per page, `delay` seconds apart,
  so a client sees notifications arrive one by one on an SSE response.
- `read_file(path)`: medium risk (developers and up; system paths refused by the ABAC policy).
- `write_file(path, content)`: high risk (operators with MFA).

Modes:
- default: the 2025 stateful mode — `initialize` hands out an `Mcp-Session-Id`, responses are SSE.
- `--stateless`: no sessions; every request stands alone (also what the 2026 transport expects).
- `--json`: answer with plain JSON instead of SSE streams.

Run: python server.py --port 8001 [--stateless] [--json]
(prints `ready http://127.0.0.1:8001/mcp` once listening; `--port 0` picks a free port)
"""

from __future__ import annotations

import argparse
import asyncio
import socket

import uvicorn
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

mcp = MCPServer("palisade-example")
DELAY = 0.2


@mcp.tool()
async def search_docs(query: str, ctx: Context, pages: int = 1) -> str:
    """Search the documentation, reporting progress once per page."""
    for page in range(1, pages + 1):
        await ctx.report_progress(page, pages, f"page {page}")
        if page < pages:
            await asyncio.sleep(DELAY)
    return f"results for {query}"


@mcp.tool()
def read_file(path: str) -> str:
    """Read a file."""
    return f"contents of {path}"


@mcp.tool()
def write_file(path: str, content: str) -> str:
    """Write a file."""
    return f"wrote {len(content)} bytes to {path}"


@mcp.custom_route("/healthz", methods=["GET"])
async def health(_: Request) -> Response:
    """Liveness for scripts waiting on the server (GET /mcp would open an SSE stream)."""
    return JSONResponse({"status": "ok"})


def main() -> None:
    global DELAY
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001, help="0 picks a free port (printed)")
    parser.add_argument("--stateless", action="store_true", help="no sessions (stateless mode)")
    parser.add_argument("--json", action="store_true", help="JSON responses instead of SSE")
    parser.add_argument("--delay", type=float, default=DELAY, help="seconds between progress notifications")
    args = parser.parse_args()
    DELAY = args.delay
    app = mcp.streamable_http_app(stateless_http=args.stateless, json_response=args.json, host=args.host)
    # Bind first, so the ready line names the real port and nothing connects too early.
    sock = socket.create_server((args.host, args.port))
    port = sock.getsockname()[1]
    mode = "stateless" if args.stateless else "session"
    print(f"ready http://{args.host}:{port}/mcp ({mode}, {'json' if args.json else 'sse'})", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


if __name__ == "__main__":
    main()
