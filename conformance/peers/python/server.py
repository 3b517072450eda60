"""The official Python SDK as a server, for tests of our client side.

    python server.py stdio
    python server.py http PORT      (Streamable HTTP at http://127.0.0.1:PORT/mcp)
    python server.py sse PORT       (legacy SSE at http://127.0.0.1:PORT/sse)
"""

import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("python-peer")


@server.tool()
def echo(text: str) -> str:
    """Returns its input."""
    return text


@server.tool()
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


@server.resource("peer://greeting")
def greeting() -> str:
    """A fixed greeting."""
    return "Hello from the Python SDK."


if __name__ == "__main__":
    kind = sys.argv[1] if len(sys.argv) > 1 else "stdio"
    if kind == "stdio":
        server.run("stdio")
    elif kind == "http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    elif kind == "sse":
        server.run("sse", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        raise SystemExit(f"unknown transport {kind}; use stdio, http or sse")
