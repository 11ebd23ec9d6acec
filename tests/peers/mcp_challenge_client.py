"""Reads Palisade's step-up challenges the way the `mcp` SDK's OAuth client does.

Usage: mcp_challenge_client.py URL TOKEN TOOL

Sends an MCP `tools/call` of TOOL with TOKEN, then parses the refusal's `WWW-Authenticate`
with the SDK's own helpers (`mcp.client.auth.utils`: the ones its `OAuthClientProvider` uses
to decide on a scope step-up and to find the protected-resource metadata), fetches that
metadata and validates it with the SDK's model. Prints one JSON line with what it read.
"""

import asyncio
import json
import sys

import httpx2
from mcp.client.auth.utils import (
    extract_field_from_www_auth,
    extract_resource_metadata_from_www_auth,
    extract_scope_from_www_auth,
    handle_protected_resource_response,
)


async def main() -> None:
    url, token, tool = sys.argv[1], sys.argv[2], sys.argv[3]
    call = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": tool, "arguments": {}},
    }
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-06-18",
    }
    async with httpx2.AsyncClient(timeout=30) as http:
        response = await http.post(url, json=call, headers=headers)
        out = {
            "status": response.status_code,
            "error": extract_field_from_www_auth(response, "error"),
            "scope": extract_scope_from_www_auth(response),
            "acr_values": extract_field_from_www_auth(response, "acr_values"),
            "max_age": extract_field_from_www_auth(response, "max_age"),
            "resource_metadata": extract_resource_metadata_from_www_auth(response),
            # What the SDK's OAuth client decides on: a 403 insufficient_scope is a step-up.
            "sdk_step_up": response.status_code == 403
            and extract_field_from_www_auth(response, "error") == "insufficient_scope",
            "code": response.json().get("error", {}).get("code"),
        }
        if out["resource_metadata"]:
            prm = await handle_protected_resource_response(await http.get(out["resource_metadata"]))
            out["prm_resource"] = str(prm.resource) if prm else None
    print(json.dumps(out))


asyncio.run(main())
