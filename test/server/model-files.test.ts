/**
 * Oversized or unknown version files are refused before they are read, and
 * what is read, hashed and parsed never stalls serving.
 */

import { createHash } from 'node:crypto';
import {
  closeSync,
  cpSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { expect } from 'chai';
import { fifoInPlaceOf, releaseFifo } from '../helpers/fifo.js';
import {
  copyModels,
  NEWER,
  OLDER,
  predict,
  SAMPLE_RECORD,
  spawnServer,
  startApp,
  type TestApp,
  waitFor,
} from '../helpers/server.js';

const BAD = '29991231T235959Z';

/** A repository with only the older demo version. */
function olderOnly(): string {
  const root = copyModels('models-files-');
  rmSync(join(root, 'conversion', NEWER), { recursive: true });
  return root;
}

async function loadFailure(t: TestApp): Promise<string | undefined> {
  const err = t.logs.lines.find((l) => l.level === 'error' && l.version === BAD);
  return err?.reason as string | undefined;
}

describe('model version files: size limits, unknown content, no stalls', function () {
  this.timeout(120_000);
  let t: TestApp | undefined;
  let root: string;

  beforeEach(() => {
    root = olderOnly();
  });
  afterEach(async () => {
    await t?.stop();
    t = undefined;
    rmSync(root, { recursive: true, force: true });
  });

  /** A copy of the newer demo version named BAD, changed by `corrupt`, outside the repository. */
  function prepareBad(corrupt: (dir: string) => void): string {
    const tmp = join(root, `.staged-${BAD}`);
    cpSync(join(copySource, 'conversion', NEWER), tmp, { recursive: true });
    const m = JSON.parse(readFileSync(join(tmp, 'model.json'), 'utf8')) as Record<string, unknown>;
    m.version = BAD;
    writeFileSync(join(tmp, 'model.json'), JSON.stringify(m));
    corrupt(tmp);
    return tmp;
  }
  let copySource: string;
  before(() => {
    copySource = copyModels('models-files-src-');
  });
  after(() => rmSync(copySource, { recursive: true, force: true }));

  /**
   * Serves calls while the bad version lands and is refused; returns the
   * refusal reason, the calls that failed and the event loop's worst delay
   * meanwhile. With `oldWay` (what the loader used to do with the file, all at
   * once on the event loop), that is first timed here, in this process, before
   * the server starts: `referenceMs` is the stall it causes on this machine at
   * this moment, so a test compares the server's worst delay with it (a ratio
   * in one run, not a fixed number of milliseconds), and the calls' deadline is
   * half of it (at least 250 ms): a loader that still stalled that long fails them.
   */
  async function underTraffic(
    corrupt: (dir: string) => void,
    env: Record<string, string> = {},
    oldWay?: (dir: string) => () => unknown,
    failureWithinMs = 60_000,
  ) {
    // Staged before the server starts (writing 200 MB here would stall this, the server's, loop),
    // then renamed into the repository in one step while traffic runs.
    const staged = prepareBad(corrupt);
    let referenceMs = Number.POSITIVE_INFINITY;
    if (oldWay) {
      const work = oldWay(staged); // the file is read here, untimed: the old loader read it asynchronously
      const t0 = performance.now();
      work();
      referenceMs = performance.now() - t0;
    }
    const deadlineMs = Math.max(250, Math.min(referenceMs / 2, 10_000));
    t = await startApp({ MODEL_ROOT: root, MODEL_POLL_MS: '100', ...env });
    const app = t;
    const lag = monitorEventLoopDelay({ resolution: 5 });
    let failed = 0;
    let calls = 0;
    let stop = false;
    const loop = (async () => {
      while (!stop && calls < 20_000) {
        calls++;
        try {
          await predict(app.client, { instances: [{ ...SAMPLE_RECORD }] }, undefined, deadlineMs);
        } catch {
          failed++;
        }
      }
    })();
    await predict(app.client, { instances: [{ ...SAMPLE_RECORD }] });
    lag.enable();
    renameSync(staged, join(root, 'conversion', BAD));
    try {
      await waitFor(
        'the load failure',
        async () => (await loadFailure(app)) !== undefined,
        failureWithinMs,
        50,
      );
    } finally {
      lag.disable();
      stop = true;
      await loop;
    }
    const served = await predict(app.client, { instances: [{ ...SAMPLE_RECORD }] });
    return {
      reason: (await loadFailure(app)) as string,
      failed,
      calls,
      maxLagMs: lag.max / 1e6,
      referenceMs,
      served: served.version,
    };
  }

  it('refuses a 60 MB model.json without reading it, and serving never stalls', async () => {
    const r = await underTraffic(
      (dir) => {
        const m = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')) as Record<string, unknown>;
        // Valid JSON with every field right, padded by one key: the old loader parsed it (2 s) and served it.
        const text = JSON.stringify(m);
        // Written in pieces: one 60 MB string would leave a major GC to land in the measured window.
        const fd = openSync(join(dir, 'model.json'), 'w');
        writeSync(fd, `${text.slice(0, -1)},"notes":[`);
        const piece = '"0123456789abcdef",'.repeat(10_000);
        for (let i = 0; i < 330; i++) writeSync(fd, piece);
        writeSync(fd, '"end"]}');
        closeSync(fd);
      },
      {},
      (dir) => {
        const text = readFileSync(join(dir, 'model.json'), 'utf8');
        return () => JSON.parse(text);
      },
    );
    expect(r.reason).to.match(
      /model\.json is invalid: \d+ bytes; the limit is 1048576 \(MODEL_MAX_MANIFEST_BYTES\)/,
    );
    expect(r.served).to.equal(OLDER);
    expect(r.failed, `${r.failed} of ${r.calls} calls failed`).to.equal(0);
    // Parsing it on the loop, as the old loader did, stalls for referenceMs.
    process.stderr.write(
      `      (worst delay ${r.maxLagMs.toFixed(0)} ms; parsing it here: ${r.referenceMs.toFixed(0)} ms)\n`,
    );
    expect(r.maxLagMs, `worst delay vs parsing it here (${r.referenceMs.toFixed(0)} ms)`).to.be.lessThan(
      r.referenceMs / 2,
    );
  });

  it('refuses a manifest with an unknown top-level key', async () => {
    const r = await underTraffic((dir) => {
      const m = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')) as Record<string, unknown>;
      m.notes = 'hello';
      writeFileSync(join(dir, 'model.json'), JSON.stringify(m));
    });
    expect(r.reason).to.match(/model\.json is invalid: unknown top-level key "notes"/);
    expect(r.served).to.equal(OLDER);
  });

  it('hashes a 200 MB model.onnx a chunk at a time: serving never stalls, and the mismatch is refused', async () => {
    const r = await underTraffic(
      (dir) => writeFileSync(join(dir, 'model.onnx'), Buffer.alloc(200 * 1024 * 1024, 7)),
      {},
      (dir) => {
        const bytes = readFileSync(join(dir, 'model.onnx'));
        return () => createHash('sha256').update(bytes).digest('hex');
      },
    );
    expect(r.reason).to.match(/sha256 mismatch/);
    expect(r.failed, `${r.failed} of ${r.calls} calls failed`).to.equal(0);
    // Hashing it in one piece, as the old loader did, stalls for referenceMs.
    process.stderr.write(
      `      (worst delay ${r.maxLagMs.toFixed(0)} ms; hashing it here in one piece: ${r.referenceMs.toFixed(0)} ms)\n`,
    );
    expect(r.maxLagMs, `worst delay vs hashing it here (${r.referenceMs.toFixed(0)} ms)`).to.be.lessThan(
      r.referenceMs / 2,
    );
  });

  it('refuses a model.onnx over MODEL_MAX_ONNX_BYTES before reading it', async () => {
    // The demo model.onnx is 1750 bytes; the bad one 64 KiB.
    const r = await underTraffic((dir) => writeFileSync(join(dir, 'model.onnx'), Buffer.alloc(65536)), {
      MODEL_MAX_ONNX_BYTES: '4096',
    });
    expect(r.reason).to.match(
      /model\.onnx cannot be read: 65536 bytes; the limit is 4096 \(MODEL_MAX_ONNX_BYTES\)/,
    );
  });

  it('refuses a golden.json over MODEL_MAX_GOLDEN_BYTES before reading it', async () => {
    // The demo golden.json is about 45 KB; the bad one (five times the cases, compact) about 80 KB.
    const r = await underTraffic(
      (dir) => {
        const g = JSON.parse(readFileSync(join(dir, 'golden.json'), 'utf8')) as { cases: unknown[] };
        g.cases = [...g.cases, ...g.cases, ...g.cases, ...g.cases, ...g.cases];
        writeFileSync(join(dir, 'golden.json'), JSON.stringify(g));
      },
      { MODEL_MAX_GOLDEN_BYTES: '60000' },
    );
    expect(r.reason).to.match(/golden\.json is \d+ bytes; the limit is 60000 \(MODEL_MAX_GOLDEN_BYTES\)/);
  });

  for (const file of ['model.json', 'model.onnx', 'golden.json']) {
    it(`refuses a FIFO in place of ${file} at once, instead of waiting forever for a writer`, async () => {
      try {
        // Refused within a few polls (100 ms each), not after a wait for a writer.
        const r = await underTraffic((dir) => fifoInPlaceOf(join(dir, file)), {}, undefined, 5000);
        expect(r.reason).to.include(`${file}`).and.include('a FIFO (named pipe), not a regular file');
        expect(r.served).to.equal(OLDER);
        expect(r.failed, `${r.failed} of ${r.calls} calls failed`).to.equal(0);
      } finally {
        releaseFifo(join(root, 'conversion', BAD, file));
      }
    });
  }

  it('starts, serves and stops on SIGTERM (exit 0) with a FIFO as model.onnx of the newest version', async () => {
    // Before the guard the start-up scan never ended (the server never became
    // ready), and neither SIGTERM nor a second one ended the process: Node's
    // exit waits for the pool thread stuck in open().
    const staged = prepareBad((dir) => fifoInPlaceOf(join(dir, 'model.onnx')));
    renameSync(staged, join(root, 'conversion', BAD));
    const fifo = join(root, 'conversion', BAD, 'model.onnx');
    try {
      const server = await spawnServer(
        { MODEL_ROOT: root, DRAIN_MS: '0', SHUTDOWN_GRACE_MS: '2000' },
        30_000,
      );
      try {
        const failure = server.lines.find((l) => l.level === 'error' && l.version === BAD);
        expect(failure?.reason).to.match(
          /^model\.onnx cannot be read: a FIFO \(named pipe\), not a regular file$/,
        );
      } finally {
        expect(await server.stop(10_000), 'exit code after SIGTERM').to.equal(0);
      }
      expect(server.lines.map((l) => l.msg)).to.include('shutdown: complete');
    } finally {
      releaseFifo(fifo);
    }
  });

  it('checks a large golden.json on a worker thread: refuses a mismatch, and accepts a good one', async () => {
    // 20 copies of the cases, compact: about 320 KB, over the 256 KiB inline threshold.
    const grow = (dir: string, bump: boolean) => {
      const g = JSON.parse(readFileSync(join(dir, 'golden.json'), 'utf8')) as { cases: { score: number }[] };
      g.cases = Array.from({ length: 20 }, () => g.cases.map((c) => ({ ...c }))).flat();
      if (bump) (g.cases[3] as { score: number }).score += 0.01;
      writeFileSync(join(dir, 'golden.json'), JSON.stringify(g));
    };
    const bad = await underTraffic((dir) => grow(dir, true));
    expect(bad.reason).to.match(/golden vector mismatch: case \S+: score is/);
    await t?.stop();
    t = undefined;
    rmSync(join(root, 'conversion', BAD), { recursive: true });
    const staged = prepareBad((dir) => grow(dir, false));
    t = await startApp({ MODEL_ROOT: root, MODEL_POLL_MS: '100' });
    renameSync(staged, join(root, 'conversion', BAD));
    const app = t;
    await waitFor('the large-golden version to serve', async () => {
      const res = await predict(app.client, { instances: [{ ...SAMPLE_RECORD }] });
      return res.version === BAD;
    });
  });
});
