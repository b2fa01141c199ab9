/**
 * Anthropic Messages answers (`POST /v1/messages`, messages.md): the prompt
 * of a request, and its answer as a `message` body or as named SSE events
 * (`event: <name>\ndata: <json>\n\n`, no [DONE]): message_start,
 * content_block_start, ping, content_block_delta per token,
 * content_block_stop, message_delta, message_stop. Bodies are written
 * directly as JSON text in the reference's key order.
 */
import { type ChatInputOptions, conversationInput } from "../../chat.ts";
import type { FinishReason } from "../../engine.ts";
import {
  type CompletedAnswer,
  jsonString,
  type OutputEncoder,
  type UsageCounts,
  usageOf,
} from "../../serving/output.ts";
import type { Admitted, PendingInput } from "../../serving/pipeline.ts";
import type { Tokenizer } from "../../tokenizer.ts";
import type { AnswerMeta } from "../openai/common.ts";
import type { GeneratedCall } from "../../tools/calls.ts";
import type { MessagesRequest } from "./protocol.ts";

export function messagesInput(
  body: MessagesRequest,
  tokenizer: Tokenizer,
  opts: ChatInputOptions,
): PendingInput {
  return conversationInput(body, body.messages, body.toolDefs, tokenizer, opts);
}

export function messageId(meta: AnswerMeta): string {
  return `msg_${meta.requestId}`;
}

export type StopReason = "end_turn" | "tool_use" | "max_tokens";

/** tool_calls → tool_use; length and cache_threshold → max_tokens; else end_turn. */
export function stopReason(finish: FinishReason): StopReason {
  switch (finish) {
    case "tool_calls":
      return "tool_use";
    case "length":
    case "cache_threshold":
      return "max_tokens";
    default:
      return "end_turn";
  }
}

/** The usage object; the cache counters are always 0 (messages.md). */
function usageText(input: number, output: number): string {
  return `{"input_tokens":${input},"cache_creation_input_tokens":0,` +
    `"cache_read_input_tokens":0,"output_tokens":${output}}`;
}

/** The message object up to its content: `{"id":…,"type":"message","role":"assistant","content":`. */
function messageHead(meta: AnswerMeta): string {
  return `{"id":${JSON.stringify(messageId(meta))},"type":"message","role":"assistant","content":`;
}

/** The `message` body of a complete answer. */
export function messagesResponse(
  meta: AnswerMeta,
  body: MessagesRequest,
  _admitted: Admitted,
  answer: CompletedAnswer,
): string {
  const c = answer.choices[0];
  // An empty text is left out of the block, as the reference writes it (omitempty).
  const block = c.calls
    ? c.calls.map(toolUseBlock).join(",")
    : c.text === ""
    ? `{"type":"text"}`
    : `{"type":"text","text":${jsonString(c.text, c.jsonSafe)}}`;
  return `${messageHead(meta)}[${block}],"model":${JSON.stringify(body.model)},` +
    `"stop_reason":"${stopReason(c.finish)}","stop_sequence":null,` +
    `"usage":${usageText(answer.usage.prompt, answer.usage.completion)}}`;
}

/**
 * A tool_use block: `input` is the arguments object (their text is Go's
 * encoding of it already), left out when empty (omitempty on a map).
 */
function toolUseBlock(call: GeneratedCall): string {
  const input = call.arguments === "{}" ? "" : `,"input":${call.arguments}`;
  return `{"type":"tool_use","id":"${TOOL_ID}${call.digits}","name":${
    JSON.stringify(call.name)
  }${input}}`;
}

const TOOL_ID = "toolu_";

/** One SSE event: its name line, then its data. */
function event(name: string, data: string): string {
  return `event: ${name}\ndata: ${data}\n\n`;
}

const BLOCK_START = event(
  "content_block_start",
  `{"type":"content_block_start","index":0,"content_block":{"type":"text"}}`,
);
const PING = event("ping", `{"type":"ping"}`);
const BLOCK_STOP = event("content_block_stop", `{"type":"content_block_stop","index":0}`);
const blockStop = (index: number) =>
  event("content_block_stop", `{"type":"content_block_stop","index":${index}}`);
const MESSAGE_STOP = event("message_stop", `{"type":"message_stop"}`);
const DELTA_PREFIX = `event: content_block_delta\ndata: {"type":"content_block_delta","index":0,` +
  `"delta":{"type":"text_delta","text":`;
const DELTA_SUFFIX = "}}\n\n";

/**
 * The answer's events. A Messages request has one choice, answered as one
 * text block at index 0; a choice with no tokens (cache_threshold) still
 * opens and closes its empty block, so clients see a well-formed message.
 */
export function messagesEncoder(
  meta: AnswerMeta,
  body: MessagesRequest,
  admitted: Admitted,
): OutputEncoder {
  let finish: FinishReason = "stop";
  // Built-in sentences' tokens need no JSON escaping.
  const safe = admitted.plans.every((p) => p.jsonSafe);
  return {
    start: () =>
      event(
        "message_start",
        `{"type":"message_start","message":${messageHead(meta)}[],"model":${
          JSON.stringify(body.model)
        },"stop_reason":null,"stop_sequence":null,"usage":${
          usageText(usageOf(admitted.plans).prompt, 0)
        }}}`,
      ),
    token: (_index, text, k) =>
      (k === 0 ? BLOCK_START + PING : "") + DELTA_PREFIX + jsonString(text, safe) + DELTA_SUFFIX,
    // Tool calls: a block per call, opened on its first argument piece
    // (closing the previous one), an input_json_delta per piece.
    toolStart: () => PING,
    toolPiece(_index, calls, c, piece) {
      const call = calls[c];
      const open = piece !== 0 ? "" : (c > 0 ? blockStop(c - 1) : "") +
        event(
          "content_block_start",
          `{"type":"content_block_start","index":${c},"content_block":{"type":"tool_use",` +
            `"id":"${TOOL_ID}${call.digits}","name":${JSON.stringify(call.name)}}}`,
        );
      return open + event(
        "content_block_delta",
        `{"type":"content_block_delta","index":${c},"delta":{"type":"input_json_delta",` +
          `"partial_json":${JSON.stringify(call.pieces[piece])}}}`,
      );
    },
    choiceEnd(index, f, tokens) {
      finish = f;
      const calls = admitted.plans[0].calls?.[index];
      if (calls) return blockStop(calls.length - 1);
      return (tokens === 0 ? BLOCK_START : "") + BLOCK_STOP;
    },
    end: (u: UsageCounts) =>
      event(
        "message_delta",
        `{"type":"message_delta","delta":{"stop_reason":"${
          stopReason(finish)
        }","stop_sequence":null},"usage":{"output_tokens":${u.completion}}}`,
      ) + MESSAGE_STOP,
  };
}
