import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { BENCH_USAGE, parseBenchArgs } from '../../scripts/lib/bench/options.js';
import { bringUpPeer, peerRequests } from '../../scripts/lib/bench/peers/lineup.js';
import type { PeerSpec } from '../../scripts/lib/bench/peers/peer.js';
import {
  agreementRecords,
  REFERENCE_WIRE,
  SCORE_TOLERANCE,
  scoreAgreement,
  servedVersion,
} from '../../scripts/lib/bench/peers/score-agreement.js';
import { Processes } from '../../scripts/lib/bench/processes.js';
import type { BenchContext } from '../../scripts/lib/bench/targets.js';
import { UsageError } from '../../scripts/lib/cli.js';
import { ghzArgs } from '../../scripts/lib/load/ghz-args.js';
import { MODELS_DIR, SERVER_MAIN } from '../../scripts/lib/paths.js';
import { freePort } from '../../scripts/lib/ports.js';
import { type ServerProcess, startServer } from '../../scripts/lib/server-process.js';
import { DEMO_MODELS, NEWER, OLDER, removeDir } from '../helpers/server.js';

describe('bench --peers options', () => {
  it('are off by default and on with --peers, with the side section only', () => {
    expect(parseBenchArgs([]).peers).to.equal(false);
    expect(parseBenchArgs(['--peers']).peers).to.equal(true);
    expect(parseBenchArgs(['--peers', '--extras']).peers).to.equal(true);
    expect(parseBenchArgs(['--peers', '--only', 'side,logging']).sections.has('side')).to.equal(true);
    expect(() => parseBenchArgs(['--peers', '--only', 'logging'])).to.throw(
      UsageError,
      /--peers needs the side section/,
    );
    expect(() => parseBenchArgs(['--peers=yes'])).to.throw(UsageError);
    expect(BENCH_USAGE).to.match(/--peers\s+also Triton \(PyTriton\), the KServe/);
  });
});

describe("bench peers: ghz requests on each peer's wire", () => {
  it("name the peer's contract by its protoset", () => {
    const args = ghzArgs({
      host: '127.0.0.1:1',
      call: 'inference.GRPCInferenceService/ModelInfer',
      insecure: true,
      protoset: '/x/contract.protoset',
      dataFile: '/x/data.json',
      concurrency: 1,
      durationMs: 1000,
      timeoutMs: 1000,
      outputFile: '/x/out.json',
    });
    expect(args).to.include('--protoset=/x/contract.protoset');
    expect(args.some((a) => a.startsWith('--proto='))).to.equal(false);
  });

  it("carry the same users as the Predict rows, with the peer's encoding and shape", () => {
    const raw = JSON.parse(peerRequests('conversion', { encoding: 'raw', shape: [1, 1] }, 3).data) as {
      inputs: { shape: number[] }[];
      raw_input_contents: string[];
    }[];
    expect(raw).to.have.length(3);
    expect(raw[0]?.inputs.every((t) => t.shape.join() === '1,1')).to.equal(true);
    expect(raw[0]?.raw_input_contents).to.have.length(raw[0]?.inputs.length ?? -1);
    const typed = peerRequests('conversion', { encoding: 'typed', shape: [1] }, 2);
    const first = (JSON.parse(typed.data) as { inputs: { name: string; contents: unknown }[] }[])[1];
    expect(first?.inputs.find((t) => t.name === 'userId')?.contents).to.deep.equal({
      int64_contents: [102079312],
    });
    expect(Object.values(typed.metadata)[0]).to.equal('{{add 102079311 (mod .RequestNumber 2)}}');
  });
});

/**
 * The check a peer must pass before it is timed, against real servers on
 * loopback: this server's stable arm (the older demo version) is the
 * reference; its canary arm (the newer version: other weights) stands in for
 * a peer with different answers; a port nobody listens on for one that fails.
 * No peer venv is needed: the peers' own runs are `npm run bench -- --peers`.
 */
describe('bench peers: score agreement (fail closed)', function () {
  this.timeout(60_000);
  let dir: string;
  let stable: ServerProcess | undefined;
  let canary: ServerProcess | undefined;
  const records = agreementRecords(join(DEMO_MODELS, 'conversion', OLDER));

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'bench-peers-'));
    const start = (role: string) =>
      startServer({
        ports: 'free',
        outFile: join(dir, `${role}.out`),
        env: { ROLE: role, LOG_DIR: join(dir, role) },
      });
    [stable, canary] = await Promise.all([start('stable'), start('canary')]);
  });

  after(async () => {
    await Promise.all([stable?.stop(), canary?.stop()]);
    removeDir(dir);
  });

  it('uses golden records that carry every field, and finds the version the reference serves', async () => {
    expect(records.length).to.be.greaterThan(10);
    expect(records.map((r) => r.id)).to.include('seed-sample');
    expect(records.map((r) => r.id)).not.to.include('only-required-fields');
    const s = stable as ServerProcess;
    expect(await servedVersion(s.host, 'conversion', (records[0] as (typeof records)[0]).record)).to.equal(
      OLDER,
    );
  });

  it('accepts a peer with the same answers, on either wire', async () => {
    const s = stable as ServerProcess;
    for (const peerWire of [REFERENCE_WIRE, { encoding: 'typed', shape: [1] } as const]) {
      const a = await scoreAgreement({
        reference: s.host,
        peer: s.host,
        peerWire,
        model: 'conversion',
        records,
      });
      expect(a).to.deep.equal({ records: records.length, agrees: true, maxAbsDiff: 0, labelMismatches: 0 });
    }
  });

  it('refuses a peer whose scores differ, naming the first record', async () => {
    expect(NEWER).not.to.equal(OLDER);
    const a = await scoreAgreement({
      reference: (stable as ServerProcess).host,
      peer: (canary as ServerProcess).host,
      peerWire: REFERENCE_WIRE,
      model: 'conversion',
      records,
    });
    expect(a.agrees).to.equal(false);
    expect(a.maxAbsDiff).to.be.greaterThan(SCORE_TOLERANCE);
    expect(a.firstProblem).to.match(/^seed-sample: score \S+ vs this server's \S+/);
  });

  it('refuses a peer that does not answer, and one with nothing to compare', async () => {
    const s = stable as ServerProcess;
    const nobody = `127.0.0.1:${await freePort()}`;
    const a = await scoreAgreement({
      reference: s.host,
      peer: nobody,
      peerWire: REFERENCE_WIRE,
      model: 'conversion',
      records: records.slice(0, 2),
    });
    expect(a.agrees).to.equal(false);
    expect(a.firstProblem).to.match(/^seed-sample: the peer failed: 14 UNAVAILABLE/);
    const none = await scoreAgreement({
      reference: s.host,
      peer: s.host,
      peerWire: REFERENCE_WIRE,
      model: 'conversion',
      records: [],
    });
    expect(none.agrees).to.equal(false);
  });
});

/**
 * The lineup's side of it: a "peer" that is this server's canary (other
 * weights), started the way a peer is (its app on free ports, ready on
 * ModelReady), is refused, stopped and gets no target; one serving the
 * reference's weights gets a target. Node stands in for the venv's Python.
 */
describe('bench peers: a disagreeing peer is not timed', function () {
  this.timeout(60_000);
  let dir: string;
  let reference: ServerProcess | undefined;
  const procs = new Processes();

  /** This server as a peer: its `role` arm on the ports the lineup chose. */
  const ourServerAs = (role: string): PeerSpec => ({
    key: `ours-${role}`,
    label: `this server's ${role} arm as a peer`,
    venv: 'unused',
    pb2Module: 'unused',
    wire: REFERENCE_WIRE,
    settings: 'defaults',
    args: () => [SERVER_MAIN],
    env: (_venv, ports) => ({
      ROLE: role,
      GRPC_PORT: String(ports.grpc),
      METRICS_PORT: String(ports.metrics),
      MODEL_ROOT: MODELS_DIR,
      LOG_DIR: join(dir, `peer-${role}`),
    }),
    startTimeoutMs: 30_000,
  });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'bench-lineup-'));
    reference = await startServer({
      ports: 'free',
      outFile: join(dir, 'reference.out'),
      env: { ROLE: 'stable', LOG_DIR: join(dir, 'reference') },
    });
  });

  after(async () => {
    await procs.stopAll();
    await reference?.stop();
    removeDir(dir);
  });

  it('refuses and stops a peer with other answers, and times one with the same', async () => {
    const ctx = {
      opts: parseBenchArgs(['--peers']),
      procs,
      workDir: dir,
      progress: () => undefined,
      signal: new AbortController().signal,
      version: OLDER,
    } as BenchContext;
    const venv = {
      dir,
      python: process.execPath,
      protoset: join(dir, 'none.protoset'),
      baseLibDir: undefined,
    };
    const host = (reference as ServerProcess).host;
    const [other, same] = await Promise.all([
      bringUpPeer(ctx, ourServerAs('canary'), venv, host, OLDER),
      bringUpPeer(ctx, ourServerAs('stable'), venv, host, OLDER),
    ]);
    expect(other.target).to.equal(undefined);
    expect(other.agreement?.agrees).to.equal(false);
    expect(other.problem).to.match(/^DISAGREES \(seed-sample: score .*\); not timed$/);
    expect(same.problem).to.equal(undefined);
    expect(same.agreement?.agrees).to.equal(true);
    expect(same.target?.name).to.equal('ours-stable');
    expect(same.target?.watch.length).to.be.greaterThan(0);
    const venvless = await bringUpPeer(ctx, ourServerAs('stable'), new Error('pip failed'), host, OLDER);
    expect(venvless.target).to.equal(undefined);
    expect(venvless.problem).to.match(/its venv could not be made: pip failed/);
  });
});
