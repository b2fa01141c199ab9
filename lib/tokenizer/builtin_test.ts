/** The built-in tokenizer against the reference simulator's rules (tokenizers.md). */
import assert from "node:assert/strict";
import { fnv1a32 } from "../tokenizer.ts";
import { textMessage } from "../chat.ts";
import { SENTENCES } from "../sentences.ts";
import {
  BUILTIN_SENTENCES,
  builtinChatText,
  BuiltinTokenizer,
  countText,
  outputPieces,
  splitText,
} from "./builtin.ts";

Deno.test("built-in: the reference's examples, tokens and FNV-1a 32 ids", () => {
  const t = new BuiltinTokenizer();
  const text = "Hello, world! How are you?";
  assert.deepEqual(splitText(text), ["Hello", ", ", "world", "! ", "How ", "are ", "you", "?"]);
  assert.deepEqual(
    t.encode(text).ids,
    [4116459851, 2312110321, 933488787, 2344826916, 4097122423, 3692005271, 1354289308, 973910158],
  );
  assert.deepEqual(splitText("Héllo"), ["H", "llo"]);
  assert.deepEqual(splitText("_abc foo_bar"), ["_", "abc ", "foo_bar"]);
  assert.deepEqual(splitText("12.5%"), ["12", ".", "5", "%"]);
  // Leading whitespace, `|`, backquotes and non-ASCII letters are dropped; \v is not \s in RE2.
  assert.deepEqual(splitText("  a|b`c\u00e9\v d"), ["a", "b", "c", "d"]);
  assert.deepEqual(splitText("x\t\n\f\r y"), ["x\t\n\f\r ", "y"]);
  assert.deepEqual(splitText("日本語"), []);
  for (const s of ["", "a b", "  x__y--z {}[]", "naïve café — déjà vu", "😀 ok"]) {
    assert.equal(countText(s), splitText(s).length, s);
  }
});

Deno.test("built-in: chat text is the reference's", () => {
  const user = textMessage("user", "Hello");
  assert.equal(builtinChatText([user]), "### user: Hello\n");
  assert.deepEqual(splitText(builtinChatText([user])), ["#", "#", "# ", "user", ": ", "Hello\n"]);
  const tool = { ...textMessage("tool", "sunny"), toolCallId: "call_abc123" };
  assert.equal(builtinChatText([tool]), "### tool(call_abc123): sunny\n");
  const call = {
    ...textMessage("assistant", ""),
    toolCalls: [{ id: "c1", name: "get_weather", arguments: '{"location":"NYC"}' }],
  };
  assert.equal(builtinChatText([call]), '### assistant: [get_weather({"location":"NYC"})]\n');
  const image = { role: "user", content: "look\nimage: http://x/a.png", text: "look" };
  assert.equal(builtinChatText([image]), "### user: look\nimage: http://x/a.png\n");
});

Deno.test("built-in: output pieces concatenate to the text, one per match", () => {
  const samples = [
    "Hello, world!",
    "  leading and trailing  ",
    "naïve café — déjà vu",
    "中文字符，测试。 ok",
    "emoji 😀👍🏽 family 👨‍👩‍👧 flags 🇫🇷!",
    '{"json": [1, 2.5, -3e10], "ok": true}',
    "|||",
  ];
  for (const s of samples) {
    const pieces = outputPieces(s);
    assert.equal(pieces.join(""), s, s);
    const matches = splitText(s).length;
    assert.equal(pieces.length, Math.max(matches, 1), s);
  }
  assert.deepEqual(outputPieces("Héllo"), ["Hé", "llo"]);
  assert.deepEqual(outputPieces("  hi"), ["  hi"]);
  assert.deepEqual(outputPieces(""), []);
});

Deno.test("built-in: decode knows the sentences and what it encoded, nothing else", () => {
  const t = new BuiltinTokenizer();
  const toks = BUILTIN_SENTENCES.tokens[3];
  assert.equal(t.decode(toks.map(fnv1a32)), SENTENCES[3] + " ");
  const enc = t.encode("Zebra quagga okapi");
  // A prompt's ids are only counted; ids shown to a client are remembered.
  assert.equal(t.decode(enc.ids), null);
  t.remember(enc);
  const ids = enc.ids;
  assert.equal(t.decode(ids), "Zebra quagga okapi");
  // Another simulator's tokenizer has not seen these.
  assert.equal(new BuiltinTokenizer().decode(ids), null);
  assert.deepEqual(t.pieceIds("Hello, "), [fnv1a32("Hello"), fnv1a32(", ")]);
});

Deno.test("built-in: sentences end with their space and split back into the same tokens", () => {
  for (let i = 0; i < SENTENCES.length; i++) {
    assert.equal(BUILTIN_SENTENCES.texts[i], SENTENCES[i] + " ");
    assert.deepEqual(splitText(BUILTIN_SENTENCES.texts[i]), BUILTIN_SENTENCES.tokens[i]);
  }
  assert.ok(BUILTIN_SENTENCES.jsonSafe);
});
