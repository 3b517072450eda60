// The official TypeScript SDK as a client of one of our servers.
//
//   node client.mjs stdio <command> [args...]
//   node client.mjs http|sse <url> [bearer-token]
//
// Connects (handshake era: the TypeScript SDK speaks 2025-11-25), lists the tools, makes the calls
// in MCP_PEER_CALLS (a JSON array of {name, arguments}), reads the URIs in MCP_PEER_READS, and
// prints one JSON report on stdout for the test to check. Errors thrown by the SDK are reported,
// not hidden: the test decides what is expected.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";

const [kind, target, ...rest] = process.argv.slice(2);
const calls = JSON.parse(process.env.MCP_PEER_CALLS ?? "[]");
const reads = JSON.parse(process.env.MCP_PEER_READS ?? "[]");

function transportFor() {
  const token = rest[0];
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  switch (kind) {
    case "stdio":
      return new StdioClientTransport({ command: target, args: rest, stderr: "inherit" });
    case "http":
      return new StreamableHTTPClientTransport(new URL(target), { requestInit: { headers } });
    case "sse":
      return new SSEClientTransport(new URL(target), {
        requestInit: { headers },
        eventSourceInit: { fetch: (url, init) => fetch(url, { ...init, headers: { ...init?.headers, ...headers } }) },
      });
    default:
      throw new Error(`unknown transport ${kind}; use stdio, http or sse`);
  }
}

const transport = transportFor();
let negotiated;
const setVersion = transport.setProtocolVersion?.bind(transport);
transport.setProtocolVersion = (version) => {
  negotiated = version;
  setVersion?.(version);
};

const client = new Client({ name: "typescript-sdk-peer", version: "1.0.0" });
await client.connect(transport);
const report = {
  protocolVersion: negotiated,
  server: client.getServerVersion(),
  tools: (await client.listTools()).tools,
  calls: [],
  reads: [],
};
for (const call of calls) {
  try {
    report.calls.push({ result: await client.callTool(call) });
  } catch (error) {
    report.calls.push({ thrown: { code: error.code, message: String(error.message ?? error) } });
  }
}
for (const uri of reads) {
  try {
    report.reads.push({ result: await client.readResource({ uri }) });
  } catch (error) {
    report.reads.push({ thrown: { code: error.code, message: String(error.message ?? error) } });
  }
}
await client.close();
process.stdout.write(JSON.stringify(report) + "\n");
