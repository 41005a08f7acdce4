/**
 * The faults of `npm run chaos`. Each one breaks one thing while traffic
 * runs, holds it for a while, applies the remedy an operator (or a
 * supervisor) would, and says when the stack is back to normal.
 */
import { cpSync, existsSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { readLabels, writeLabels } from '../../../server/version-labels.js';
import type { AccessLogEntry } from '../envoy/access-log-entry.js';
import type { ChaosStack } from './stack.js';

export interface FaultContext {
  readonly stack: ChaosStack;
  readonly say: (line: string) => void;
}

export interface Fault {
  readonly name: string;
  readonly what: string;
  /** Why this fault cannot run here, if it cannot. */
  unavailable?(stack: ChaosStack): string | undefined;
  /** Breaks something; resolves once the fault is in place. */
  inject(ctx: FaultContext): Promise<void>;
  /** True once the stack no longer sends traffic into the fault (optional; for the report). */
  absorbed?(ctx: FaultContext): Promise<boolean>;
  /** How long the fault stays before the remedy. */
  readonly holdMs: number;
  /** The remedy: restart, free the disk, restore the label. */
  remedy(ctx: FaultContext): Promise<void>;
  /** True once everything is back to normal. */
  recovered(ctx: FaultContext): Promise<boolean>;
  /**
   * A failed call this fault may cost, proved from Envoy's access log entry
   * for it; undefined means none may fail.
   */
  allowed?(entry: AccessLogEntry | undefined): boolean;
}

const MODEL = 'conversion';

async function metric(port: number, name: string): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}

/** The canary's `inference_model_version_mismatch`: 1 while its label names a version it cannot serve. */
const canaryMismatch = async (ctx: FaultContext) =>
  metric(ctx.stack.servers.canary.metricsPort, 'inference_model_version_mismatch');

/** Moves the canary's label to `version`; resolves with the labels as they were. */
async function moveCanaryLabel(
  stack: ChaosStack,
  version: string,
): Promise<Readonly<Record<string, string>>> {
  const modelDir = join(stack.modelRoot, MODEL);
  const before = (await readLabels(modelDir)) ?? {};
  if (!before.canary) throw new Error('the model has no canary label');
  await writeLabels(modelDir, { ...before, canary: version });
  return before;
}

/** The size of each arm's active log file. */
function logSizes(stack: ChaosStack): number[] {
  return (['stable', 'canary'] as const).map((arm) => {
    const p = join(stack.logDir, arm, 'current.log');
    try {
      return statSync(p).size;
    } catch {
      return 0;
    }
  });
}

/**
 * The one failure no proxy can retry: the canary was answering the call when
 * it died, and Envoy had already forwarded its response headers (HTTP cannot
 * take back a started response). Envoy's access log shows exactly that.
 */
export function cutOffMidResponse(e: AccessLogEntry | undefined): boolean {
  return answeredByCanary(e) && hasFlag(e, 'UR', 'UC');
}

/**
 * The call was routed to the canary and its endpoint took it (the arm is the
 * answering endpoint's: after a fallback to stable the cluster stays
 * canary_with_fallback, the arm does not), and sent its response headers.
 */
function answeredByCanary(e: AccessLogEntry | undefined): e is AccessLogEntry {
  return (
    e !== undefined &&
    /canary/.test(String(e.cluster)) &&
    e.arm === 'canary' &&
    String(e.response_code) === '200'
  );
}

/** Whether Envoy's comma-separated %RESPONSE_FLAGS% hold one of `flags`. */
function hasFlag(e: AccessLogEntry, ...flags: string[]): boolean {
  return e.response_flags.split(',').some((f) => flags.includes(f));
}

/**
 * The one failure no proxy can retry when the canary hangs (SIGSTOP, a blocked
 * event loop): it had begun the response when it froze. A grpc-js response
 * leaves in two writes, the headers and message, then the trailers (a Node
 * HTTP/2 stream ends only once its last write has completed: every response
 * traced at 1, 4 and 20 concurrent calls, 0.3–0.4 ms apart at 1). Envoy has
 * forwarded the headers, the per-try timeout no longer applies to a started
 * response, and the call waits until its caller gives up at the deadline.
 * Envoy's access log shows exactly that: the canary's endpoint, response
 * code 200 without a gRPC status, the downstream reset (DR).
 */
export function frozenMidResponse(e: AccessLogEntry | undefined): boolean {
  // No trailers came: Envoy logs a 200 without grpc-status as UNKNOWN.
  const noStatus = e?.grpc_status === null || e?.grpc_status === 'UNKNOWN';
  return answeredByCanary(e) && noStatus && hasFlag(e, 'DR');
}

export function faults(): Fault[] {
  let labelsBefore: Readonly<Record<string, string>> = {};
  let freeDisk: (() => void) | undefined;
  let sizesAfterRemedy: number[] = [];
  const corrupt = '29991231T235959Z';
  return [
    {
      name: 'canary-sigkill',
      what: 'the canary process is killed (SIGKILL) under traffic, then restarted',
      holdMs: 2000,
      async inject({ stack }) {
        await stack.servers.canary.kill();
      },
      absorbed: async ({ stack }) => !(await stack.clusterHealthy('canary')),
      async remedy({ stack }) {
        await stack.restart('canary');
      },
      recovered: ({ stack }) => stack.healthy(),
      allowed: cutOffMidResponse,
    },
    {
      name: 'canary-sigstop',
      what: 'the canary hangs (SIGSTOP: port open, nothing answered) for 5 s, then resumes',
      holdMs: 5000,
      async inject({ stack }) {
        stack.servers.canary.proc.kill('SIGSTOP');
      },
      absorbed: async ({ stack }) => !(await stack.clusterHealthy('canary')),
      async remedy({ stack }) {
        stack.servers.canary.proc.kill('SIGCONT');
      },
      recovered: ({ stack }) => stack.healthy(),
      allowed: frozenMidResponse,
    },
    {
      name: 'stable-drain',
      what: 'the stable server is stopped (SIGTERM: NOT_SERVING, drain, exit), then restarted',
      holdMs: 0,
      async inject({ stack }) {
        const code = await stack.servers.stable.stop();
        if (code !== 0) throw new Error(`the stable server exited with ${code} on SIGTERM`);
      },
      absorbed: async ({ stack }) => !(await stack.clusterHealthy('stable')),
      async remedy({ stack }) {
        await stack.restart('stable');
      },
      recovered: ({ stack }) => stack.healthy(),
    },
    {
      name: 'envoy-restart',
      what: 'Envoy is restarted (hot restart: the new process takes the sockets, the old one drains)',
      holdMs: 0,
      async inject({ stack }) {
        await stack.hotRestartEnvoy();
      },
      async remedy() {},
      recovered: ({ stack }) => stack.healthy(),
    },
    {
      name: 'log-disk-full',
      what: "the servers' log disk is full for 4 s, then has room again",
      unavailable: (stack) =>
        stack.logDiskMounted ? undefined : 'needs root, to mount a small tmpfs for the logs',
      holdMs: 4000,
      async inject({ stack }) {
        freeDisk = stack.fillLogDisk();
        if (stack.logDiskFree() > 0) throw new Error('the log disk still has room');
      },
      async remedy({ stack }) {
        freeDisk?.();
        sizesAfterRemedy = logSizes(stack);
      },
      // Both servers write their log files again.
      recovered: async ({ stack }) => logSizes(stack).every((s, i) => s > (sizesAfterRemedy[i] ?? 0)),
    },
    {
      name: 'corrupt-version',
      what: "a version whose model.onnx does not match its sha256 is published and the canary's label moved to it",
      holdMs: 3000,
      async inject({ stack }) {
        const modelDir = join(stack.modelRoot, MODEL);
        const from = (await readLabels(modelDir))?.canary;
        if (!from) throw new Error('the model has no canary label');
        // Published as publish-model does it: a complete copy under a name the server ignores, renamed in.
        const tmp = join(modelDir, `.tmp-${corrupt}`);
        cpSync(join(modelDir, from), tmp, { recursive: true });
        const manifest = JSON.parse(readFileSync(join(tmp, 'model.json'), 'utf8')) as Record<string, unknown>;
        writeFileSync(join(tmp, 'model.json'), JSON.stringify({ ...manifest, version: corrupt }));
        writeFileSync(join(tmp, 'model.onnx'), Buffer.from('not the model the manifest describes'));
        renameSync(tmp, join(modelDir, corrupt));
        labelsBefore = await moveCanaryLabel(stack, corrupt);
      },
      absorbed: async (ctx) => (await canaryMismatch(ctx)) === 1,
      async remedy({ stack }) {
        const modelDir = join(stack.modelRoot, MODEL);
        await writeLabels(modelDir, labelsBefore);
        rmSync(join(modelDir, corrupt), { recursive: true, force: true });
      },
      recovered: async (ctx) =>
        (await canaryMismatch(ctx)) === 0 && !existsSync(join(ctx.stack.modelRoot, MODEL, corrupt)),
    },
    {
      name: 'label-missing',
      what: "the canary's label is moved to a version that is not in the repository",
      holdMs: 3000,
      async inject({ stack }) {
        labelsBefore = await moveCanaryLabel(stack, '29990101T000000Z');
      },
      absorbed: async (ctx) => (await canaryMismatch(ctx)) === 1,
      async remedy({ stack }) {
        await writeLabels(join(stack.modelRoot, MODEL), labelsBefore);
      },
      recovered: async (ctx) => (await canaryMismatch(ctx)) === 0,
    },
  ];
}

/** Polls `cond` every 50 ms; resolves with the time it first held, or undefined after `timeoutMs`. */
export async function whenTrue(cond: () => Promise<boolean>, timeoutMs: number): Promise<number | undefined> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await cond().catch(() => false)) return Date.now();
    await sleep(50);
  }
  return undefined;
}
