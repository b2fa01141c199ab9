/** POST /v1/embeddings: through the engine as prefill-only requests. */
import {
  embeddingInput,
  type EmbeddingRequest,
  embeddingResponse,
  parseEmbeddingRequest,
} from "../../lib/api/openai/embeddings.ts";
import type { RequestContext } from "../http.ts";
import { type HttpFamily, serveGeneration } from "../generation.ts";

const EMBEDDINGS: HttpFamily<EmbeddingRequest> = {
  label: "embedding request",
  parse: (body, cfg) =>
    parseEmbeddingRequest(
      body,
      cfg["default-embedding-dimensions"],
      cfg["max-sequences-per-request"],
    ),
  input: (sim, body) => embeddingInput(body, sim.tokenizer, sim.models.displayName),
  respond: (_meta, body, _admitted, answer) => embeddingResponse(body, answer),
};

export function embeddings(req: Request, ctx: RequestContext): Response | Promise<Response> {
  return serveGeneration(req, ctx, EMBEDDINGS);
}
