/**
 * Built-in sentences used to generate random response text, embedded so no
 * file is read at run time. Each tokenizer cuts them into its own tokens
 * once (`Tokenizer.sentences`).
 */

import type { SentenceTable } from "./tokenizer.ts";

export const SENTENCES: readonly string[] = Object.freeze([
  "The morning train was late again, so she read another chapter on the platform.",
  "Nobody expected the old lighthouse to be repainted in bright orange.",
  "A good map is worth more than a fast car.",
  "He measured twice, cut once, and still had to start over.",
  "The recipe called for a pinch of salt, but the pinch was generous.",
  "Every library has one shelf that nobody seems to visit.",
  "The committee agreed to meet again next Tuesday.",
  "Rain drummed on the tin roof for most of the night.",
  "She fixed the bicycle with a paperclip and a bit of patience.",
  "Most problems look smaller after a cup of tea.",
  "The river had changed course twice in living memory.",
  "Our neighbor keeps bees and shares the honey every autumn.",
  "It is easier to start a garden than to keep one tidy.",
  "The spreadsheet had forty columns and only three of them mattered.",
  "He whistled the same tune all the way up the hill.",
  "A quiet room can be surprisingly loud when you try to sleep.",
  "The museum opened a new wing dedicated to early clocks.",
  "They packed sandwiches, a thermos, and far too many blankets.",
  "Numbers rarely lie, but they are often misunderstood.",
  "The cat watched the snow fall with deep suspicion.",
  "Every version of the plan included a short break for lunch.",
  "She wrote the address on the back of an old receipt.",
  "The bridge was closed for repairs until the end of the month.",
  "Learning a new language takes time and a sense of humor.",
  "The soup tasted better on the second day.",
  "His handwriting was neat, but nobody could read his signature.",
  "The wind carried the smell of pine down into the valley.",
  "A small mistake in the first step can grow into a large one.",
  "They counted the stars until the clouds rolled in.",
  "The printer jammed exactly when it was needed most.",
  "Old photographs tend to make everyone look serious.",
  "She planted tulips in neat rows along the fence.",
  "The meeting ran long, yet everyone left in a good mood.",
  "There is always one more box to unpack after a move.",
  "The lantern flickered but never went out.",
  "He kept a notebook of words he liked the sound of.",
  "Fresh bread has a way of disappearing quickly.",
  "The fog lifted just as the ferry reached the harbor.",
  "A simple question can lead to a very long answer.",
  "The children built a fort out of cushions and chairs.",
  "Nobody remembered who had borrowed the ladder.",
  "The orchestra tuned up while the audience found their seats.",
  "Snow covered the field like a clean sheet of paper.",
  "She always reads the last page of a book first.",
  "The new road cut the journey by almost an hour.",
  "He answered every letter, even the strange ones.",
  "The kettle clicked off and the kitchen went quiet.",
  "Patience is often the fastest route to a solution.",
  "The town square fills with market stalls every Saturday.",
  "A single candle was enough to light the small cabin.",
  "They argued about the rules and then forgot to play.",
  "The clock in the hallway runs five minutes fast.",
  "Her garden attracted more butterflies than any other on the street.",
  "The report was finished, checked, and sent before noon.",
  "Thunder rolled across the hills long after the lightning.",
  "The best ideas often arrive during a walk.",
  "He painted the door blue because the shop had no green.",
  "Several ducks waddled across the road without hurry.",
  "The puzzle was missing one piece from the very middle.",
  "Sunlight slipped through the blinds in thin stripes.",
  "The bakery on the corner opens before dawn.",
  "Good instructions are short, clear, and easy to follow.",
  "The telescope revealed craters on the face of the moon.",
  "She labeled every jar in the pantry by hand.",
  "The bus driver waved to every cyclist he passed.",
  "An empty notebook can feel like an invitation.",
  "The waves erased the sandcastle by late afternoon.",
  "He tried the key in every lock before finding the right one.",
  "The village celebrated the harvest with music and lanterns.",
  "A warm scarf makes a cold walk much more pleasant.",
  "The data looked clean until someone sorted it by date.",
  "Two owls called to each other across the dark field.",
  "The train station smelled of coffee and rain.",
  "Her plan was simple: arrive early and leave happy.",
  "The mountain path was steep, narrow, and worth every step.",
  "He found a coin from another century in the garden.",
  "The teacher drew a large circle on the board and smiled.",
  "Leaves gathered in the corners of the courtyard.",
  "The ship's bell rang twice to mark the hour.",
  "Some questions are best answered with another question.",
  "They watched the sunset from the roof of the old barn.",
  "The engine coughed, sputtered, and finally started.",
  "She kept her promises, even the small ones.",
  "That was the end of the story, or so everyone thought.",
  "The rest, as they say, is a matter of record.",
  "It took three tries, but the kite finally flew.",
  "The shelves were sorted by color instead of title.",
  "A long walk usually clears up a short temper.",
  "The lake froze early that year, to everyone's delight.",
  "He made a list of lists and then lost it.",
]);

/**
 * The sentences cut into a tokenizer's output pieces. Each is cut with a
 * trailing space, as the reference's sentences are written, so sentences
 * concatenate into a text with a space between them.
 */
export function sentenceTable(
  sentences: readonly string[],
  pieces: (text: string) => string[],
): SentenceTable {
  const tokens = sentences.map((s) => Object.freeze(pieces(s + " ")));
  const texts = tokens.map((t) => t.join(""));
  return Object.freeze({
    tokens: Object.freeze(tokens),
    texts: Object.freeze(texts),
    // deno-lint-ignore no-control-regex
    jsonSafe: texts.every((t) => !/["\\\u0000-\u001f\u2028\u2029]/.test(t)),
  });
}
