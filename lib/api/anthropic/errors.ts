/**
 * Anthropic's error shape for /v1/messages (messages.md, "Errors"): the same
 * status and message as any other family's error, so the official SDK
 * raises its typed errors.
 */
import type { ApiError } from "../../errors.ts";

export interface AnthropicErrorBody {
  type: "error";
  error: { type: string; message: string };
}

export function anthropicErrorType(status: number): string {
  switch (status) {
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 413:
      return "request_too_large";
    case 429:
      return "rate_limit_error";
    case 503:
      return "overloaded_error";
  }
  return status >= 500 ? "api_error" : "invalid_request_error";
}

export function anthropicErrorBody(e: ApiError): AnthropicErrorBody {
  return { type: "error", error: { type: anthropicErrorType(e.status), message: e.message } };
}
