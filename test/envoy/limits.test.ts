/**
 * Envoy's limits, each against the abuse it bounds: very short deadlines,
 * unfinished streams, idle and half-open connections, heap pressure.
 */
import { existsSync, readFileSync } from 'node:fs';
import http2 from 'node:http2';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { frozenMidResponse } from '../../scripts/lib/chaos/faults.js';
import { AccessLogRotator } from '../../scripts/lib/envoy/access-log.js';
import {
  type AbStack,
  type CallResult,
  failures,
  LoadLoop,
  loggedCalls,
  runCalls,
  startAbStack,
} from '../helpers/envoy.js';
import { waitFor } from '../helpers/server.js';

const MIB = 1024 * 1024;

/** Resident memory of a process, from /proc (Linux). */
function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) / 1024;
}

describe('Envoy limits', function () {
  this.timeout(120_000);

  describe('with the default limits', () => {
    let stack: AbStack;
    before(async () => {
      stack = await startAbStack();
    });
    after(async () => stack?.stop());

    it('answers 1–3 ms deadlines with DEADLINE_EXCEEDED (or OK), never INTERNAL or UNAVAILABLE', async () => {
      const codes: Record<string, number> = {};
      for (let round = 0; round < 4; round++) {
        const results = await runCalls(
          stack.client,
          500,
          (i) => ({ user: `dl-${round}-${i}`, deadlineMs: 1 + (i % 3) }),
          20,
        );
        for (const r of results) {
          const k = r.error ? status[r.error.code] : 'OK';
          codes[k as string] = (codes[k as string] ?? 0) + 1;
        }
      }
      // Before: Envoy closed the connection (premature-reset and nghttp2 RST limits) or reset
      // started responses on its own timer, and a few calls in 500 failed INTERNAL or UNAVAILABLE.
      expect(
        Object.keys(codes).every((k) => k === 'OK' || k === 'DEADLINE_EXCEEDED'),
        JSON.stringify(codes),
      ).to.equal(true);
      // The client connection survived it all.
      const after = await runCalls(stack.client, 50, (i) => ({ user: `after-${i}` }));
      expect(after.filter((r) => r.error).length).to.equal(0);
    });

    it('bounds the memory 200 unfinished 4 MiB requests hold in Envoy, and ends them', async () => {
      const pid = stack.envoy.proc.pid as number;
      const base = rssMb(pid);
      let peak = base;
      const sampler = setInterval(() => {
        peak = Math.max(peak, rssMb(pid));
      }, 100);
      const head = Buffer.alloc(5);
      head.writeUInt32BE(4 * MIB, 1);
      const body = Buffer.alloc(4 * MIB - 1024, 0x20);
      const sessions: http2.ClientHttp2Session[] = [];
      const ended: boolean[] = [];
      try {
        // Two connections of 100 streams (Envoy's max_concurrent_streams).
        for (let c = 0; c < 2; c++) {
          const session = http2.connect(`http://127.0.0.1:${stack.port}`, { maxSessionMemory: 4096 });
          session.on('error', () => undefined);
          sessions.push(session);
          for (let i = 0; i < 100; i++) {
            const k = ended.push(false) - 1;
            const s = session.request({
              ':method': 'POST',
              ':path': '/inference.v1.InferenceService/Predict',
              'content-type': 'application/grpc',
              te: 'trailers',
              'x-user-id': `slow-${c}-${i}`,
            });
            s.on('error', () => undefined);
            s.on('data', () => undefined);
            s.on('close', () => {
              ended[k] = true;
            });
            s.write(head);
            s.write(body);
          }
        }
        // The servers refuse past MAX_PENDING_REQUEST_BYTES and at REQUEST_BODY_TIMEOUT_MS (10 s).
        await waitFor('every unfinished stream ended', () => ended.every(Boolean), 40_000, 100);
      } finally {
        clearInterval(sampler);
        for (const s of sessions) s.destroy();
      }
      const growth = peak - base;
      console.log(
        `      (200 unfinished 4 MiB streams: Envoy RSS ${base.toFixed(0)} → peak ${peak.toFixed(0)} MB; before: 99 → 1,490 MB)`,
      );
      expect(growth).to.be.lessThan(300);
      const after = await runCalls(stack.client, 20, (i) => ({ user: `post-slow-${i}` }));
      expect(after.filter((r) => r.error).length).to.equal(0);
    });

    it('rotates: renamed aside when large, Envoy reopens it on SIGUSR1, older files shifted and capped', async () => {
      const path = join(stack.dir, 'access.log');
      const rotator = new AccessLogRotator({
        path,
        maxBytes: 1,
        keep: 2,
        reopen: () => stack.envoy.reopenLogs(),
        intervalMs: 60_000,
      });
      for (let round = 1; round <= 3; round++) {
        await runCalls(stack.client, 20, (i) => ({ user: `rot-${round}-${i}` }));
        await waitFor(
          'the calls in the access log',
          () => existsSync(path) && readFileSync(path, 'utf8').includes(`rot-${round}-19`),
          5000,
          50,
        );
        expect(await rotator.rotateIfLarge()).to.equal(true);
      }
      await runCalls(stack.client, 5, (i) => ({ user: `rot-4-${i}` }));
      await waitFor(
        'Envoy writing a fresh file',
        () => existsSync(path) && readFileSync(path, 'utf8').includes('rot-4-4'),
        5000,
        50,
      );
      expect(readFileSync(path, 'utf8')).to.not.include('rot-3-');
      expect(readFileSync(`${path}.1`, 'utf8')).to.include('rot-3-19');
      expect(readFileSync(`${path}.2`, 'utf8')).to.include('rot-2-19');
      expect(existsSync(`${path}.3`)).to.equal(false);
    });

    it('loses no call to a hung canary (SIGSTOP) but one it had begun answering: the per-try timeout retries the rest on stable', async () => {
      const concurrency = 10;
      const loop = new LoadLoop(stack.client, (i) => ({ user: `hung-${i}`, deadlineMs: 2500 }), {
        maxCalls: 20_000,
        maxMs: 20_000,
        concurrency,
      });
      await loop.waitForResults(100);
      const canary = stack.canary.proc;
      canary.kill('SIGSTOP');
      const t0 = Date.now();
      try {
        // Longer than the client deadline: a call left on the hung canary would fail.
        await waitFor('4 s of traffic against the hung canary', () => Date.now() - t0 > 4000, 6000, 100);
      } finally {
        canary.kill('SIGCONT');
      }
      const results = await loop.stop();
      // The one loss allowed (frozenMidResponse, as `npm run chaos` judges its SIGSTOP): the
      // canary had begun the response when it froze, so Envoy, having forwarded its headers,
      // cannot retry it. Only with Envoy's word for it, and only for a call begun before the
      // freeze. Every other call must be answered; without the per-try timeout none would be.
      const failed = results.filter((r) => r.error);
      const log = failed.length === 0 ? [] : await loggedCalls(stack, failed);
      const begun = (r: CallResult) =>
        r.startedAt <= t0 && frozenMidResponse(log.find((e) => e.user === r.user));
      expect(
        failures(failed.filter((r) => !begun(r))),
        `failed calls the canary had not begun answering; Envoy's log of every failed call: ${JSON.stringify(log)}`,
      ).to.deep.equal([]);
      const slow = results.filter((r) => r.startedAt >= t0 && r.endedAt - r.startedAt >= 900);
      console.log(
        `      (hung canary for 4 s: ${results.length} calls, ${failed.length} failed (begun by the canary before it froze), ` +
          `${slow.length} answered by stable after the 1 s per-try timeout)`,
      );
      if (failed.length > 0) console.log(`      (Envoy's log of the failed: ${JSON.stringify(log)})`);
      await waitFor('the canary healthy again', () => stack.admin.clusterHealthy('canary'), 15_000, 100);
    });
  });

  describe('with health checks too slow to notice a hung canary', () => {
    let stack: AbStack;
    before(async () => {
      // One check a minute: during the test the canary stays "healthy" in Envoy's eyes,
      // so only the retry policy can steer a call away from it.
      stack = await startAbStack({ healthCheckIntervalMs: 60_000 });
    });
    after(async () => {
      stack?.canary.proc.kill('SIGCONT');
      await stack?.stop();
    });

    it('retries a call whose canary attempt hung on stable, within a 2.5 s deadline, before any health check has failed', async () => {
      // Warm both arms, and find users the split sends to the canary.
      const warm = await runCalls(stack.client, 200, (i) => ({ user: `slow-hc-${i}` }));
      expect(failures(warm)).to.deep.equal([]);
      const canaryUsers = warm.filter((r) => r.armHeader === 'canary').map((r) => r.user as string);
      expect(canaryUsers.length, 'users the split sends to the canary').to.be.greaterThan(5);
      stack.canary.proc.kill('SIGSTOP');
      try {
        // First one call alone: nothing else fails on the canary meanwhile, so outlier
        // detection (3 consecutive gateway failures) cannot have ejected it when this
        // call's retry is placed, and still the retry leaves the canary: three 1 s
        // attempts on it would outlast the 2.5 s deadline.
        const [alone] = await runCalls(stack.client, 1, () => ({
          user: canaryUsers[0] as string,
          deadlineMs: 2500,
        }));
        expect(alone?.error, 'a lone call to the hung canary').to.equal(undefined);
        expect(alone?.armHeader).to.equal('stable');
        // The canary is healthy as far as Envoy knows: only the per-try timeout and the
        // retry policy (previous_hosts, the aggregate cluster's fallback) can save these calls.
        const results = await runCalls(
          stack.client,
          canaryUsers.length,
          (i) => ({ user: canaryUsers[i] as string, deadlineMs: 2500 }),
          canaryUsers.length,
        );
        expect(failures(results)).to.deep.equal([]);
        expect(results.every((r) => r.armHeader === 'stable')).to.equal(true);
        expect(
          results.every((r) => r.endedAt - r.startedAt >= 900),
          'each waited out the per-try timeout',
        ).to.equal(true);
      } finally {
        stack.canary.proc.kill('SIGCONT');
      }
    });
  });

  describe('with short idle and header timeouts', () => {
    let stack: AbStack;
    before(async () => {
      stack = await startAbStack({
        bootstrap: { limits: { idleTimeoutMs: 1000, requestHeadersTimeoutMs: 1000 } },
      });
    });
    after(async () => stack?.stop());

    it('closes idle TCP connections and half-sent prefaces', async () => {
      const sockets: Socket[] = [];
      const closed: boolean[] = [];
      try {
        const open = (send: Buffer | string | undefined) =>
          new Promise<void>((resolve) => {
            const i = closed.push(false) - 1;
            const s = connect(stack.port, '127.0.0.1', () => {
              if (send !== undefined) s.write(send);
              resolve();
            });
            s.on('error', () => undefined);
            s.on('data', () => undefined);
            s.on('close', () => {
              closed[i] = true;
            });
            sockets.push(s);
          });
        for (let i = 0; i < 100; i++) await open(undefined);
        for (let i = 0; i < 100; i++) await open('PRI * HTTP/2.0\r\n');
        await waitFor(
          'the idle and half-open connections closed by Envoy',
          () => closed.every(Boolean),
          10_000,
          100,
        );
      } finally {
        for (const s of sockets) s.destroy();
      }
      // A working client is unaffected.
      expect(
        (await runCalls(stack.client, 10, (i) => ({ user: `idle-${i}` }))).filter((r) => r.error),
      ).to.have.length(0);
    });
  });

  describe('under heap pressure (overload manager)', () => {
    let stack: AbStack;
    before(async () => {
      // A heap cap below what Envoy already uses: every heap action is on.
      stack = await startAbStack({ bootstrap: { limits: { maxHeapBytes: 4 * MIB } } });
    });
    after(async () => stack?.stop());

    it('refuses new requests (UNAVAILABLE, retryable) once the heap passes 95% of its cap', async () => {
      await waitFor(
        'the overload action',
        async () =>
          Number(
            (
              await stack.admin.stats(
                'overload\\.envoy\\.overload_actions\\.stop_accepting_requests\\.active$',
              )
            )
              .values()
              .next().value,
          ) === 1,
        5000,
        100,
      );
      const results = await runCalls(stack.client, 10, (i) => ({ user: `heap-${i}` }));
      expect(results.map((r) => r.error?.code)).to.deep.equal(new Array(10).fill(status.UNAVAILABLE));
    });
  });
});
