#!/usr/bin/env node
// Runs one AG-UI run with the official client (`@ag-ui/client` HttpAgent) and prints what the
// client received, one JSON object per line on stdout:
//
//   {"event": {...}, "at_ms": 12.3}      every event the client applied, in order, with the time
//                                        since the request started
//   {"outcome": "finished", "messages": [...], "new_messages": [...]}
//                                        the run promise resolved (after RUN_FINISHED or RUN_ERROR)
//   {"outcome": "error", "error": {"message": "...", "status": 403, "payload": {...}}}
//                                        the client raised an error (HTTP status, bad stream…)
//
// Usage: node run.mjs URL [INPUT_JSON]
//   URL         the AG-UI endpoint (e.g. http://127.0.0.1:8080/agent)
//   INPUT_JSON  a RunAgentInput as JSON (threadId, runId, messages, tools, context, state,
//               forwardedProps; all optional), or `-` to read it from stdin; default: one user
//               message "hello"
// Env: AGUI_TOKEN     sent as `Authorization: Bearer <token>` when set
//      AGUI_HEADERS   extra request headers as a JSON object
// Exit status: 0 when the client finished or raised an error it reports (both are printed);
// 2 on bad usage.
import { readFileSync } from "node:fs";
import { HttpAgent } from "@ag-ui/client";

const [url, inputArg] = process.argv.slice(2);
if (!url) {
  process.stderr.write("usage: node run.mjs URL [INPUT_JSON | -]\n");
  process.exit(2);
}
const input = inputArg === "-"
  ? JSON.parse(readFileSync(0, "utf8"))
  : inputArg
    ? JSON.parse(inputArg)
    : { messages: [{ id: "m1", role: "user", content: "hello" }] };

const headers = JSON.parse(process.env.AGUI_HEADERS || "{}");
if (process.env.AGUI_TOKEN) headers.Authorization = `Bearer ${process.env.AGUI_TOKEN}`;

const agent = new HttpAgent({
  url,
  headers,
  threadId: input.threadId,
  initialMessages: input.messages ?? [],
  initialState: input.state ?? {},
});

const print = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
const started = performance.now();

const errorJson = (e) => ({
  message: String(e?.message ?? e),
  status: e?.status ?? null,
  payload: e?.payload ?? null,
});

try {
  const result = await agent.runAgent(
    {
      runId: input.runId,
      tools: input.tools ?? [],
      context: input.context ?? [],
      forwardedProps: input.forwardedProps ?? {},
    },
    {
      onEvent({ event }) {
        print({ event, at_ms: Math.round((performance.now() - started) * 10) / 10 });
      },
    },
  );
  print({ outcome: "finished", messages: agent.messages, new_messages: result.newMessages });
} catch (e) {
  print({ outcome: "error", error: errorJson(e) });
}
