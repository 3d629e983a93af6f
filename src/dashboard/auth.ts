/**
 * Access: a shared token (bearer header or the login form's cookie), compared in constant time; without a
 * token only loopback clients are served. Actions also need a CSRF token that only a page of ours can read.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";

export const SESSION_COOKIE = "pgsaga_session";

/** Equal strings, in time independent of where they differ (both are hashed to a fixed length first). */
export function safeEqual(a: string, b: string): boolean {
  const key = "pg-saga-compare";
  const x = createHmac("sha256", key).update(a).digest();
  const y = createHmac("sha256", key).update(b).digest();
  return timingSafeEqual(x, y);
}

export function parseCookies(header: string | undefined): Map<string, string> {
  const cookies = new Map<string, string>();
  for (const part of (header ?? "").split(";")) {
    const at = part.indexOf("=");
    if (at <= 0) continue;
    const name = part.slice(0, at).trim();
    try {
      cookies.set(name, decodeURIComponent(part.slice(at + 1).trim()));
    } catch {
      // a malformed cookie is ignored, not an error page
    }
  }
  return cookies;
}

export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  return address === "::1" || address.startsWith("127.") || address.startsWith("::ffff:127.");
}

export class Access {
  private readonly secret: Buffer;
  /** The cookie value of a logged-in browser: derived from the token, never the token itself. */
  private readonly session: string | null;
  readonly csrf: string;

  constructor(readonly token: string | null) {
    // Per process: a restart invalidates CSRF tokens of open pages (they reload) but not the login.
    this.secret = randomBytes(32);
    this.session = token === null ? null : createHmac("sha256", token).update("session").digest("base64url");
    this.csrf = createHmac("sha256", this.secret)
      .update(`csrf:${token ?? ""}`)
      .digest("base64url");
  }

  /** Whether the request may read: the token as a bearer header or session cookie; no token: loopback only. */
  allowed(req: IncomingMessage): boolean {
    if (this.token === null) return isLoopback(req.socket.remoteAddress);
    const header = req.headers.authorization;
    if (header?.startsWith("Bearer ") && safeEqual(header.slice(7).trim(), this.token)) return true;
    const cookie = parseCookies(req.headers.cookie).get(SESSION_COOKIE);
    return cookie !== undefined && this.session !== null && safeEqual(cookie, this.session);
  }

  /** Checks a login form's token; returns the cookie to set, or null. */
  login(given: string): string | null {
    if (this.token === null || this.session === null || !safeEqual(given, this.token)) return null;
    return this.session;
  }

  csrfValid(given: string | undefined): boolean {
    return typeof given === "string" && safeEqual(given, this.csrf);
  }
}

export function sessionCookie(value: string, path: string, secure: boolean, maxAge?: number): string {
  return [
    `${SESSION_COOKIE}=${encodeURIComponent(value)}`,
    `Path=${path || "/"}`,
    "HttpOnly",
    "SameSite=Strict",
    ...(secure ? ["Secure"] : []),
    ...(maxAge === undefined ? [] : [`Max-Age=${maxAge}`]),
  ].join("; ");
}
