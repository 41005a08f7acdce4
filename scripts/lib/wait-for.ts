/**
 * Polling until something holds, bounded in time: the one loop the scripts
 * and the tests share. The message on a timeout names what was awaited and,
 * when the probe last threw, why.
 */

export interface WaitOptions {
  readonly timeoutMs: number;
  /** Pause between probes (default 250 ms). */
  readonly intervalMs?: number;
  /** A probe that throws: try again until the deadline (`retry`, the default), or fail at once (`throw`). */
  readonly onError?: 'retry' | 'throw';
}

/**
 * Probes at once, then every `intervalMs`, until `probe` returns a value other
 * than undefined, and resolves with it; rejects after `timeoutMs`.
 */
export async function waitFor<T>(
  what: string,
  probe: () => T | undefined | Promise<T | undefined>,
  o: WaitOptions,
): Promise<T> {
  const deadline = Date.now() + o.timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      if (o.onError === 'throw') throw err;
      lastError = err;
    }
    if (Date.now() > deadline) {
      const why = lastError ? ` (last error: ${(lastError as Error).message})` : '';
      throw new Error(`timed out after ${o.timeoutMs} ms waiting for ${what}${why}`);
    }
    await new Promise((r) => setTimeout(r, o.intervalMs ?? 250));
  }
}

/** `waitFor` for a condition: resolves once `cond` is true. */
export async function waitUntil(
  what: string,
  cond: () => boolean | Promise<boolean>,
  o: WaitOptions,
): Promise<void> {
  await waitFor(what, async () => ((await cond()) ? true : undefined), o);
}
