/**
 * Rotation for Envoy's file access log. Envoy never rotates it itself; it
 * reopens its access log files on SIGUSR1
 * (https://www.envoyproxy.io/docs/envoy/v1.40.0/operations/cli#cmdoption-file-flush-interval-msec
 * and "Signals" in the operations docs). So: rename the file aside once it
 * is large, shift older ones (`access.log.1` … `.<keep>`), drop the oldest,
 * and signal Envoy, which starts a fresh file under the original name. In
 * containers the access log goes to stdout and the container runtime rotates.
 */
import { rename, rm, stat } from 'node:fs/promises';

export interface RotationOptions {
  readonly path: string;
  /** Rotate once the file reaches this size. */
  readonly maxBytes: number;
  /** Rotated files kept beside the live one. */
  readonly keep: number;
  /** Tells Envoy to reopen its access logs (SIGUSR1). */
  readonly reopen: () => void;
  /** How often the size is checked. */
  readonly intervalMs: number;
}

/** The defaults `npm start` uses. */
export const ACCESS_LOG_ROTATION = Object.freeze({ maxBytes: 64 * 1024 * 1024, keep: 3, intervalMs: 10_000 });

export class AccessLogRotator {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<boolean> | undefined;

  constructor(private readonly o: RotationOptions) {}

  start(): void {
    this.timer = setInterval(() => void this.rotateIfLarge(), this.o.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One check; resolves true when it rotated. Never rejects (a missing file is fine). */
  rotateIfLarge(): Promise<boolean> {
    this.running ??= this.check()
      .catch(() => false)
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  private async check(): Promise<boolean> {
    const { path, maxBytes, keep } = this.o;
    const size = await stat(path).then(
      (s) => s.size,
      () => 0,
    );
    if (size < maxBytes) return false;
    await rm(`${path}.${keep}`, { force: true });
    for (let i = keep - 1; i >= 1; i--) {
      await rename(`${path}.${i}`, `${path}.${i + 1}`).catch(() => undefined);
    }
    await rename(path, `${path}.1`);
    // Envoy keeps writing to the renamed file until it reopens the path.
    this.o.reopen();
    return true;
  }
}
