/** The route table: every path the server answers, in one place. */
import { getAdminConfig, postAdminConfig } from "./admin.ts";
import { messages } from "./anthropic.ts";
import { health, ready, version } from "./health.ts";
import { loadLoraAdapter, unloadLoraAdapter } from "./lora.ts";
import { fakeMetrics, fleetTargets, metrics } from "./metrics.ts";
import { listModels } from "./models.ts";
import { chatCompletions, completions } from "./openai/chat.ts";
import { embeddings } from "./openai/embeddings.ts";
import { responses } from "./openai/responses.ts";
import type { Route } from "./router.ts";
import { isSleeping, sleep, wakeUp } from "./sleep.ts";
import {
  chatCompletionsRender,
  completionsRender,
  detokenize,
  generate,
  query,
  tokenize,
} from "./vllm.ts";

/**
 * Grouped by family: OpenAI (Bearer key, OpenAI errors), Anthropic (also
 * x-api-key, Anthropic errors), vLLM's own, then the control plane.
 */
export const ROUTES: readonly Route[] = [
  { method: "POST", path: "/v1/chat/completions", handler: chatCompletions },
  { method: "POST", path: "/v1/completions", handler: completions },
  { method: "POST", path: "/v1/responses", handler: responses },
  { method: "POST", path: "/v1/embeddings", handler: embeddings },
  { method: "POST", path: "/inference/v1/generate", handler: generate },
  { method: "POST", path: "/v1/messages", handler: messages, family: "anthropic" },
  { method: "POST", path: "/tokenize", handler: tokenize, access: "open" },
  { method: "POST", path: "/detokenize", handler: detokenize, access: "open" },
  { method: "POST", path: "/v1/completions/render", handler: completionsRender },
  { method: "POST", path: "/v1/chat/completions/render", handler: chatCompletionsRender },
  { method: "GET", path: "/query", handler: query, access: "open" },
  { method: "GET", path: "/v1/models", handler: listModels },
  { method: "POST", path: "/v1/load_lora_adapter", handler: loadLoraAdapter },
  { method: "POST", path: "/v1/unload_lora_adapter", handler: unloadLoraAdapter },
  { method: "GET", path: "/health", handler: health, access: "open" },
  { method: "GET", path: "/ready", handler: ready, access: "open" },
  { method: "GET", path: "/health/ready", handler: ready, access: "open" },
  { method: "GET", path: "/version", handler: version, access: "open" },
  { method: "GET", path: "/metrics", handler: metrics, access: "metrics" },
  // Service discovery is read like the metrics it points at.
  { method: "GET", path: "/fleet/targets", handler: fleetTargets, access: "metrics" },
  { method: "POST", path: "/fake_metrics", handler: fakeMetrics },
  { method: "GET", path: "/admin/config", handler: getAdminConfig },
  { method: "POST", path: "/admin/config", handler: postAdminConfig },
  { method: "POST", path: "/sleep", handler: sleep },
  { method: "POST", path: "/wake_up", handler: wakeUp },
  { method: "GET", path: "/is_sleeping", handler: isSleeping, access: "open" },
];

/** The --metrics-port listener answers only this. */
export const METRICS_PORT_ROUTES: readonly Route[] = [
  { method: "GET", path: "/metrics", handler: metrics, access: "metrics" },
];
