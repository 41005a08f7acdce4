/**
 * `npm start` end to end, started exactly as an operator or a supervisor
 * starts it (`npm start -- …`): the stack brings up both servers and Envoy,
 * waits for healthy clusters, serves through Envoy, and stops everything when
 * the `npm` process itself gets SIGTERM. It runs on shifted ports
 * (--port-offset) with its state in a temp dir, so it does not collide with a
 * stack someone already runs on 8080.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { expect } from 'chai';
import { portIsFree } from '../../scripts/lib/ports.js';
import { READY_LINE } from '../../scripts/lib/stack/banner.js';
import { InferenceServiceClient } from '../../server/generated/inference/v1/inference.js';
import { USER_ID_HEADER } from '../../server/headers.js';
import { call, countArms, runCalls } from '../helpers/envoy.js';
import { ROOT, removeDir, waitFor } from '../helpers/server.js';

const BASE_PORTS = [8080, 8081, 9901, 50051, 50052, 9464, 9465];

/** An offset whose six ports are all free right now (a bounded search). */
async function freeOffset(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const offset = 3000 + Math.floor(Math.random() * 12_000);
    const ok = await Promise.all(BASE_PORTS.map((p) => portIsFree(p + offset)));
    if (ok.every(Boolean)) return offset;
  }
  throw new Error('no free set of ports for the stack');
}

/** A live process as /proc shows it (Linux). */
interface Proc {
  readonly pid: number;
  readonly ppid: number;
  readonly cmd: string;
}

/** Every process that is not a zombie, from /proc. */
function processes(): Proc[] {
  const out: Proc[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // pid (comm) state ppid …; comm may hold spaces and parentheses.
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (state === 'Z') continue;
      const cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').join(' ').trim();
      out.push({ pid: Number(name), ppid: Number(ppid), cmd });
    } catch {
      // gone while we read
    }
  }
  return out;
}

/** The descendants of `pid` (children, their children…), alive now. */
function descendants(pid: number): Proc[] {
  const all = processes();
  const found: Proc[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const parent = queue.shift() as number;
    for (const p of all) {
      if (p.ppid === parent) {
        found.push(p);
        queue.push(p.pid);
      }
    }
  }
  return found;
}

const alive = (pid: number) => processes().some((p) => p.pid === pid);

describe('npm start (scripts/ops/stack.ts)', function () {
  this.timeout(90_000);
  let dir: string;
  let npm: ChildProcess | undefined;
  let output = '';
  let exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  let offset: number;
  /** The processes under npm once the stack is ready (the after hook kills what a failure left). */
  let tree: Proc[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ab-npm-start-'));
    offset = await freeOffset();
    npm = spawn('npm', ['start', '--', '--port-offset', String(offset), '--state-dir', dir], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    exited = new Promise((resolve) => npm?.once('exit', (code, signal) => resolve({ code, signal })));
    npm.stdout?.on('data', (d: Buffer) => {
      output += d.toString();
    });
    npm.stderr?.on('data', (d: Buffer) => {
      output += d.toString();
    });
    const ready = () => output.includes(READY_LINE);
    await waitFor('the stack to print "ready" or exit', () => ready() || npm?.exitCode !== null, 60_000, 50);
    if (!ready()) throw new Error(`the stack did not start:\n${output}`);
    tree = descendants(npm.pid as number);
  });

  after(async () => {
    // Whatever a failed test left: the stack and its children, orphaned or not; a
    // pid counts only while it still runs the same command (pids are reused).
    const now = new Map(processes().map((p) => [p.pid, p.cmd]));
    for (const p of [...tree, ...(npm?.pid ? descendants(npm.pid) : [])]) {
      if (now.get(p.pid) !== p.cmd) continue;
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        // exited meanwhile
      }
    }
    if (npm && npm.exitCode === null && npm.signalCode === null) {
      npm.kill('SIGKILL');
      await exited;
    }
    if (dir) removeDir(dir);
  });

  it('prints the endpoints and a grpcurl line once Envoy reports both clusters healthy', () => {
    expect(output).to.include('Envoy sees stable: healthy; canary: healthy');
    expect(output).to.include(`gRPC via Envoy   127.0.0.1:${8080 + offset}`);
    expect(output).to.match(
      new RegExp(`grpcurl -plaintext -H '${USER_ID_HEADER}: 42' -d '.*' 127\\.0\\.0\\.1:${8080 + offset} `),
    );
    expect(output).to.match(/stable server +127\.0\.0\.1:\d+ +conversion (\d{8}T\d{6}Z)/);
  });

  it('serves through Envoy, and `npm run weights -- 100` moves every user to the canary', async () => {
    const client = new InferenceServiceClient(`127.0.0.1:${8080 + offset}`, credentials.createInsecure());
    try {
      const one = await call(client, { user: '42' });
      expect(one.error).to.equal(undefined);
      expect(one.armHeader).to.be.oneOf(['stable', 'canary']);
      // Envoy's tag names the server that answered.
      expect(one.response?.arm).to.equal(one.armHeader);
      const weights = spawnSync(
        process.execPath,
        [
          join(ROOT, 'dist', 'scripts', 'ops', 'rollout.js'),
          'weights',
          '100',
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

  it('SIGTERM to the npm process stops the stack, both servers and Envoy, and frees all six ports', async () => {
    const named = (re: RegExp) => tree.filter((p) => re.test(p.cmd));
    expect(named(/^node scripts\/dev\/run\.mjs --full ops\/stack /), 'the stack').to.have.length(1);
    expect(named(/dist\/server\/main\.js/), 'the servers').to.have.length(2);
    expect(named(/\/envoy( |$)/), 'Envoy').to.have.length(1);

    npm?.kill('SIGTERM');
    await waitFor('npm to exit', () => npm?.exitCode !== null || npm?.signalCode !== null, 30_000, 50);
    await waitFor(
      `every process of the stack to be gone (${tree.map((p) => p.pid).join(', ')})`,
      () => tree.every((p) => !alive(p.pid)),
      30_000,
      50,
    );
    for (const p of BASE_PORTS) {
      await waitFor(`port ${p + offset} to be free`, () => portIsFree(p + offset), 10_000, 50);
    }
    expect(output).to.match(/stable exited \(code 0\)/);
    expect(output).to.match(/canary exited \(code 0\)/);
    expect(output).to.match(/envoy exited \(code 0\)/);
    expect(output).to.match(/\[stack\] stopped/);
  });
});
