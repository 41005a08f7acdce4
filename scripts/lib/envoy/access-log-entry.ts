/**
 * One line of Envoy's access log as the bootstrap writes it (`accessLog()`'s
 * `json_format` in config.ts), and the reader the tests, the chaos drills and
 * the benchmarks share. Envoy writes each field as a string unless the
 * command operator yields a number (`%RESPONSE_CODE%`, `%DURATION%`,
 * `%UPSTREAM_REQUEST_ATTEMPT_COUNT%`), and `null` for a header or value that
 * is absent.
 */
import { readFileSync } from 'node:fs';

export interface AccessLogEntry {
  /** `%START_TIME%`. */
  readonly time: string;
  /** `public` (the gRPC listener clients use) or `qa` (the one that honours x-ab-group). */
  readonly listener: string;
  readonly user: string | null;
  readonly override: string | null;
  readonly method: string | null;
  /** The route that matched (ab_split, qa_override_stable, qa_override_canary, invalid_user_id). */
  readonly route: string | null;
  /** The route's cluster (canary_with_fallback for the canary's share). */
  readonly cluster: string | null;
  /** The arm of the endpoint that answered. */
  readonly arm: string | null;
  readonly upstream_host: string | null;
  readonly grpc_status: string | null;
  /** 200 once upstream response headers were forwarded downstream; 0 when none were. */
  readonly response_code: number | string | null;
  readonly attempts: number | string | null;
  /** Envoy's response flags, e.g. `UR`, `UC`, `DR`; `-` for none. */
  readonly response_flags: string;
  readonly duration_ms: number | string | null;
  readonly request_id: string | null;
}

/**
 * The entries of the access log at `path` that Envoy has flushed; none when
 * the file does not exist yet. A line being written (not yet whole JSON) is
 * left for the next read.
 */
export function readAccessLog(path: string): AccessLogEntry[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  const out: AccessLogEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    try {
      out.push(JSON.parse(line) as AccessLogEntry);
    } catch {
      // a line being written
    }
  }
  return out;
}
