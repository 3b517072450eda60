"""The official Python SDK as a client of one of our servers.

    python client.py stdio <command> [args...]
    python client.py http|sse <url> [bearer-token]

MCP_PEER_MODE picks the protocol era: "auto" (default: probes the 2026-07-28 `server/discover`,
falls back to the handshake) or "legacy" (the `initialize` handshake). Lists the tools, makes the
calls in MCP_PEER_CALLS (a JSON array of {name, arguments}), reads the URIs in MCP_PEER_READS,
and prints one JSON report on stdout for the test to check.
"""

import asyncio
import json
import os
import sys

import httpx2
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client


def dump(model):
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def server_for(kind, target, rest):
    token = rest[0] if rest else None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if kind == "stdio":
        return StdioServerParameters(command=target, args=rest)
    if kind == "http":
        return streamable_http_client(target, http_client=httpx2.AsyncClient(headers=headers))
    if kind == "sse":
        return sse_client(target, headers=headers)
    raise SystemExit(f"unknown transport {kind}; use stdio, http or sse")


async def main():
    kind, target, *rest = sys.argv[1:]
    calls = json.loads(os.environ.get("MCP_PEER_CALLS", "[]"))
    reads = json.loads(os.environ.get("MCP_PEER_READS", "[]"))
    mode = os.environ.get("MCP_PEER_MODE", "auto")
    async with Client(server_for(kind, target, rest), mode=mode, cache=None) as client:
        report = {
            "protocolVersion": client.protocol_version,
            "server": dump(client.server_info) if client.server_info else None,
            "tools": [dump(tool) for tool in (await client.list_tools()).tools],
            "calls": [],
            "reads": [],
        }
        for call in calls:
            try:
                result = await client.call_tool(call["name"], call.get("arguments") or {})
                report["calls"].append({"result": dump(result)})
            except Exception as error:  # the test decides what is expected
                report["calls"].append({"thrown": {"message": str(error)}})
        for uri in reads:
            try:
                report["reads"].append({"result": dump(await client.read_resource(uri))})
            except Exception as error:
                report["reads"].append({"thrown": {"message": str(error)}})
    print(json.dumps(report))


asyncio.run(main())
