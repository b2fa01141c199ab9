/**
 * OpenAI Responses (`POST /v1/responses`): the prompt of a request (its
 * items as chat messages), and its answer as a `response` object or as
 * named SSE events (`event: <type>\ndata: <json>\n\n`, no [DONE]). Key order
 * and left-out keys follow the reference's JSON (Go omitempty): an empty
 * text, zero usage counts, `output_index`/`content_index` (always 0) are
 * not written. tests/responses_test.ts pins the bytes. With
 * --use-vllm-responses-format, responses_vllm.ts writes vLLM's bytes instead.
 */
import { type ChatMessage, chatPrompt, functionTool, textMessage } from "../../chat.ts";
import type { MediaItem } from "../vllm/features.ts";
import type { CompletedAnswer, OutputEncoder, UsageCounts } from "../../serving/output.ts";
import { jsonString } from "../../serving/output.ts";
import { type Admitted, generationInput, type PendingInput } from "../../serving/pipeline.ts";
import type { Tokenizer } from "../../tokenizer.ts";
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
  withIds = false,
): PendingInput {
  const tools = body.tools.map((t) => functionTool(t.name, t.description, t.parameters));
  const messages = itemsToMessages(body.input);
  return generationInput(body, [
    chatPrompt(messages, tokenizer, echoText(body.input), {
      tools: tools.length ? tools : undefined,
    }, withIds),
  ]);
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

/** An output_text part: `text` is left out when empty. */
function partText(text: string, safe: boolean): string {
  return text === ""
    ? `{"type":"output_text"}`
    : `{"type":"output_text","text":${jsonString(text, safe)}}`;
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
  const item = messageItem("", "completed", partText(c.text, c.jsonSafe));
  return `${head}"completed"${instructions},"output":[${item}],${TEXT_FORMAT},"usage":${
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
  const open = () =>
    event(
      "response.output_item.added",
      `"item":${messageItem(itemId, "in_progress", "")}`,
    ) + event("response.content_part.added", `${itemRef},"part":{"type":"output_text"}`);
  const inProgress = `"response":${head}"in_progress"${instructions},${TEXT_FORMAT}}`;
  return {
    start: () => event("response.created", inProgress) + event("response.in_progress", inProgress),
    token(_index, piece, k) {
      text += piece;
      const opened = k === 0 ? open() : "";
      // An empty piece has no `delta` key (omitempty), like the reference.
      return opened +
        (piece === ""
          ? event("response.output_text.delta", itemRef)
          : deltaPrefix + jsonString(piece, safe) + "}\n\n");
    },
    choiceEnd(_index, _finish, tokens) {
      const part = partText(text, safe);
      const doneText = text === "" ? "" : `,"text":${jsonString(text, safe)}`;
      done = messageItem(itemId, "completed", part);
      return (tokens === 0 ? open() : "") +
        event("response.output_text.done", itemRef + doneText) +
        event("response.content_part.done", `${itemRef},"part":${part}`) +
        event("response.output_item.done", `"item":${done}`);
    },
    end(u) {
      done ||= messageItem(itemId, "completed", partText(text, safe));
      return event(
        "response.completed",
        `"response":${head}"completed"${instructions},"output":[${done}],${TEXT_FORMAT},` +
          `"usage":${usageText(u)}}`,
      );
    },
  };
}
