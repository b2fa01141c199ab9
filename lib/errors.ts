/**
 * API errors in the OpenAI/vLLM shape. Route handlers throw ApiError; the
 * dispatcher turns it into `{"error": {message, type, param, code}}`.
 */

/** The class names the official `openai` SDK maps HTTP statuses to. */
const TYPE_BY_STATUS: Record<number, string> = {
  400: "BadRequestError",
  401: "AuthenticationError",
  403: "PermissionDeniedError",
  404: "NotFoundError",
  405: "MethodNotAllowedError",
  408: "RequestTimeoutError",
  409: "ConflictError",
  413: "BadRequestError",
  422: "UnprocessableEntityError",
  429: "RateLimitError",
  500: "InternalServerError",
  501: "NotImplementedError",
  503: "ServiceUnavailableError",
};

export function errorTypeFor(status: number): string {
  return TYPE_BY_STATUS[status] ?? (status >= 500 ? "InternalServerError" : "BadRequestError");
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly type: string = errorTypeFor(status),
  ) {
    super(message);
  }
}

export interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: number };
}

export function errorBody(e: ApiError): ErrorBody {
  return { error: { message: e.message, type: e.type, param: e.param, code: e.status } };
}

/** Shorthand for the most common case: a 400 naming the offending field. */
export function badRequest(message: string, param: string | null = null): ApiError {
  return new ApiError(400, message, param);
}

/**
 * vLLM's context-window message, as the reference simulator words it: one
 * template, "0 in the completion" when the request set no limit, param null.
 */
export function contextLengthError(
  maxModelLen: number,
  promptTokens: number,
  maxTokens: number | undefined,
): ApiError {
  const completion = maxTokens ?? 0;
  return new ApiError(
    400,
    `This model's maximum context length is ${maxModelLen} tokens. However, you requested ` +
      `${promptTokens + completion} tokens (${promptTokens} in the messages, ${completion} in ` +
      `the completion). Please reduce the length of the messages or completion.`,
  );
}
