/** Responses with the safe headers every answer carries, and request body parsing. */
import type { IncomingMessage, ServerResponse } from "node:http";
import { SagaError } from "../errors.js";

export const SECURITY_HEADERS: Record<string, string> = {
  // No inline script or style: the page's JS and CSS are files of ours; charts are SVG attributes.
  "Content-Security-Policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  "X-Content-Type-Options": "nosniff",
  "X-Frame-Options": "DENY",
  "Referrer-Policy": "no-referrer",
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cache-Control": "no-store",
};

export function send(
  res: ServerResponse,
  status: number,
  type: string,
  body: string,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, {
    ...SECURITY_HEADERS,
    "Content-Type": type,
    "Content-Length": Buffer.byteLength(body),
    ...headers,
  });
  res.end(body);
}

export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  send(res, status, "application/json; charset=utf-8", JSON.stringify(value));
}

export function redirect(res: ServerResponse, location: string, headers: Record<string, string> = {}): void {
  send(res, 303, "text/plain; charset=utf-8", "", { Location: location, ...headers });
}

const MAX_BODY = 64 * 1024;

/** A form (urlencoded) or JSON body as flat string fields. */
export async function readBody(req: IncomingMessage): Promise<Record<string, string>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new SagaError("INVALID_OPTIONS", "request body over 64 KiB");
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  if (text.length === 0) return {};
  if ((req.headers["content-type"] ?? "").includes("application/json")) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new SagaError("INVALID_OPTIONS", "the request body is not JSON");
    }
    const out: Record<string, string> = {};
    if (parsed && typeof parsed === "object")
      for (const [k, v] of Object.entries(parsed)) if (typeof v === "string") out[k] = v;
    return out;
  }
  return Object.fromEntries(new URLSearchParams(text));
}

/** HTTP status for an error: the engine's codes map to client errors, anything else is a 500. */
export function statusOf(err: unknown): number {
  if (!(err instanceof SagaError)) return 500;
  switch (err.code) {
    case "SAGA_NOT_FOUND":
      return 404;
    case "SAGA_TERMINAL":
    case "INVALID_STATE":
      return 409;
    case "INVALID_OPTIONS":
      return 400;
    default:
      return 500;
  }
}
