/**
 * OpenAI Responses (`POST /v1/responses`): the prompt of a request (its
 * items as chat messages), and its answer as a `response` object or as
 * named SSE events (`event: <type>\ndata: <json>\n\n`, no [DONE]). Key order
 * and left-out keys follow the reference's JSON (Go omitempty): an empty
 * text, zero usage counts, `output_index`/`content_index` (always 0) are
 * not written. tests/responses_test.ts pins the bytes. With
 * --use-vllm-responses-format, responses_vllm.ts writes vLLM's bytes instead.
 */
import {
  type ChatInputOptions,
  type ChatMessage,
  conversationInput,
  textMessage,
} from "../../chat.ts";
import type { MediaItem } from "../vllm/features.ts";
import type { CompletedAnswer, OutputEncoder, UsageCounts } from "../../serving/output.ts";
import { jsonString } from "../../serving/output.ts";
import type { Admitted, PendingInput } from "../../serving/pipeline.ts";
import type { Tokenizer } from "../../tokenizer.ts";
import { LogprobWriter, responsesLogprob, responsesLogprobs } from "../../serving/logprobs.ts";
import type { GeneratedCall } from "../../tools/calls.ts";
import type { AnswerMeta } from "./common.ts";
import type { ResponsesItem, ResponsesPart, ResponsesRequest } from "./responses_protocol.ts";
import { vllmResponsesEncoder, vllmResponsesResponse } from "./responses_vllm.ts";

/**
 * A message's content as the chat template renders it (tokenizers.md):
 * text parts as they are, images as `image: <url>`, joined by "\n"; audio
 * adds nothing.
 */
function renderedContent(parts: readonly ResponsesPart[]): string {
  const lines: string[] = [];
  for (const p of parts) {
    if (p.type === "text") lines.push(p.text);
    else if (p.type === "image") lines.push(`image: ${p.url}`);
  }
  return lines.join("\n");
}

/** The items as chat messages: what the prompt's tokens are counted from. */
export function itemsToMessages(items: readonly ResponsesItem[]): ChatMessage[] {
  return items.map((item): ChatMessage => {
    switch (item.type) {
      case "message":
        return messageOf(item.role, item.parts);
      case "function_call":
        return {
          ...textMessage("assistant", ""),
          toolCalls: [{ id: item.id || item.callId, name: item.name, arguments: item.arguments }],
        };
      case "function_call_output":
        return { ...textMessage("tool", item.output), toolCallId: item.callId };
    }
  });
}

function messageOf(role: string, parts: readonly ResponsesPart[]): ChatMessage {
  const texts: string[] = [];
  const media: MediaItem[] = [];
  for (const p of parts) {
    if (p.type === "text") texts.push(p.text);
    else if (p.type === "image" && p.url !== "") media.push({ modality: "image", source: p.url });
    else if (p.type === "audio" && p.data !== "") media.push({ modality: "audio", source: p.data });
  }
  const msg: ChatMessage = { role, content: renderedContent(parts), text: texts.join("\n") };
  if (media.length > 0) msg.media = media;
  return msg;
}

/** What echo mode answers: the last item's text. */
export function echoText(items: readonly ResponsesItem[]): string {
  const last = items.at(-1);
  if (last === undefined) return "";
  switch (last.type) {
    case "message":
      return last.parts.map((p) =>
        p.type === "text" ? p.text : p.type === "image" ? `image: ${p.url}` : `audio: ${p.format}`
      ).join("\n");
    case "function_call_output":
      return last.output;
    case "function_call":
      return `${last.name}(${last.arguments})`;
  }
}

export function responsesInput(
  body: ResponsesRequest,
  tokenizer: Tokenizer,
  opts: ChatInputOptions,
): PendingInput {
  const messages = itemsToMessages(body.input);
  return conversationInput(body, messages, body.toolDefs, tokenizer, {
    ...opts,
    echoText: echoText(body.input),
  });
}

/** The displayed model: the adapter's name, else the first served name. */
function displayedModel(body: ResponsesRequest, admitted: Admitted): string {
  return admitted.model.lora ?? body.baseModel;
}

/** `usage`, each count left out when 0. */
function usageText(u: UsageCounts): string {
  const fields: string[] = [];
  const total = u.prompt + u.completion;
  if (u.prompt !== 0) fields.push(`"input_tokens":${u.prompt}`);
  if (u.completion !== 0) fields.push(`"output_tokens":${u.completion}`);
  if (total !== 0) fields.push(`"total_tokens":${total}`);
  return `{${fields.join(",")}}`;
}

/**
 * An output_text part: `text` is left out when empty; `logprobs` (JSON
 * text) only when the request asked for them.
 */
function partText(text: string, safe: boolean, logprobs?: string): string {
  const lp = logprobs === undefined ? "" : `,"logprobs":${logprobs}`;
  return text === ""
    ? `{"type":"output_text"${lp}}`
    : `{"type":"output_text","text":${jsonString(text, safe)}${lp}}`;
}

/** A function_call item (`arguments` left out while in progress, as the reference does). */
function callItem(call: GeneratedCall, status: string, withArguments: boolean): string {
  const args = withArguments ? `,"arguments":${JSON.stringify(call.arguments)}` : "";
  return `{"type":"function_call","id":"fc_${call.digits}","call_id":"call_${call.digits}",` +
    `"name":${JSON.stringify(call.name)}${args},"status":"${status}"}`;
}

/** The assistant message item; `id` is JSON text, or "" for none. */
function messageItem(id: string, status: string, content: string): string {
  return `{"type":"message",${id === "" ? "" : `"id":${id},`}"role":"assistant",` +
    `"status":"${status}","content":[${content}]}`;
}

/**
 * The `response` object's opening, up to and including `"status":`, and its
 * `instructions` member ("" when there are none).
 */
function responseParts(meta: AnswerMeta, body: ResponsesRequest, admitted: Admitted) {
  const head = `{"id":${JSON.stringify(`resp_${meta.requestId}`)},"model":${
    JSON.stringify(displayedModel(body, admitted))
  },"object":"response","created_at":${meta.created},"status":`;
  const instructions = body.instructions === ""
    ? ""
    : `,"instructions":${JSON.stringify(body.instructions)}`;
  return { head, instructions };
}

const TEXT_FORMAT = `"text":{"format":{"type":"text"}}`;

/** The complete `response` body (the message item has no `id` here). */
export function responsesResponse(
  meta: AnswerMeta,
  body: ResponsesRequest,
  admitted: Admitted,
  answer: CompletedAnswer,
): string {
  if (body.vllm) return vllmResponsesResponse(meta, body, admitted, answer, body.vllm);
  const { head, instructions } = responseParts(meta, body, admitted);
  const c = answer.choices[0];
  const k = body.logprobs;
  const output = c.calls
    ? c.calls.map((call) => callItem(call, "completed", true)).join(",")
    : messageItem(
      "",
      "completed",
      partText(
        c.text,
        c.jsonSafe,
        k === undefined ? k : responsesLogprobs(c.pieces ?? [], 0, k, admitted.logprobMemo),
      ),
    );
  return `${head}"completed"${instructions},"output":[${output}],${TEXT_FORMAT},"usage":${
    usageText(answer.usage)
  }}`;
}

function event(type: string, data: string): string {
  return `event: ${type}\ndata: {"type":"${type}",${data}}\n\n`;
}

/**
 * The text turn's events: created + in_progress when the first step is
 * due, the item and its part opened with the first token, a delta per
 * token, then the done events and response.completed. A choice without
 * tokens still opens and closes its item, so every stream has the same shape.
 */
export function responsesEncoder(
  meta: AnswerMeta,
  body: ResponsesRequest,
  admitted: Admitted,
): OutputEncoder {
  if (body.vllm) return vllmResponsesEncoder(meta, body, admitted, body.vllm);
  const { head, instructions } = responseParts(meta, body, admitted);
  const safe = admitted.plans[0].jsonSafe;
  const itemId = JSON.stringify(`msg_${meta.requestId}`);
  const itemRef = `"item_id":${itemId}`;
  const deltaPrefix = `event: response.output_text.delta\ndata: ` +
    `{"type":"response.output_text.delta",${itemRef},"delta":`;
  let text = "";
  /** The finished item, written once in choiceEnd and again in response.completed. */
  let done = "";
  const k = body.logprobs;
  // With logprobs: `[]` on the opened part and output_text.done, `null` on the
  // done part and item, each delta's entry, and the whole list at the end.
  const lpOpen = k === undefined ? undefined : "[]";
  const lpDone = k === undefined ? undefined : "null";
  let lpAll = "";
  const lpWriter = k === undefined
    ? null
    : new LogprobWriter(k, responsesLogprob, admitted.logprobMemo);
  const open = () =>
    event(
      "response.output_item.added",
      `"item":${messageItem(itemId, "in_progress", "")}`,
    ) + event("response.content_part.added", `${itemRef},"part":${partText("", safe, lpOpen)}`);
  const inProgress = `"response":${head}"in_progress"${instructions},${TEXT_FORMAT}}`;
  let callsDone = "";
  return {
    start: () => event("response.created", inProgress) + event("response.in_progress", inProgress),
    token(_index, piece, pos) {
      text += piece;
      const opened = pos === 0 ? open() : "";
      let lp = "";
      if (k !== undefined) {
        const entry = piece === "" ? "" : lpWriter!.entry(piece, pos);
        if (entry !== "") lpAll += (lpAll === "" ? "" : ",") + entry;
        lp = `,"logprobs":${entry === "" ? "null" : `[${entry}]`}`;
      }
      // An empty piece has no `delta` key (omitempty), like the reference.
      return opened +
        (piece === ""
          ? event("response.output_text.delta", itemRef + lp)
          : deltaPrefix + jsonString(piece, safe) + lp + "}\n\n");
    },
    toolPiece(_index, calls, c, piece) {
      const call = calls[c];
      const added = piece === 0
        ? event("response.output_item.added", `"item":${callItem(call, "in_progress", false)}`)
        : "";
      return added + event(
        "response.function_call_arguments.delta",
        `"item_id":"fc_${call.digits}","delta":${JSON.stringify(call.pieces[piece])}`,
      );
    },
    choiceEnd(index, _finish, tokens) {
      const calls = admitted.plans[0].calls?.[index];
      if (calls) {
        let out = "";
        for (const call of calls) {
          out += event(
            "response.function_call_arguments.done",
            `"item_id":"fc_${call.digits}","name":${JSON.stringify(call.name)},"arguments":${
              JSON.stringify(call.arguments)
            }`,
          ) + event("response.output_item.done", `"item":${callItem(call, "completed", true)}`);
        }
        callsDone = calls.map((call) => callItem(call, "completed", true)).join(",");
        return out;
      }
      const part = partText(text, safe, lpDone);
      const doneText = (text === "" ? "" : `,"text":${jsonString(text, safe)}`) +
        (k === undefined ? "" : `,"logprobs":[]`);
      done = messageItem(itemId, "completed", part);
      return (tokens === 0 ? open() : "") +
        event("response.output_text.done", itemRef + doneText) +
        event("response.content_part.done", `${itemRef},"part":${part}`) +
        event("response.output_item.done", `"item":${done}`);
    },
    end(u) {
      // The completed item carries every token's logprobs (none: no key).
      const final = messageItem(
        itemId,
        "completed",
        partText(text, safe, k === undefined || lpAll === "" ? undefined : `[${lpAll}]`),
      );
      done = callsDone || final;
      return event(
        "response.completed",
        `"response":${head}"completed"${instructions},"output":[${done}],${TEXT_FORMAT},` +
          `"usage":${usageText(u)}}`,
      );
    },
  };
}
