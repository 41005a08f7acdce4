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
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port, sessions: () => sessions };
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
