/** POST /v1/responses: the OpenAI Responses API on the shared generation pipeline. */
import {
  responsesEncoder,
  responsesInput,
  responsesResponse,
} from "../../lib/api/openai/responses.ts";
import {
  parseResponsesRequest,
  type ResponsesRequest,
} from "../../lib/api/openai/responses_protocol.ts";
import type { RequestContext } from "../http.ts";
import { chatInputOptions, type HttpFamily, serveGeneration } from "../generation.ts";

const RESPONSES: HttpFamily<ResponsesRequest> = {
  label: "responses create request",
  parse: parseResponsesRequest,
  input: (sim, body) => responsesInput(body, sim.tokenizer, chatInputOptions(sim)),
  encoder: responsesEncoder,
  respond: responsesResponse,
  // Only the global cache-hit threshold applies here (kv-cache.md), not the header.
  flags: () => ({}),
};

export function responses(req: Request, ctx: RequestContext): Response | Promise<Response> {
  return serveGeneration(req, ctx, RESPONSES);
}
