/** The simulator's version, reported by GET /version. */
export const VERSION = "0.1.0";
