// The official AG-UI client for a web page: `npm run bundle` (esbuild) turns this into one
// script that sets `window.AgUi.runAgent(url, input)`, which runs one AG-UI run with
// `@ag-ui/client`'s HttpAgent from the page and resolves to what the client received:
//
//   {events: [...], outcome: "finished" | "error", error?: {...}}
//
// The page's own cookies go with the request (same origin), which is how a web app behind
// Palisade's browser sessions calls its agent: no token in the page. Used by
// tests/browser/sessions.rs in headless Chromium.
import { HttpAgent } from "@ag-ui/client";

async function runAgent(url, input) {
  const agent = new HttpAgent({
    url,
    threadId: input.threadId,
    initialMessages: input.messages ?? [],
    initialState: input.state ?? {},
  });
  const events = [];
  try {
    await agent.runAgent(
      {
        runId: input.runId,
        tools: input.tools ?? [],
        context: input.context ?? [],
        forwardedProps: input.forwardedProps ?? {},
      },
      { onEvent: ({ event }) => { events.push(event); } },
    );
    return { events, outcome: "finished" };
  } catch (e) {
    return {
      events,
      outcome: "error",
      error: { message: String(e?.message ?? e), status: e?.status ?? null },
    };
  }
}

window.AgUi = { runAgent };
