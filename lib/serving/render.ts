/**
 * Turns a request's engine steps into its output events, whatever carries
 * them: step k of plan p becomes the token events of that step for each of
 * its choices (a choice's last token followed by its choiceEnd), the first
 * event of the answer is preceded by `start`, and when every plan has ended
 * the choices without tokens end and `end` carries the usage. The SSE body
 * (stream.ts) buffers what the encoder returns; another transport (gRPC)
 * can drive the same renderer with its own encoder.
 */
import type { TextStream } from "../content.ts";
import { CALL_OVERHEAD_TOKENS, type GeneratedCall } from "../tools/calls.ts";
import type { OutputEncoder, UsageCounts } from "./output.ts";
import { usageOf } from "./output.ts";
import type { GenerationPlan } from "./plan.ts";

/** Where a tool-call choice is: its call, and its piece (negative: the call's silent steps). */
class CallCursor {
  call = 0;
  piece = -CALL_OVERHEAD_TOKENS;
}

/** A tool-call choice's text stream: never read. */
const NO_TEXT: TextStream = {
  next: () => "",
  take: () => "",
};

export class AnswerRenderer {
  /** The usage, taken once the first plan has started (its cached tokens are known then). */
  #total: UsageCounts | null = null;
  /** Choices per plan (every plan of a request has the same n). */
  readonly #n: number;
  /** Each plan's text streams, made when its first step is rendered. */
  readonly #texts: (TextStream[] | undefined)[];
  /** Per plan, where each tool-call choice is in its calls (made with the texts). */
  readonly #cursors: ((CallCursor | null)[] | undefined)[];
  #emitted = 0;
  #started = false;
  #endedPlans = 0;

  constructor(
    private readonly plans: readonly GenerationPlan[],
    private readonly enc: OutputEncoder,
    private readonly continuousUsage: boolean,
  ) {
    this.#n = plans.length > 0 ? plans[0].choices : 0;
    this.#texts = new Array(plans.length);
    this.#cursors = new Array(plans.length);
  }

  /** Every plan has ended (its end was rendered). */
  get finished(): boolean {
    return this.#endedPlans === this.plans.length;
  }

  /** The events of step k of plan p. */
  step(p: number, k: number): string {
    let out = this.#started ? "" : this.#start();
    const plan = this.plans[p];
    const lengths = plan.spec.lengths;
    // The plan's text streams (a packed array: a stream per choice, its
    // tokens still to be drawn).
    let mine = this.#texts[p];
    if (mine === undefined) {
      mine = this.#texts[p] = [];
      const calls = plan.calls;
      for (let j = 0; j < lengths.length; j++) mine.push(calls?.[j] ? NO_TEXT : plan.text(j));
      if (calls) this.#cursors[p] = calls.map((c) => c && new CallCursor());
    }
    const enc = this.enc;
    const cursors = this.#cursors[p];
    const first = p * this.#n;
    for (let j = 0; j < lengths.length; j++) {
      const len = lengths[j];
      if (k >= len) continue;
      this.#emitted++;
      const usage = this.continuousUsage
        ? { prompt: this.#usage().prompt, completion: this.#emitted, cached: this.#usage().cached }
        : null;
      const cursor = cursors?.[j];
      if (cursor) {
        out += this.#toolStep(cursor, plan.calls![j]!, first + j, k, len, plan, j, usage);
        continue;
      }
      const text = mine[j].next();
      if (k < len - 1) out += enc.token(first + j, text, k, null, usage);
      else {
        const finish = plan.spec.finishReasons[j];
        out += enc.token(first + j, text, k, finish, usage) + enc.choiceEnd(first + j, finish, len);
      }
    }
    return out;
  }

  /** The events after plan p's last step: its empty choices end, then (last plan) the end. */
  end(p: number): string {
    let out = this.#started ? "" : this.#start();
    const { lengths, finishReasons } = this.plans[p].spec;
    for (let j = 0; j < lengths.length; j++) {
      if (lengths[j] === 0) out += this.enc.choiceEnd(p * this.#n + j, finishReasons[j], 0);
    }
    // The final usage, taken again: every plan has started by now.
    if (++this.#endedPlans === this.plans.length) out += this.enc.end(usageOf(this.plans));
    return out;
  }

  /**
   * Step k of a tool-call choice: each call takes CALL_OVERHEAD_TOKENS
   * silent steps (the tokens a model spends on the call's name, id and type,
   * which vLLM's tool parser never shows), then one step per argument piece.
   */
  #toolStep(
    cursor: CallCursor,
    calls: readonly GeneratedCall[],
    index: number,
    k: number,
    len: number,
    plan: GenerationPlan,
    j: number,
    usage: UsageCounts | null,
  ): string {
    const piece = cursor.piece++;
    if (piece < 0) return k === 0 ? this.enc.toolStart?.(index) ?? "" : "";
    const c = cursor.call;
    if (cursor.piece === calls[c].pieces.length) {
      cursor.call++;
      cursor.piece = -CALL_OVERHEAD_TOKENS;
    }
    const enc = this.enc;
    if (k < len - 1) return enc.toolPiece?.(index, calls, c, piece, null, usage) ?? "";
    const finish = plan.spec.finishReasons[j];
    return (enc.toolPiece?.(index, calls, c, piece, finish, usage) ?? "") +
      enc.choiceEnd(index, finish, len);
  }

  #usage(): UsageCounts {
    return this.#total ??= usageOf(this.plans);
  }

  #start(): string {
    this.#started = true;
    return this.enc.start();
  }
}
