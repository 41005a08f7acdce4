/**
 * The load generator against a real HTTP/2 server on loopback that ends its
 * connections mid-run, as a draining or restarting server or Envoy does: the
 * run goes on, on new connections, and reports what failed meanwhile.
 */
import { once } from 'node:events';
import { createServer, type Http2Server, type ServerHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { generate, grpcFrame } from '../../scripts/lib/load/h2-generator.js';

/** Listens on a free loopback port; resolves with it. */
async function listening(server: Http2Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

/** Answers every call OK (an empty message), and ends a connection after `perConnection` calls. */
async function flakyServer(
  perConnection: number,
): Promise<{ server: Http2Server; port: number; sessions: () => number }> {
  let sessions = 0;
  const server = createServer();
  server.on('session', (session: ServerHttp2Session) => {
    sessions++;
    let calls = 0;
    session.on('stream', (stream) => {
      calls++;
      stream.on('error', () => undefined);
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(grpcFrame(Buffer.alloc(0)));
      // Abruptly, after answering: the client's next request on it fails.
      if (calls === perConnection) setImmediate(() => session.destroy());
    });
  });
  return { server, port: await listening(server), sessions: () => sessions };
}

describe('h2 load generator: connections that end mid-run', function () {
  this.timeout(30_000);

  it('keeps running on new connections, and counts the calls a dead one cut off as failed (UNAVAILABLE or INTERNAL)', async () => {
    const { server, port, sessions } = await flakyServer(25);
    const ticks: number[] = [];
    try {
      const r = await generate({
        origin: `http://127.0.0.1:${port}`,
        path: '/inference.v1.InferenceService/Predict',
        request: () => ({ body: grpcFrame(Buffer.alloc(0)), headers: {} }),
        concurrency: 4,
        connections: 1,
        durationMs: 1500,
        timeoutMs: 1000,
        onTick: (ms) => ticks.push(ms),
        tickMs: 100,
      });
      const ok = r.calls.filter((c) => c.code === 0).length;
      const failed = r.calls.filter((c) => c.code !== 0);
      expect(r.reconnects, 'reconnects').to.be.greaterThan(1);
      expect(sessions()).to.equal(r.reconnects + 1);
      // More calls succeeded than one connection allows: the run went on after each end.
      expect(ok).to.be.greaterThan(25 * 2);
      // Cut off with no answer: UNAVAILABLE; with the response headers but no status: INTERNAL.
      expect(
        failed.every((c) => c.code === 14 || c.code === 13),
        JSON.stringify(failed.slice(0, 3)),
      ).to.equal(true);
      expect(failed.length, 'calls cut off').to.be.greaterThan(0);
      expect(r.aborted).to.equal(false);
      // The progress timer is stopped when the run ends.
      const seen = ticks.length;
      await new Promise((res) => setTimeout(res, 250));
      expect(ticks.length).to.equal(seen);
    } finally {
      server.close();
    }
  });
});

/** Answers every call OK after `delayMs`. */
async function slowServer(delayMs: number): Promise<{ server: Http2Server; port: number }> {
  const server = createServer();
  server.on('stream', (stream) => {
    stream.on('error', () => undefined);
    setTimeout(() => {
      if (stream.destroyed) return;
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(grpcFrame(Buffer.alloc(0)));
    }, delayMs);
  });
  return { server, port: await listening(server) };
}

describe('h2 load generator: a fixed rate the server cannot keep up with', function () {
  this.timeout(30_000);
  const SERVICE_MS = 30;
  const base = (port: number) => ({
    origin: `http://127.0.0.1:${port}`,
    path: '/inference.v1.InferenceService/Predict',
    request: () => ({ body: grpcFrame(Buffer.alloc(0)), headers: {} }),
    concurrency: 1,
    connections: 1,
    durationMs: 600,
    timeoutMs: 5000,
  });

  it("counts each call's latency from its due time, and says how many were sent late or not at all", async () => {
    const { server, port } = await slowServer(SERVICE_MS);
    try {
      // 100/s with one worker and 30 ms calls: call k is due at 10k ms but sent at about 30k ms.
      const r = await generate({ ...base(port), rps: 100 });
      const ok = r.calls.filter((c) => c.code === 0);
      expect(ok.length, 'calls').to.be.within(5, 25);
      for (const c of ok) {
        // The wait for the worker is part of the latency, on top of the server's own time.
        expect(c.latencyNs, JSON.stringify(c)).to.be.at.least(c.sendLagNs + (SERVICE_MS - 5) * 1e6);
      }
      const lags = ok.map((c) => c.sendLagNs / 1e6);
      const last = ok[ok.length - 1] as (typeof ok)[number];
      // The last call waited about 20 ms for each call before it: far more than one call's time.
      expect(last.sendLagNs / 1e6).to.be.greaterThan(4 * SERVICE_MS);
      expect(last.latencyNs / 1e6).to.be.greaterThan(5 * SERVICE_MS);
      expect(r.schedule).to.deep.include({ due: 60, sent: r.calls.length });
      expect(r.schedule?.late).to.be.greaterThan(ok.length / 2);
      expect(r.schedule?.maxLagMs).to.be.closeTo(Math.max(...lags), 0.001);
    } finally {
      server.close();
    }
  });

  it('in a closed loop, counts from the send and keeps no schedule', async () => {
    const { server, port } = await slowServer(SERVICE_MS);
    try {
      const r = await generate(base(port));
      expect(r.calls.length).to.be.greaterThan(3);
      expect(r.calls.every((c) => c.sendLagNs === 0)).to.equal(true);
      expect(Math.max(...r.calls.map((c) => c.latencyNs / 1e6))).to.be.lessThan(4 * SERVICE_MS);
      expect(r.schedule).to.equal(undefined);
    } finally {
      server.close();
    }
  });
});
