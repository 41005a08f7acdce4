import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { busyPorts, freePort, portIsFree } from '../../scripts/lib/ports.js';
import { startServer } from '../../scripts/lib/server-process.js';
import { removeDir } from '../helpers/server.js';

describe('the server launcher (scripts/lib/server-process.ts) and loopback ports', function () {
  this.timeout(60_000);
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'launcher-'));
  });
  after(() => removeDir(dir));

  it('with output to a file: free ports, ready once health says SERVING, nothing piped', async () => {
    const outFile = join(dir, 'server.out');
    const server = await startServer({ ports: 'free', outFile, env: { LOG_STDOUT: 'true' } });
    try {
      expect(server.grpcPort).to.be.greaterThan(0);
      expect(server.host).to.equal(`127.0.0.1:${server.grpcPort}`);
      expect(await portIsFree(server.grpcPort)).to.equal(false);
      expect(server.proc.stdout).to.equal(null);
      expect(server.lines).to.deep.equal([]);
    } finally {
      expect(await server.stop()).to.equal(0);
    }
    const started = readFileSync(outFile, 'utf8')
      .split('\n')
      .filter((l) => l.includes('"server started"'));
    expect(started).to.have.length(1);
    expect(JSON.parse(started[0] as string).grpcPort).to.equal(server.grpcPort);
    expect(await server.exited).to.equal('code 0');
  });

  it('refuses a file-mode start without known ports, and says why a piped one did not start', async () => {
    let err = await startServer({ outFile: join(dir, 'x.out') }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).to.match(/needs its ports given/);
    const seen: string[] = [];
    err = await startServer({ env: { MAX_IN_FLIGHT: 'lots' }, onText: (l) => seen.push(l) }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).to.match(
      /^server exited with 2 before starting; stderr: config error: MAX_IN_FLIGHT must be an integer/,
    );
    expect(seen).to.deep.equal([
      'config error: MAX_IN_FLIGHT must be an integer from 1 to 1000000, got "lots".',
    ]);
  });

  it('ports given as an option win over the environment', async () => {
    const [grpc, metrics] = [await freePort(), await freePort()];
    const server = await startServer({
      ports: { grpc, metrics },
      env: { GRPC_PORT: '1', METRICS_PORT: '2' },
    });
    try {
      expect([server.grpcPort, server.metricsPort]).to.deep.equal([grpc, metrics]);
    } finally {
      await server.stop();
    }
  });

  it('names each busy port with what it is for', async () => {
    const blocker: Server = createServer();
    const port = await new Promise<number>((resolve) =>
      blocker.listen(0, '127.0.0.1', () => resolve((blocker.address() as { port: number }).port)),
    );
    try {
      const free = await freePort();
      expect(
        await busyPorts([
          { port, what: 'Envoy admin' },
          { port: free, what: 'canary server gRPC' },
        ]),
      ).to.deep.equal([`127.0.0.1:${port} (Envoy admin): EADDRINUSE`]);
    } finally {
      await new Promise((r) => blocker.close(r));
    }
    expect(await portIsFree(port)).to.equal(true);
  });
});
