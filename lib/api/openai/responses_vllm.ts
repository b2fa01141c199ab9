/**
 * `POST /v1/responses` in vLLM's bytes (--use-vllm-responses-format), for a
 * text answer. vLLM writes pydantic models, so keys come in the models'
 * field order and nothing is left out: every response object carries all of
 * vLLM's `ResponsesResponse` fields (nulls and defaults included), the
 * message item has an `id` (and openai's `phase`), output_text parts have
 * `annotations`, usage is complete, and each stream event carries
 * `sequence_number` (0, 1, … over the stream), `output_index` and
 * `content_index` (0: one item, one part). As in vLLM, the streamed item's
 * id is a bare id (here the request id) while the finished response names
 * its message `msg_<request id>`; empty text deltas are not sent, and an
 * answer that stopped at its token limit is `incomplete`.
 * tests/responses_test.ts pins the bytes.
 */
import type { FinishReason } from "../../engine.ts";
import type { CompletedAnswer, OutputEncoder, UsageCounts } from "../../serving/output.ts";
import { jsonString } from "../../serving/output.ts";
import type { Admitted } from "../../serving/pipeline.ts";
import type { GeneratedCall } from "../../tools/calls.ts";
import type { Json } from "../../validate.ts";
import type { AnswerMeta } from "./common.ts";
import type { ResponsesRequest, ResponsesTool, VllmEcho } from "./responses_protocol.ts";

/** A request value as JSON text, or `dflt` (JSON text) when it was absent or null. */
function echoed(v: Json | undefined, dflt: string): string {
  return v === undefined || v === null ? dflt : JSON.stringify(v);
}

/** A Python float's repr for ordinary values: integral ones keep ".0". */
function pyFloat(x: number): string {
  return Number.isInteger(x) && Math.abs(x) < 1e16 ? x.toFixed(1) : String(x);
}

/** A function tool as openai's FunctionTool model writes it. */
function toolText(t: ResponsesTool): string {
  return `{"name":${JSON.stringify(t.name)},"parameters":${JSON.stringify(t.parameters)},` +
    `"strict":null,"type":"function","description":${
      t.description === "" ? "null" : JSON.stringify(t.description)
    }}`;
}

function textConfig(text: VllmEcho["text"]): string {
  if (text === undefined) return "null";
  return `{"format":${echoed(text.format, "null")},"verbosity":${echoed(text.verbosity, "null")}}`;
}

/**
 * The `response` object around its four varying members: built once per
 * answer, then `write` joins the pieces.
 */
interface ResponseShape {
  write(status: "in_progress" | "completed" | "incomplete", output: string, usage: string): string;
}

function responseShape(
  meta: AnswerMeta,
  body: ResponsesRequest,
  admitted: Admitted,
  echo: VllmEcho,
): ResponseShape {
  const model = admitted.model.lora ?? body.baseModel;
  const room = echo.maxModelLen - admitted.plans[0].promptTokens;
  const maxOutput = Math.min(body.maxTokens ?? room, room);
  const a = `{"id":${JSON.stringify(`resp_${meta.requestId}`)},"created_at":${meta.created},` +
    `"incomplete_details":`;
  const b =
    `,"instructions":${body.instructions === "" ? "null" : JSON.stringify(body.instructions)}` +
    `,"metadata":${echoed(echo.metadata, "null")},"model":${JSON.stringify(model)},` +
    `"object":"response","output":`;
  const c = `,"parallel_tool_calls":${echoed(echo.parallelToolCalls, "true")},` +
    `"temperature":${pyFloat(echo.temperature ?? 1)},` +
    `"tool_choice":${echoed(body.toolChoice, '"auto"')},"tools":[${body.toolDefs.map(toolText)}],` +
    `"top_p":${pyFloat(echo.topP ?? 1)},"background":false,"max_output_tokens":${maxOutput},` +
    `"max_tool_calls":${echoed(echo.maxToolCalls, "null")},` +
    `"previous_response_id":${echoed(echo.previousResponseId, "null")},"prompt":null,` +
    `"reasoning":${echoed(echo.reasoning, "null")},` +
    `"service_tier":${echoed(echo.serviceTier, '"auto"')},"status":`;
  const d = `,"text":${textConfig(echo.text)},"top_logprobs":${body.logprobs ?? "null"},` +
    `"truncation":${echoed(echo.truncation, '"disabled"')},"usage":`;
  const e = `,"user":${echoed(echo.user, "null")},"input_messages":null,"output_messages":null}`;
  return {
    write: (status, output, usage) =>
      a + (status === "incomplete" ? `{"reason":"max_output_tokens"}` : "null") + b + output +
      c + `"${status}"` + d + usage + e,
  };
}

/** vLLM's usage: its own details models, with empty per-turn lists for a one-turn answer. */
function usageText(u: UsageCounts): string {
  return `{"input_tokens":${u.prompt},"input_tokens_details":{"cached_tokens":${u.cached},` +
    `"input_tokens_per_turn":[],"cached_tokens_per_turn":[]},"output_tokens":${u.completion},` +
    `"output_tokens_details":{"reasoning_tokens":0,"tool_output_tokens":0,` +
    `"output_tokens_per_turn":[],"tool_output_tokens_per_turn":[]},` +
    `"total_tokens":${u.prompt + u.completion}}`;
}

/** An output_text part; `logprobs` is JSON text ("null" or "[]"). */
function partText(text: string, safe: boolean, logprobs: string): string {
  return `{"annotations":[],"text":${jsonString(text, safe)},"type":"output_text",` +
    `"logprobs":${logprobs}}`;
}

/** The finished response's message item: `msg_<request id>`, no content when the text is empty. */
function finalItem(meta: AnswerMeta, text: string, safe: boolean): string {
  const content = text === "" ? "" : partText(text, safe, "null");
  return `[{"id":${JSON.stringify(`msg_${meta.requestId}`)},"content":[${content}],` +
    `"role":"assistant","status":"completed","type":"message","phase":null}]`;
}

const statusOf = (finish: FinishReason) => finish === "length" ? "incomplete" : "completed";

/** A function_call item as openai's ResponseFunctionToolCall model writes it. */
function callItem(call: GeneratedCall, status: string, args: string): string {
  return `{"arguments":${JSON.stringify(args)},"call_id":"call_${call.digits}","name":${
    JSON.stringify(call.name)
  },"type":"function_call","id":"fc_${call.digits}","status":"${status}"}`;
}

const callsOutput = (calls: readonly GeneratedCall[]) =>
  `[${calls.map((c) => callItem(c, "completed", c.arguments)).join(",")}]`;

/** The complete `response` body (JSONResponse of vLLM's model_dump()). */
export function vllmResponsesResponse(
  meta: AnswerMeta,
  body: ResponsesRequest,
  admitted: Admitted,
  answer: CompletedAnswer,
  echo: VllmEcho,
): string {
  const c = answer.choices[0];
  return responseShape(meta, body, admitted, echo).write(
    c.calls ? "completed" : statusOf(c.finish),
    c.calls ? callsOutput(c.calls) : finalItem(meta, c.text, c.jsonSafe),
    usageText(answer.usage),
  );
}

/**
 * The text turn's events, numbered from 0: response.created and
 * response.in_progress when the first step is due; the item and its part
 * opened with the first non-empty piece; a delta per non-empty piece; the
 * done events; response.completed. An answer with no text opens no item.
 */
export function vllmResponsesEncoder(
  meta: AnswerMeta,
  body: ResponsesRequest,
  admitted: Admitted,
  echo: VllmEcho,
): OutputEncoder {
  const shape = responseShape(meta, body, admitted, echo);
  const safe = admitted.plans[0].jsonSafe;
  const itemId = JSON.stringify(meta.requestId);
  const at = `"item_id":${itemId},"output_index":0`;
  let seq = 0;
  /** One event: `fields` then sequence_number, then `tail` (before `type`). */
  const event = (type: string, fields: string, tail = "") =>
    `event: ${type}\ndata: {${fields},"sequence_number":${seq++}${tail},"type":"${type}"}\n\n`;
  const deltaHead = `event: response.output_text.delta\ndata: {"content_index":0,"delta":`;
  const deltaMid = `,"item_id":${itemId},"logprobs":[],"output_index":0,"sequence_number":`;
  const deltaEnd = `,"type":"response.output_text.delta"}\n\n`;
  let text = "";
  let opened = false;
  let finish: FinishReason = "stop";
  const open = () =>
    event(
      "response.output_item.added",
      `"item":{"id":${itemId},"content":[],"role":"assistant","status":"in_progress",` +
        `"type":"message","phase":null},"output_index":0`,
    ) +
    event(
      "response.content_part.added",
      `"content_index":0,${at},"part":{"annotations":[],"text":"","type":"output_text",` +
        `"logprobs":[]}`,
    );
  return {
    start() {
      const r = `"response":${shape.write("in_progress", "[]", "null")}`;
      return event("response.created", r) + event("response.in_progress", r);
    },
    token(_index, piece) {
      if (piece === "") return "";
      text += piece;
      const head = opened ? "" : open();
      opened = true;
      return head + deltaHead + jsonString(piece, safe) + deltaMid + seq++ + deltaEnd;
    },
    // A tool turn: an item per call, opened on its first argument piece.
    toolPiece(_index, calls, c, piece) {
      const call = calls[c];
      const id = `"fc_${call.digits}"`;
      const added = piece !== 0 ? "" : event(
        "response.output_item.added",
        `"item":${callItem(call, "in_progress", "")},"output_index":${c}`,
      );
      return added + event(
        "response.function_call_arguments.delta",
        `"delta":${JSON.stringify(call.pieces[piece])},"item_id":${id},"output_index":${c}`,
      );
    },
    choiceEnd(index, reason) {
      finish = reason;
      const calls = admitted.plans[0].calls?.[index];
      if (calls) {
        return calls.map((call, c) =>
          event(
            "response.function_call_arguments.done",
            `"arguments":${JSON.stringify(call.arguments)},"item_id":"fc_${call.digits}",` +
              `"name":${JSON.stringify(call.name)},"output_index":${c}`,
          ) +
          event(
            "response.output_item.done",
            `"item":${callItem(call, "completed", call.arguments)},"output_index":${c}`,
          )
        ).join("");
      }
      if (!opened) return "";
      const part = partText(text, safe, "null");
      return event(
        "response.output_text.done",
        `"content_index":0,"item_id":${itemId},"logprobs":[],"output_index":0`,
        `,"text":${jsonString(text, safe)}`,
      ) +
        event("response.content_part.done", `"content_index":0,${at},"part":${part}`) +
        event(
          "response.output_item.done",
          `"item":{"id":${itemId},"content":[${part}],"role":"assistant",` +
            `"status":"completed","type":"message","phase":null,"summary":[]},"output_index":0`,
        );
    },
    end(u) {
      const calls = admitted.plans[0].calls?.[0];
      const r = calls
        ? shape.write("completed", callsOutput(calls), usageText(u))
        : shape.write(statusOf(finish), finalItem(meta, text, safe), usageText(u));
      return event("response.completed", `"response":${r}`);
    },
  };
}
