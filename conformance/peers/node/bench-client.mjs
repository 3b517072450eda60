// The official TypeScript SDK's client timing tool calls to a server over stdio, for the
// side-by-side benchmarks (the client JavaScript hosts build on: each answer parsed whole).
//
//   node bench-client.mjs '{"name": ..., "arguments": {...}, "warm": 1, "times": 3}' <command> [args...]
//
// The name "ping" times `ping` requests instead of a tool: the client's and transport's own cost.
// Connects, lists the tools (as a host does, so a declared output schema is checked), makes
// `warm` untimed calls, then `times` timed ones, and prints {"ms": [each timed call]} on stdout.
// A tool error fails the run: a benchmark of errors would measure nothing.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const [spec, command, ...args] = process.argv.slice(2);
const { name, arguments: callArguments, warm = 0, times = 1 } = JSON.parse(spec);

const client = new Client({ name: "bench", version: "1.0.0" });
await client.connect(new StdioClientTransport({ command, args, stderr: "ignore" }));
await client.listTools();

async function call() {
  if (name === "ping") {
    await client.ping();
    return;
  }
  const result = await client.callTool({ name, arguments: callArguments }, undefined, {
    timeout: 600_000,
  });
  if (result.isError) {
    throw new Error(`${name}: ${JSON.stringify(result.content).slice(0, 500)}`);
  }
}

for (let i = 0; i < warm; i++) {
  await call();
}
const ms = [];
for (let i = 0; i < times; i++) {
  const started = performance.now();
  await call();
  ms.push(performance.now() - started);
}
await client.close();
process.stdout.write(JSON.stringify({ ms }) + "\n");
