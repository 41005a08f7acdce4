import { Worker } from 'node:worker_threads';
import { expect } from 'chai';
import { parseVariant } from '../../scripts/bench/compare.js';
import { cpuTimesMs, threadCpuMs } from '../../scripts/lib/bench/process-stats.js';
import { UsageError } from '../../scripts/lib/cli.js';
import { runCli } from '../helpers/cli.js';
import { ROOT } from '../helpers/server.js';

describe('bench:compare', function () {
  this.timeout(120_000);

  it('reads a variant as a name and server variables, and refuses a malformed one in one sentence', () => {
    expect(parseVariant('warn:LOG_LEVEL=warn')).to.deep.equal({ name: 'warn', env: { LOG_LEVEL: 'warn' } });
    expect(parseVariant('b-2:MODEL_BATCHING=*=32/1ms,LOG_INPUTS=false')).to.deep.equal({
      name: 'b-2',
      env: { MODEL_BATCHING: '*=32/1ms', LOG_INPUTS: 'false' },
    });
    expect(() => parseVariant('LOG_LEVEL=warn')).to.throw(UsageError, /NAME:VAR=VALUE/);
    expect(() => parseVariant('x:log_level=warn')).to.throw(UsageError, /"log_level=warn" is not VAR=VALUE/);
  });

  it('splits a process’s CPU into its main thread and the others (exited threads included), adding up to its total', async () => {
    // Fixed amounts of work (70–250 ms of CPU each here, as V8 optimises them), not wall time, so load cannot shrink them.
    const work = 'let x = 0; for (let i = 0; i < 5e7; i++) x += Math.sqrt(i); if (x < 0) throw 0;';
    // A thread that does its work and exits: its CPU stays in the process's total.
    const worker = new Worker(work, { eval: true });
    await new Promise((resolve) => worker.once('exit', resolve));
    const before = threadCpuMs(process.pid);
    let x = 0;
    for (let i = 0; i < 5e7; i++) x += Math.sqrt(i);
    expect(x).to.be.greaterThan(0);
    const threads = threadCpuMs(process.pid);
    expect(threads && before && threads.main - before.main, 'main thread ms').to.be.at.least(20);
    expect(threads?.other, 'the exited worker counts').to.be.at.least(100);
    const total = cpuTimesMs(process.pid);
    if (!threads || !total) throw new Error('no /proc entry for this process');
    expect(threads.main).to.be.greaterThan(0);
    // Read one after the other, 10 ms ticks: equal within a few ticks.
    expect(Math.abs(threads.main + threads.other - total.self)).to.be.at.most(50);
    expect(threadCpuMs(2 ** 22 + 12_345)).to.equal(undefined);
  });

  it('runs this tree’s server beside HEAD’s build and a variant, reports all three with the ratio to the first, and removes the worktree', async () => {
    const run = await runCli(
      'npm',
      [
        'run',
        '--silent',
        'bench:compare',
        '--',
        '--base',
        'HEAD',
        '--variant',
        'no-inputs:LOG_INPUTS=false',
        '--rounds',
        '2',
        '--duration',
        '1s',
        '--warmup',
        '0s',
      ],
      { cwd: ROOT, name: 'bench:compare', timeoutMs: 110_000 },
    );
    expect(run.code, run.stderr).to.equal(0);
    expect(run.stderr).to.match(/building HEAD in /);
    expect(run.stderr).to.match(/round 2\/2/);
    const rows = run.stdout.split('\n').filter((l) => /^\| (this tree|HEAD|no-inputs) \|/.test(l));
    expect(rows, run.stdout).to.have.length(3);
    const list = await runCli('git', ['worktree', 'list'], { cwd: ROOT });
    expect(list.stdout, 'the worktree is gone').to.not.match(/bench-compare-/);
    const cells = (row: string) => row.split('|').map((c) => c.trim());
    const [first, , second] = rows.map(cells) as [string[], string[], string[]];
    expect(Number(first[2]), 'ok/s').to.be.greaterThan(0);
    expect(Number(first[3]), 'CPU µs per call').to.be.greaterThan(0);
    // The split, read from /proc per thread: the event loop and libuv's pool both worked.
    expect(Number(first[4]), 'main thread µs per call').to.be.greaterThan(0);
    expect(Number(first[5]), 'other threads µs per call').to.be.greaterThan(0);
    expect(Number(first[4])).to.be.lessThan(Number(first[3]));
    expect(first[6]).to.equal('1.000');
    // The ratio column is the second's CPU per call over the first's.
    expect(Number(second[6])).to.be.closeTo(Number(second[3]) / Number(first[3]), 0.002);
    expect(second[7]?.split(' / ')).to.have.length(2);
  });

  it('refuses a revision git does not know, in one sentence, exit 2', async () => {
    const run = await runCli(
      'npm',
      ['run', '--silent', 'bench:compare', '--', '--base', 'no-such-revision-x'],
      {
        cwd: ROOT,
        name: 'bench:compare',
      },
    );
    expect(run.code).to.equal(2);
    expect(run.stderr).to.match(/--base no-such-revision-x is not a commit git knows here\./);
  });
});
