/**
 * What unfinished streams and idle connections may hold: bounded in memory
 * and in time, and never an obstacle to a prompt shutdown.
 */
import http2 from 'node:http2';
import { connect, type Socket } from 'node:net';
import { credentials } from '@grpc/grpc-js';
import { expect } from 'chai';
import { InferenceServiceClient } from '../../server/generated/inference/v1/inference.js';
import { metricValue } from '../helpers/envoy.js';
import { RawClient } from '../helpers/raw-grpc.js';
import {
  predict,
  SAMPLE_RECORD,
  type SpawnedServer,
  spawnServer,
  startApp,
  waitFor,
} from '../helpers/server.js';

const MIB = 1024 * 1024;

/**
 * Opens `n` streams on one HTTP/2 connection, each announcing a `size`-byte
 * Predict message and sending all of it but the last KiB, and never ending.
 * Resolves with the session and each stream's outcome once known.
 */
function slowStreams(
  authority: string,
  n: number,
  size: number,
  path = '/inference.v1.InferenceService/Predict',
) {
  // The client queues every byte at once; its own session memory must not be what resets the streams.
  const session = http2.connect(`http://${authority}`, { maxSessionMemory: 4096 });
  session.on('error', () => undefined);
  const head = Buffer.alloc(5);
  head.writeUInt32BE(size, 1);
  const body = Buffer.alloc(size - 1024, 0x20);
  const outcomes: { status?: number; rst?: number; closedAt?: number }[] = [];
  for (let i = 0; i < n; i++) {
    const o: { status?: number; rst?: number; closedAt?: number } = {};
    outcomes.push(o);
    const s = session.request({
      ':method': 'POST',
      ':path': path,
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    s.on('response', (h) => {
      if (h['grpc-status'] !== undefined) o.status = Number(h['grpc-status']);
    });
    s.on('trailers', (h) => {
      if (h['grpc-status'] !== undefined) o.status = Number(h['grpc-status']);
    });
    s.on('error', () => undefined);
    s.on('data', () => undefined);
    s.on('close', () => {
      o.rst = s.rstCode;
      o.closedAt = Date.now();
    });
    s.write(head);
    s.write(body);
  }
  return { session, outcomes };
}

/** Waits until the server has ended every stream of `attack` (bounded); each stream's gRPC status, or `rst <code>`. */
async function endedStatuses(attack: ReturnType<typeof slowStreams>): Promise<string[]> {
  await waitFor(
    'every unfinished stream to be ended by the server',
    () => attack.outcomes.every((o) => o.closedAt !== undefined),
    20_000,
    50,
  );
  return attack.outcomes.map((o) => String(o.status ?? `rst ${o.rst}`));
}

async function rssOf(server: SpawnedServer): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();
  return (
    metricValue(text, 'process_resident_memory_bytes', {}) ||
    Number(/^process_resident_memory_bytes (\S+)/m.exec(text)?.[1])
  );
}

describe('limits on unfinished streams and idle connections', function () {
  this.timeout(90_000);

  it('bounds the memory 100 unfinished 4 MiB requests hold, ends them in time, and keeps serving', async () => {
    const server = await spawnServer({ REQUEST_BODY_TIMEOUT_MS: '3000' });
    const client = new InferenceServiceClient(`127.0.0.1:${server.grpcPort}`, credentials.createInsecure());
    try {
      // Warm up (first calls allocate), then measure from there.
      for (let i = 0; i < 20; i++) await predict(client, { instances: [{ ...SAMPLE_RECORD }] });
      const base = await rssOf(server);
      const t0 = Date.now();
      const attack = slowStreams(`127.0.0.1:${server.grpcPort}`, 100, 4 * MIB);
      let peak = base;
      let statuses: string[] = [];
      const sampler = setInterval(() => {
        void rssOf(server).then(
          (r) => {
            peak = Math.max(peak, r);
          },
          () => undefined,
        );
      }, 100);
      try {
        // Serving goes on meanwhile.
        await predict(client, { instances: [{ ...SAMPLE_RECORD }] }, undefined, 5000);
        statuses = await endedStatuses(attack);
      } finally {
        clearInterval(sampler);
        attack.session.destroy();
      }
      const byStatus: Record<string, number> = {};
      for (const k of statuses) byStatus[k] = (byStatus[k] ?? 0) + 1;
      // RESOURCE_EXHAUSTED (8) past the pending-bytes budget; DEADLINE_EXCEEDED (4) at REQUEST_BODY_TIMEOUT_MS.
      expect(
        Object.keys(byStatus).every((k) => k === '8' || k === '4'),
        JSON.stringify(byStatus),
      ).to.equal(true);
      expect(byStatus['8'] ?? 0, JSON.stringify(byStatus)).to.be.greaterThan(50);
      const lastClose = Math.max(...attack.outcomes.map((o) => o.closedAt ?? 0));
      expect(lastClose - t0).to.be.lessThan(3000 + 5000);
      const growthMb = (peak - base) / MIB;
      console.log(
        `      (100 unfinished 4 MiB streams: RSS ${(base / MIB).toFixed(0)} → peak ${(peak / MIB).toFixed(0)} MB; ${JSON.stringify(byStatus)})`,
      );
      // 32 MiB of pending bytes (MAX_PENDING_REQUEST_BYTES) plus what grpc-js copies; unbounded it was 430 MB.
      expect(growthMb, `RSS grew ${growthMb.toFixed(0)} MB`).to.be.lessThan(200);
      await predict(client, { instances: [{ ...SAMPLE_RECORD }] }, undefined, 5000);
    } finally {
      client.close();
      await server.stop();
    }
  });

  it('counts the message in progress on a request stream (reflection) against the same budget', async () => {
    // A request-streaming method's bytes are counted per message, from its length prefix:
    // 20 messages announcing 4 MiB, each 1 KiB short, are 80 MiB against a 32 MiB budget.
    const server = await spawnServer({ REQUEST_BODY_TIMEOUT_MS: '3000' });
    try {
      const attack = slowStreams(
        `127.0.0.1:${server.grpcPort}`,
        20,
        4 * MIB,
        '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo',
      );
      let statuses: string[];
      try {
        statuses = await endedStatuses(attack);
      } finally {
        attack.session.destroy();
      }
      // RESOURCE_EXHAUSTED past the budget, DEADLINE_EXCEEDED at REQUEST_BODY_TIMEOUT_MS for the rest.
      expect(
        statuses.every((x) => x === '8' || x === '4'),
        statuses.join(','),
      ).to.equal(true);
      expect(statuses.filter((x) => x === '8').length, statuses.join(',')).to.be.at.least(12);
    } finally {
      await server.stop();
    }
  });

  it('closes connections that never finish the HTTP/2 handshake, and idle ones', async () => {
    const t = await startApp({ GRPC_HANDSHAKE_TIMEOUT_MS: '500', GRPC_MAX_CONNECTION_IDLE_MS: '500' });
    const sockets: Socket[] = [];
    try {
      const closed: boolean[] = [];
      const open = (send: string | undefined) =>
        new Promise<void>((resolve) => {
          const i = closed.push(false) - 1;
          const s = connect(t.ports.grpc, '127.0.0.1', () => {
            if (send !== undefined) s.write(send);
            resolve();
          });
          s.on('error', () => undefined);
          s.on('data', () => undefined); // read, so the server's close is seen
          s.on('close', () => {
            closed[i] = true;
          });
          sockets.push(s);
        });
      // Silent TCP connections, and half a client preface.
      for (let i = 0; i < 100; i++) await open(undefined);
      for (let i = 0; i < 100; i++) await open('PRI * HTTP/2.0\r\n');
      // A complete HTTP/2 session that never opens a stream.
      const idle = http2.connect(`http://127.0.0.1:${t.ports.grpc}`);
      idle.on('error', () => undefined);
      let idleClosed = false;
      idle.on('close', () => {
        idleClosed = true;
      });
      await waitFor(
        'every half-open connection closed by the server',
        () => closed.every(Boolean),
        5000,
        50,
      ).catch((e: Error) => {
        throw new Error(`${e.message}: ${closed.filter(Boolean).length} of ${closed.length} closed`);
      });
      await waitFor('the idle session closed by the server', () => idleClosed, 5000, 50);
      // A working client is unaffected.
      await predict(t.client, { instances: [{ ...SAMPLE_RECORD }] });
    } finally {
      for (const s of sockets) s.destroy();
      await t.stop();
    }
  });

  it('advertises GRPC_MAX_CONCURRENT_STREAMS and refuses connections beyond GRPC_MAX_CONNECTIONS', async () => {
    const t = await startApp({ GRPC_MAX_CONCURRENT_STREAMS: '7', GRPC_MAX_CONNECTIONS: '3' });
    const sessions: http2.ClientHttp2Session[] = [];
    try {
      const s = http2.connect(`http://127.0.0.1:${t.ports.grpc}`);
      sessions.push(s);
      s.on('error', () => undefined);
      await new Promise((r) => s.once('remoteSettings', r));
      expect(s.remoteSettings.maxConcurrentStreams).to.equal(7);
      // t.client holds one connection; two more fit, the next is closed at once.
      await predict(t.client, { instances: [{ ...SAMPLE_RECORD }] });
      const extra = http2.connect(`http://127.0.0.1:${t.ports.grpc}`);
      sessions.push(extra);
      extra.on('error', () => undefined);
      await new Promise((r) => extra.once('remoteSettings', r));
      const refused = http2.connect(`http://127.0.0.1:${t.ports.grpc}`);
      sessions.push(refused);
      refused.on('error', () => undefined);
      await new Promise((r) => refused.once('close', r));
      expect(refused.remoteSettings?.maxConcurrentStreams ?? 0).to.not.equal(7);
    } finally {
      for (const s of sessions) s.destroy();
      await t.stop();
    }
  });

  it('shuts down at once when only unfinished requests are open, instead of waiting out the grace period', async () => {
    const t = await startApp({ SHUTDOWN_GRACE_MS: '8000', REQUEST_BODY_TIMEOUT_MS: '60000' });
    const attack = slowStreams(`127.0.0.1:${t.ports.grpc}`, 20, 64 * 1024);
    const raw = new RawClient(`127.0.0.1:${t.ports.grpc}`);
    try {
      // Let the streams reach the server.
      await raw.call({ path: '/grpc.health.v1.Health/Check', body: Buffer.alloc(0) });
      const t0 = Date.now();
      await t.stop();
      const ms = Date.now() - t0;
      expect(t.logs.withMsg('shutdown: grace period over; forcing')).to.deep.equal([]);
      expect(t.logs.withMsg('shutdown: complete')).to.have.length(1);
      // Before the grace period would have ended (the log above says it did not force).
      expect(ms).to.be.lessThan(8000);
      expect(t.logs.withMsg('shutdown: closing the gRPC server')[0]).to.include({ unfinished: 20 });
    } finally {
      raw.close();
      attack.session.destroy();
    }
  });
});
