/**
 * `npm start` end to end: the stack script brings up both servers and Envoy,
 * waits for healthy clusters, serves through Envoy, and stops cleanly on
 * SIGTERM. It runs on shifted ports (--port-offset) with its state in a temp
 * dir, so it does not collide with a stack someone already runs on 8080.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { expect } from 'chai';
import { InferenceServiceClient } from '../../server/generated/inference/v1/inference.js';
import { call, countArms, runCalls } from '../helpers/envoy.js';
import { ROOT, removeDir, waitFor } from '../helpers/server.js';

const BASE_PORTS = [8080, 8081, 9901, 50051, 50052, 9464, 9465];

async function free(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** An offset whose six ports are all free right now (a bounded search). */
async function freeOffset(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const offset = 3000 + Math.floor(Math.random() * 12_000);
    const ok = await Promise.all(BASE_PORTS.map((p) => free(p + offset)));
    if (ok.every(Boolean)) return offset;
  }
  throw new Error('no free set of ports for the stack');
}

describe('npm start (scripts/ops/stack.ts)', function () {
  this.timeout(60_000);
  let dir: string;
  let proc: ChildProcess | undefined;
  let output = '';
  let exited: Promise<number | null>;
  let offset: number;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ab-npm-start-'));
    offset = await freeOffset();
    proc = spawn(
      process.execPath,
      [join(ROOT, 'dist', 'scripts', 'ops', 'stack.js'), '--port-offset', String(offset), '--state-dir', dir],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    exited = new Promise((resolve) => proc?.once('exit', (code) => resolve(code)));
    proc.stdout?.on('data', (d: Buffer) => {
      output += d.toString();
    });
    proc.stderr?.on('data', (d: Buffer) => {
      output += d.toString();
    });
    const ready = () => output.includes('Ctrl-C stops everything');
    await waitFor('the stack to print "ready" or exit', () => ready() || proc?.exitCode !== null, 45_000, 50);
    if (!ready()) throw new Error(`the stack did not start:\n${output}`);
  });

  after(async () => {
    if (proc && proc.exitCode === null) {
      proc.kill('SIGKILL');
      await exited;
    }
    if (dir) removeDir(dir);
  });

  it('prints the endpoints and a grpcurl line once Envoy reports both clusters healthy', () => {
    expect(output).to.include('Envoy sees stable: healthy; canary: healthy');
    expect(output).to.include(`gRPC via Envoy   127.0.0.1:${8080 + offset}`);
    expect(output).to.match(
      new RegExp(`grpcurl -plaintext -H 'x-user-id: 42' -d '.*' 127\\.0\\.0\\.1:${8080 + offset} `),
    );
    expect(output).to.match(/stable server +127\.0\.0\.1:\d+ +conversion (\d{8}T\d{6}Z)/);
  });

  it('serves through Envoy, and `npm run weights -- --promote` moves every user to the canary', async () => {
    const client = new InferenceServiceClient(`127.0.0.1:${8080 + offset}`, credentials.createInsecure());
    try {
      const one = await call(client, { user: '42' });
      expect(one.error).to.equal(undefined);
      expect(one.armHeader).to.be.oneOf(['stable', 'canary']);
      const weights = spawnSync(
        process.execPath,
        [
          join(ROOT, 'dist', 'scripts', 'ops', 'weights.js'),
          '--promote',
          '--admin',
          `127.0.0.1:${9901 + offset}`,
          '--routes',
          join(dir, 'routes', 'routes.yaml'),
        ],
        { encoding: 'utf8', timeout: 20_000 },
      );
      expect(weights.status, weights.stderr).to.equal(0);
      const after = await runCalls(client, 50, (i) => ({ user: `promoted-${i}` }));
      expect(countArms(after)).to.deep.equal({ canary: 50 });
    } finally {
      client.close();
    }
  });

  it('stops everything on SIGTERM and exits 0', async () => {
    proc?.kill('SIGTERM');
    expect(await exited).to.equal(0);
    expect(output).to.match(/stable exited \(code 0\)/);
    expect(output).to.match(/canary exited \(code 0\)/);
    expect(output).to.match(/envoy exited \(0\)/);
    for (const p of BASE_PORTS) expect(await free(p + offset), `port ${p + offset}`).to.equal(true);
  });
});
