/** POST /v1/chat/completions and POST /v1/completions: OpenAI chat and text completions. */
import { chatEncoder, chatInput, chatResponse } from "../../lib/api/openai/chat.ts";
import {
  completionEncoder,
  completionInput,
  completionResponse,
} from "../../lib/api/openai/completions.ts";
import {
  type ChatRequest,
  type CompletionRequest,
  parseChatRequest,
  parseCompletionRequest,
} from "../../lib/api/openai/protocol.ts";
import type { RequestContext } from "../http.ts";
import {
  chatInputOptions,
  type HttpFamily,
  needsPromptIds,
  serveGeneration,
} from "../generation.ts";

const CHAT: HttpFamily<ChatRequest> = {
  label: "chat completion request",
  parse: (body) => parseChatRequest(body),
  input: (sim, body) => chatInput(body, sim.tokenizer, chatInputOptions(sim)),
  encoder: chatEncoder,
  respond: chatResponse,
};

const COMPLETIONS: HttpFamily<CompletionRequest> = {
  label: "text completion request",
  parse: (body, cfg) => parseCompletionRequest(body, cfg["max-sequences-per-request"]),
  input: (sim, body) => completionInput(body, sim.tokenizer, needsPromptIds(sim)),
  encoder: completionEncoder,
  respond: completionResponse,
};

export function chatCompletions(req: Request, ctx: RequestContext): Response | Promise<Response> {
  return serveGeneration(req, ctx, CHAT);
}

export function completions(req: Request, ctx: RequestContext): Response | Promise<Response> {
  return serveGeneration(req, ctx, COMPLETIONS);
}
