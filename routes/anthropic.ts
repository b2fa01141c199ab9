/** POST /v1/messages: the Anthropic Messages API (messages.md). */
import { messagesEncoder, messagesInput, messagesResponse } from "../lib/api/anthropic/messages.ts";
import { type MessagesRequest, parseMessagesRequest } from "../lib/api/anthropic/protocol.ts";
import type { RequestContext } from "./http.ts";
import { chatInputOptions, type HttpFamily, serveGeneration } from "./generation.ts";

const MESSAGES: HttpFamily<MessagesRequest> = {
  label: "messages request",
  parse: (body) => parseMessagesRequest(body),
  input: (sim, body) => messagesInput(body, sim.tokenizer, chatInputOptions(sim)),
  encoder: messagesEncoder,
  respond: messagesResponse,
};

export function messages(req: Request, ctx: RequestContext): Response | Promise<Response> {
  return serveGeneration(req, ctx, MESSAGES);
}
