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
import type { OutputEncoder, UsageCounts } from "./output.ts";
import { usageOf } from "./output.ts";
import type { GenerationPlan } from "./plan.ts";

export class AnswerRenderer {
  /** The usage, taken once the first plan has started (its cached tokens are known then). */
  #total: UsageCounts | null = null;
  /** Choices per plan (every plan of a request has the same n). */
  readonly #n: number;
  /** Each plan's text streams, made when its first step is rendered. */
  readonly #texts: (TextStream[] | undefined)[];
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
      for (let j = 0; j < lengths.length; j++) mine.push(plan.text(j));
    }
    const enc = this.enc;
    for (let j = 0; j < lengths.length; j++) {
      const len = lengths[j];
      if (k >= len) continue;
      this.#emitted++;
      const usage = this.continuousUsage
        ? { prompt: this.#usage().prompt, completion: this.#emitted, cached: this.#usage().cached }
        : null;
      const text = mine[j].next();
      const index = p * this.#n + j;
      if (k < len - 1) out += enc.token(index, text, k, null, usage);
      else {
        const finish = plan.spec.finishReasons[j];
        out += enc.token(index, text, k, finish, usage) + enc.choiceEnd(index, finish, len);
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

  #usage(): UsageCounts {
    return this.#total ??= usageOf(this.plans);
  }

  #start(): string {
    this.#started = true;
    return this.enc.start();
  }
}
