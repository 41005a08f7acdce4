import { expect } from 'chai';
import { withExtraStableEndpoints } from '../../scripts/lib/bench/envoy.js';
import { ENVOY_VARIANTS } from '../../scripts/lib/bench/envoy-tuning.js';
import { modelInferArray, predictArray, USERS } from '../../scripts/lib/bench/measure.js';
import { parseBenchArgs } from '../../scripts/lib/bench/options.js';
import { readServerScrape } from '../../scripts/lib/bench/scrape.js';
import { measurementTable, sideBySideTable } from '../../scripts/lib/bench/tables.js';
import { interleaved, type PhaseContext, type Target } from '../../scripts/lib/bench/targets.js';
import {
  combineRounds,
  cpuPerCall,
  DEFAULT_TARGETS,
  type Measurement,
  ratios,
  roundRatios,
  rssGrowth,
  type SideBySide,
  verdicts,
} from '../../scripts/lib/bench/verdicts.js';
import { UsageError } from '../../scripts/lib/cli.js';
import { bootstrap, LOCAL_BOOTSTRAP } from '../../scripts/lib/envoy/config.js';
import { SEED_RECORD } from '../../scripts/lib/load/payload.js';
import { parseSoakArgs, soakVerdicts } from '../../scripts/load/soak.js';
import { USER_ID_HEADER } from '../../server/headers.js';

/** A made-up measurement: the figures below are inputs, not timings of anything. */
function m(over: Partial<Measurement> = {}): Measurement {
  return {
    target: 't',
    tool: 'ghz',
    mode: 'max',
    concurrency: 50,
    durationMs: 10_000,
    elapsedMs: 10_000,
    count: 10_000,
    okCount: 10_000,
    errorCount: 0,
    okRps: 1000,
    p50Ms: 1,
    p90Ms: 2,
    p99Ms: 3,
    maxMs: 9,
    errors: [],
    load1: [1, 2],
    ...over,
  };
}

const rate = (over: Partial<Measurement> = {}) => m({ mode: 'rate', requestedRps: 500, okRps: 500, ...over });

/** CPU ms over a 10,000-call run: 1,500 ms is 150 µs per call. */
function runs(
  o: {
    direct?: number;
    floor?: number;
    flask?: number;
    envoy?: number;
    high?: Partial<Measurement>;
    serverCpuMs?: number;
    envoyCpuMs?: Record<string, number>;
  } = {},
): SideBySide {
  return {
    direct: {
      max: m({ okRps: o.direct ?? 9000, cpuMs: { server: o.serverCpuMs ?? 1800, 'load generator': 2000 } }),
      rate: rate({ p50Ms: 0.8, p99Ms: 2 }),
    },
    envoy: {
      max: m({
        okRps: o.envoy ?? 7500,
        cpuMs: o.envoyCpuMs ?? { Envoy: 1000, 'stable server': 1500, 'canary server': 300 },
      }),
      rate: rate({ p50Ms: 1.3, p99Ms: 3.5 }),
      high: m({ mode: 'rate', requestedRps: 5000, okRps: 4990, p99Ms: 8, count: 50_000, ...o.high }),
    },
    flask: { max: m({ okRps: o.flask ?? 700, tool: 'hey' }), rate: rate({ p50Ms: 50, p99Ms: 110 }) },
    floor: {
      max: m({ okRps: o.floor ?? 10_000, cpuMs: { 'floor server': 1500 } }),
      rate: rate({ p50Ms: 0.5, p99Ms: 1.5 }),
    },
  };
}

describe('bench: ratios and verdicts', () => {
  it('computes ours/Flask, ours/floor and Envoy’s added latency at the fixed rate', () => {
    const r = ratios(runs());
    expect(r.oursOverFlask).to.be.closeTo(9000 / 700, 1e-12);
    expect(r.oursOverFloor).to.be.closeTo(0.9, 1e-12);
    expect(r.envoyAddedP99Ms).to.be.closeTo(1.5, 1e-12);
    expect(r.envoyAddedP50Ms).to.be.closeTo(0.5, 1e-12);
  });

  it('meets every target when the figures do', () => {
    const vs = verdicts(runs({ flask: 800 }));
    expect(vs.map((v) => v.status)).to.deep.equal(['met', 'met', 'met', 'met', 'met', 'met']);
    expect(vs[0]?.detail).to.equal('9,000/s vs floor 10,000/s = 0.90×');
    expect(vs[3]?.detail).to.equal('server 180 µs vs floor 150 µs per call = 1.20×');
    expect(vs[4]?.detail).to.equal('Envoy + stable + canary 280 µs vs floor 150 µs per call = 1.87×');
    expect(vs[5]?.detail).to.equal('7,500/s vs direct 9,000/s = 0.83×');
  });

  it('names each miss and by how much', () => {
    const vs = verdicts(
      runs({
        direct: 6000,
        flask: 700,
        envoy: 4000,
        high: { okRps: 3000, p99Ms: 40, errorCount: 2 },
        serverCpuMs: 2900,
        envoyCpuMs: { Envoy: 1700, 'stable server': 3200, 'canary server': 400 },
      }),
    );
    expect(vs.map((v) => v.status)).to.deep.equal([
      'missed',
      'missed',
      'missed',
      'missed',
      'missed',
      'missed',
    ]);
    expect(vs[0]?.detail).to.equal('6,000/s vs floor 10,000/s = 0.60× (short by 2,500/s)');
    expect(vs[1]?.detail).to.equal('6,000/s vs Flask 700/s = 8.6×; p99 at 500/s 2.00 ms vs Flask 110.00 ms');
    expect(vs[2]?.detail).to.equal(
      'achieved 3,000/s, p99 40.00 ms, 2 errors of 50000 (missed: p99, errors, rate below 95% of 5,000/s)',
    );
    expect(vs[3]?.detail).to.equal('server 290 µs vs floor 150 µs per call = 1.93×');
    expect(vs[4]?.detail).to.equal('Envoy + stable + canary 530 µs vs floor 150 µs per call = 3.53×');
    expect(vs[5]?.detail).to.equal('4,000/s vs direct 6,000/s = 0.67×');
  });

  it('judges the CPU targets at their bounds: equal to the factor is met, above it missed', () => {
    expect(verdicts(runs({ serverCpuMs: 1875 }))[3]?.status).to.equal('met');
    expect(verdicts(runs({ serverCpuMs: 1876 }))[3]?.status).to.equal('missed');
    const at2 = { Envoy: 1000, 'stable server': 1700, 'canary server': 300 };
    expect(verdicts(runs({ envoyCpuMs: at2 }))[4]?.status).to.equal('met');
    expect(verdicts(runs({ envoyCpuMs: { ...at2, Envoy: 1001 } }))[4]?.status).to.equal('missed');
  });

  it('says "not measured" for a CPU target when a process was not watched', () => {
    const vs = verdicts(runs({ envoyCpuMs: { Envoy: 1000, 'stable server': 1500 } }));
    expect(vs[4]?.status).to.equal('not measured');
    expect(vs[3]?.status).to.equal('met');
  });

  it('judges the Envoy rate once more on the leaner generator’s run when there is one', () => {
    const s = runs();
    const lean = m({ tool: 'h2load', mode: 'rate', requestedRps: 5000, okRps: 4999, p99Ms: 12 });
    const vs = verdicts({ ...s, envoy: { ...s.envoy, highLean: lean } });
    expect(vs.map((v) => v.target)).to.include(
      'through Envoy at 5,000/s: p99 ≤ 10 ms, zero errors, load generator h2load',
    );
    const leanVerdict = vs.find((v) => v.target.endsWith('h2load'));
    expect(leanVerdict?.status).to.equal('missed');
    expect(leanVerdict?.detail).to.include('(missed: p99)');
  });

  it('misses "10× Flask" when our p99 is not lower, even at a high ratio', () => {
    const s = runs({ flask: 100 });
    const withSlowP99: SideBySide = { ...s, direct: { ...s.direct, rate: rate({ p99Ms: 200 }) } };
    expect(verdicts(withSlowP99)[1]?.status).to.equal('missed');
  });

  it('says "not measured" for a target whose run is missing, instead of passing it', () => {
    const vs = verdicts({ direct: runs().direct });
    expect(vs.map((v) => v.status)).to.deep.equal([
      'not measured',
      'not measured',
      'not measured',
      'not measured',
      'not measured',
      'not measured',
    ]);
  });

  it('judges the Envoy rate given in the targets', () => {
    const vs = verdicts(runs({ high: { requestedRps: 2000, okRps: 1990 } }), {
      ...DEFAULT_TARGETS,
      envoyRps: 2000,
    });
    expect(vs[2]?.target).to.equal('through Envoy at 2,000/s: p99 ≤ 10 ms, zero errors, load generator ghz');
    expect(vs[2]?.status).to.equal('met');
  });
});

describe('bench: interleaved rounds and CPU per call', () => {
  it('adds counts and CPU, rates over the summed time, medians of percentiles, max of max', () => {
    const c = combineRounds([
      m({ okCount: 1000, count: 1000, elapsedMs: 1000, okRps: 1000, p99Ms: 5, maxMs: 7, cpuMs: { s: 100 } }),
      m({
        okCount: 3000,
        count: 3001,
        errorCount: 1,
        elapsedMs: 1000,
        okRps: 3000,
        p99Ms: 1,
        maxMs: 20,
        cpuMs: { s: 300 },
        errors: ['UNAVAILABLE ×1'],
      }),
      m({
        okCount: 2000,
        count: 2000,
        elapsedMs: 2000,
        okRps: 1000,
        p99Ms: 3,
        maxMs: 8,
        cpuMs: { s: 200, g: 50 },
        load1: [3, 4],
      }),
    ]);
    expect(c.okCount).to.equal(6000);
    expect(c.count).to.equal(6001);
    expect(c.errorCount).to.equal(1);
    expect(c.okRps).to.equal(1500);
    expect(c.p99Ms).to.equal(3);
    expect(c.maxMs).to.equal(20);
    expect(c.cpuMs).to.deep.equal({ s: 600, g: 50 });
    expect(c.rounds).to.deep.equal([1000, 3000, 1000]);
    expect(c.roundCpu).to.deep.equal([
      { okCount: 1000, cpuMs: { s: 100 } },
      { okCount: 3000, cpuMs: { s: 300 } },
      { okCount: 2000, cpuMs: { s: 200, g: 50 } },
    ]);
    expect(c.load1).to.deep.equal([1, 4]);
    expect(c.errors).to.deep.equal(['UNAVAILABLE ×1']);
  });

  it('runs every target once a round, each round starting one target later, and combines the rounds', async () => {
    const ran: string[] = [];
    const target = (name: string): Target => ({
      name,
      watch: [],
      run: async (load) => {
        ran.push(`${name}@${load.durationMs}`);
        return m({ target: name, okCount: 100, okRps: 100, elapsedMs: 1000, cpuMs: { s: 10 } });
      },
    });
    const ctx: PhaseContext = {
      opts: { rounds: 3, durationMs: 3000, warmupMs: 0, concurrency: 5 },
      workDir: '/nonexistent',
      progress: () => undefined,
      signal: new AbortController().signal,
    };
    const res = await interleaved(ctx, ['a', 'b', 'c', 'd'].map(target));
    expect(ran).to.deep.equal(
      ['a', 'b', 'c', 'd', 'b', 'c', 'd', 'a', 'c', 'd', 'a', 'b'].map((n) => `${n}@1000`),
    );
    expect(res.get('b')?.okCount).to.equal(300);
    expect(res.get('b')?.roundCpu).to.have.length(3);
  });

  it('gives the CPU ratio to the floor round by round, and shows its range in the verdict', () => {
    const round = (okCount: number, cpuMs: Record<string, number>) => m({ okCount, cpuMs });
    // Round 1: 150 vs 100 µs; round 2: 160 vs 80 µs.
    const direct = combineRounds([round(1000, { server: 150 }), round(2000, { server: 320 })]);
    const floor = combineRounds([round(1000, { 'floor server': 100 }), round(1000, { 'floor server': 80 })]);
    expect(roundRatios(direct, ['server'], floor)).to.deep.equal([1.5, 2]);
    const side = runs();
    const vs = verdicts({
      ...side,
      direct: { ...side.direct, max: direct },
      floor: { ...side.floor, max: floor },
    });
    // Over both rounds: 470 ms / 3,000 calls against 180 ms / 2,000.
    expect(vs[3]?.detail).to.equal('server 157 µs vs floor 90 µs per call = 1.74× (rounds 1.50–2.00×)');
    // Not the same rounds, or a single one: no per-round figures, rather than pairs that never ran
    // together or a range of one.
    expect(roundRatios(direct, ['server'], combineRounds([round(1000, { 'floor server': 100 })]))).to.equal(
      undefined,
    );
    const one = (cpu: Record<string, number>) => combineRounds([round(1000, cpu)]);
    expect(roundRatios(one({ server: 150 }), ['server'], one({ 'floor server': 100 }))).to.equal(undefined);
    expect(roundRatios(direct, ['Envoy'], floor)).to.equal(undefined);
  });

  it('gives CPU µs per successful call and the share of the cores', () => {
    const rows = cpuPerCall(
      m({ okCount: 10_000, elapsedMs: 10_000, cpuMs: { server: 2000, 'load generator': 5000 } }),
      2,
    );
    expect(rows).to.deep.equal([
      { process: 'server', usPerCall: 200, coreShare: 0.1 },
      { process: 'load generator', usPerCall: 500, coreShare: 0.25 },
    ]);
    expect(cpuPerCall(m({ okCount: 0, cpuMs: { s: 1 } }), 2)).to.deep.equal([]);
  });
});

describe('bench: tables', () => {
  it('renders one side-by-side row per target, with n/a for what is missing', () => {
    const s = runs();
    const table = sideBySideTable([
      { name: 'direct', generator: 'ghz', ...s.direct },
      { name: 'flask', generator: 'hey' },
    ]);
    const lines = table.split('\n');
    expect(lines[0]).to.match(
      /^\| target \| load generator \| max throughput, ok\/s \(c=50\) \| p50 ms @500\/s \| p99 ms @500\/s/,
    );
    expect(lines[2]).to.equal('| direct | ghz | 9,000 | 0.80 | 2.00 | 500 | 0; 0 | 1.00→2.00; 1.00→2.00 |');
    expect(lines[3]).to.equal('| flask | hey | n/a | n/a | n/a | n/a | n/a; n/a | n/a; n/a |');
  });

  it('lists errors in a measurement table', () => {
    const t = measurementTable([{ name: 'x', m: m({ errorCount: 3, errors: ['UNAVAILABLE ×3'] }) }]);
    expect(t.split('\n')[2]).to.equal(
      '| x | closed loop c=50 | 1,000 | 1.00 | 2.00 | 3.00 | 9.00 | 3 (UNAVAILABLE ×3) | 1.00→2.00 |',
    );
  });
});

describe('bench: RSS growth and soak verdicts', () => {
  const MiB = 2 ** 20;
  const series = (values: number[], stepMs = 5000) =>
    values.map((v, i) => ({ atMs: i * stepMs, rss: v * MiB }));

  it('ignores warm-up and compares the medians of the first and last thirds after it', () => {
    // Warm-up samples at 0 and 5 s (50, 80 MiB) are not judged; a collection drops 120 → 96.
    const g = rssGrowth(series([50, 80, 100, 104, 98, 120, 96, 101, 108, 105, 103]), 10_000);
    expect(g?.samples).to.equal(9);
    expect(g?.baseline).to.equal(100 * MiB);
    expect(g?.last).to.equal(105 * MiB);
    expect(g?.growth).to.be.closeTo(0.05, 1e-12);
    expect(g?.peak).to.equal(120 * MiB);
    expect(g?.peakGrowth).to.be.closeTo(0.2, 1e-12);
  });

  it('has nothing to judge when no sample is past warm-up', () => {
    expect(rssGrowth(series([100, 101]), 60_000)).to.equal(undefined);
  });

  it('passes flat memory and zero failures; names each miss', () => {
    const flat = rssGrowth(series([100, 100, 101, 100, 101, 100]), 0);
    const leaking = rssGrowth(series([100, 105, 110, 115, 120, 125]), 0);
    const ok = soakVerdicts(
      [{ name: 'stable server', g: flat }],
      { count: 100, errorCount: 0, errors: [] },
      0.1,
    );
    expect(ok.map((v) => [v.name, v.ok])).to.deep.equal([
      ['stable server RSS', true],
      ['failed requests', true],
    ]);
    const bad = soakVerdicts(
      [
        { name: 'stable server', g: leaking },
        { name: 'Envoy', g: undefined },
      ],
      { count: 100, errorCount: 2, errors: ['UNAVAILABLE ×2'] },
      0.1,
    );
    expect(bad.map((v) => [v.name, v.ok])).to.deep.equal([
      ['stable server RSS', false],
      ['Envoy RSS', false],
      ['failed requests', false],
    ]);
    expect(bad[2]?.detail).to.equal('2 of 100 (UNAVAILABLE ×2); limit 0');
    expect(soakVerdicts([], { count: 0, errorCount: 0, errors: [] }, 0.1)[0]?.ok).to.equal(false);
  });
});

describe('bench: options', () => {
  it('defaults to the side-by-side section with issue 4’s loads', () => {
    const o = parseBenchArgs([], '/w');
    expect([...o.sections]).to.deep.equal(['side']);
    expect(o).to.deep.include({
      durationMs: 12_000,
      rounds: 3,
      warmupMs: 2000,
      concurrency: 50,
      rate: 500,
      envoyRate: 5000,
      familiesRate: 1000,
      batching: 'conversion=32/1ms',
      reportsDir: '/w/reports',
      strict: false,
    });
  });

  it('adds sections with --extras, --families and --all, or picks them with --only', () => {
    expect([...parseBenchArgs(['--extras']).sections]).to.deep.equal([
      'side',
      'logging',
      'batching',
      'scaling',
    ]);
    expect([...parseBenchArgs(['--families']).sections]).to.deep.equal(['side', 'families']);
    expect([...parseBenchArgs(['--envoy']).sections]).to.deep.equal(['side', 'envoy']);
    expect(parseBenchArgs(['--all']).sections.size).to.equal(6);
    expect([...parseBenchArgs(['--only', 'families,logging']).sections]).to.deep.equal([
      'families',
      'logging',
    ]);
  });

  it('rejects bad options with a sentence naming them', () => {
    expect(() => parseBenchArgs(['--only', 'side,nope'])).to.throw(UsageError, /--only/);
    expect(() => parseBenchArgs(['--only', 'side', '--all'])).to.throw(UsageError, /cannot be combined/);
    expect(() => parseBenchArgs(['--duration', 'ten'])).to.throw(UsageError, /--duration/);
    expect(() => parseBenchArgs(['--concurrency', '0'])).to.throw(UsageError, /--concurrency/);
    expect(() => parseBenchArgs(['--batching', 'conversion=32'])).to.throw(UsageError, /--batching/);
    expect(() => parseBenchArgs(['--bogus'])).to.throw(UsageError);
  });

  it('parses soak options, with 2 minutes at 50% by default', () => {
    const o = parseSoakArgs([], '/w');
    expect(o).to.deep.include({
      durationMs: 120_000,
      share: 0.5,
      maxQps: undefined,
      warmupMs: 30_000,
      maxGrowth: 0.1,
    });
    expect(parseSoakArgs(['--max-qps', '3000', '--duration', '30s', '--warmup', '5s'])).to.deep.include({
      maxQps: 3000,
      durationMs: 30_000,
      warmupMs: 5000,
    });
    expect(() => parseSoakArgs(['--warmup', '3m'])).to.throw(UsageError, /--warmup must be shorter/);
    expect(() => parseSoakArgs(['--share', '2'])).to.throw(UsageError, /--share/);
  });
});

describe('bench: requests, Envoy endpoints, scrapes', () => {
  it('sends the seed record with USERS distinct users, the header matching the body', () => {
    const { data, metadata } = predictArray('conversion', 3);
    const requests = JSON.parse(data) as {
      model: string;
      version: string;
      instances: Record<string, unknown>[];
    }[];
    expect(requests.map((r) => r.instances[0]?.userId)).to.deep.equal([102079311, 102079312, 102079313]);
    expect(requests[2]).to.deep.equal({
      model: 'conversion',
      version: '',
      instances: [{ ...SEED_RECORD, userId: 102079313 }],
    });
    expect(metadata).to.deep.equal({ [USER_ID_HEADER]: '{{add 102079311 (mod .RequestNumber 3)}}' });
    expect(JSON.parse(predictArray('m').data)).to.have.length(USERS);
  });

  it('sends the same requests as ModelInfer for the protocol row: one typed input per field', () => {
    const { data, metadata } = modelInferArray('conversion', 'typed', 3);
    const requests = JSON.parse(data) as {
      model_name: string;
      model_version: string;
      inputs: { name: string; datatype: string; shape: number[]; contents: Record<string, unknown[]> }[];
    }[];
    expect(requests).to.have.length(3);
    const [r] = requests.slice(2);
    expect(r?.model_name).to.equal('conversion');
    expect(r?.inputs.map((i) => i.name)).to.deep.equal(Object.keys(SEED_RECORD));
    expect(r?.inputs.find((i) => i.name === 'userId')).to.deep.equal({
      name: 'userId',
      datatype: 'INT64',
      shape: [1],
      contents: { int64_contents: [102079313] },
    });
    const birthday = r?.inputs.find((i) => i.name === 'birthday');
    expect(birthday?.datatype).to.equal('BYTES');
    expect(Buffer.from(String(birthday?.contents.bytes_contents?.[0]), 'base64').toString()).to.equal(
      SEED_RECORD.birthday,
    );
    expect(metadata).to.deep.equal(predictArray('conversion', 3).metadata);

    // Raw, as tritonclient sends: the same inputs without contents, one little-endian buffer each.
    const raw = JSON.parse(modelInferArray('conversion', 'raw', 3).data) as {
      inputs: { name: string; datatype: string; contents?: unknown }[];
      raw_input_contents: string[];
    }[];
    const last = raw[2];
    expect(last?.inputs.map((i) => [i.name, i.datatype])).to.deep.equal(
      r?.inputs.map((i) => [i.name, i.datatype]),
    );
    expect(last?.inputs.every((i) => i.contents === undefined)).to.equal(true);
    const bytes = (name: string) =>
      Buffer.from(last?.raw_input_contents[last.inputs.findIndex((i) => i.name === name)] ?? '', 'base64');
    expect(bytes('userId').readBigInt64LE(0)).to.equal(102079313n);
    expect(bytes('birthday').readUInt32LE(0)).to.equal(SEED_RECORD.birthday?.toString().length);
    expect(bytes('birthday').subarray(4).toString()).to.equal(SEED_RECORD.birthday);
  });

  it('adds stable endpoints to a rendered bootstrap, copying the arm metadata, and leaves the input alone', () => {
    const rendered = bootstrap(LOCAL_BOOTSTRAP);
    const before = JSON.stringify(rendered);
    const out = withExtraStableEndpoints(rendered, [{ host: '127.0.0.1', port: 50061 }]);
    expect(JSON.stringify(rendered)).to.equal(before);
    const clusters = out.static_resources.clusters as {
      name: string;
      load_assignment?: { endpoints: { lb_endpoints: { endpoint: unknown; metadata: unknown }[] }[] };
    }[];
    const stable =
      clusters.find((c) => c.name === 'stable')?.load_assignment?.endpoints[0]?.lb_endpoints ?? [];
    expect(stable.map((e) => e.endpoint)).to.deep.equal([
      { address: { socket_address: { address: '127.0.0.1', port_value: 50051 } } },
      { address: { socket_address: { address: '127.0.0.1', port_value: 50061 } } },
    ]);
    expect(stable[1]?.metadata).to.deep.equal({ filter_metadata: { ab: { arm: 'stable' } } });
    const canary =
      clusters.find((c) => c.name === 'canary')?.load_assignment?.endpoints[0]?.lb_endpoints ?? [];
    expect(canary).to.have.length(1);
    expect(withExtraStableEndpoints(rendered, [])).to.equal(rendered);
  });

  it('reads RSS, loaded versions and rows per ONNX Runtime run from /metrics text', () => {
    const text = [
      // Shaped like prom-client 15's output (TYPE lines, histogram buckets).
      '# HELP process_resident_memory_bytes Resident memory size in bytes.',
      '# TYPE process_resident_memory_bytes gauge',
      'process_resident_memory_bytes 171442176',
      '# TYPE inference_model_version_info gauge',
      'inference_model_version_info{model="conversion",version="20261124T041754Z",state="serving"} 1',
      'inference_model_version_info{model="conversion",version="20261124T041750Z",state="loaded"} 1',
      'inference_model_version_info{model="conversion",version="20261124T041000Z",state="loaded"} 0',
      '# HELP inference_batch_instances Rows per ONNX Runtime run (after any dynamic batching).',
      '# TYPE inference_batch_instances histogram',
      'inference_batch_instances_bucket{le="1",model="conversion"} 80',
      'inference_batch_instances_bucket{le="32",model="conversion"} 100',
      'inference_batch_instances_bucket{le="+Inf",model="conversion"} 100',
      'inference_batch_instances_sum{model="conversion"} 300',
      'inference_batch_instances_count{model="conversion"} 100',
      'inference_batch_instances_bucket{le="1",model="other"} 10',
      'inference_batch_instances_bucket{le="32",model="other"} 20',
      'inference_batch_instances_bucket{le="+Inf",model="other"} 20',
      'inference_batch_instances_sum{model="other"} 100',
      'inference_batch_instances_count{model="other"} 20',
    ].join('\n');
    expect(readServerScrape(text)).to.deep.equal({
      rssBytes: 171442176,
      versions: ['conversion@20261124T041750Z (loaded)', 'conversion@20261124T041754Z (serving)'],
      meanBatchRows: 400 / 120,
      runs: 120,
    });
    expect(readServerScrape('').meanBatchRows).to.equal(undefined);
  });
});

describe('bench: Envoy settings variants', () => {
  const rendered = () =>
    JSON.parse(JSON.stringify(bootstrap({ ...LOCAL_BOOTSTRAP, inlineRoutes: { stable: 90, canary: 10 } })));
  const variant = (name: string) => {
    const v = ENVOY_VARIANTS.find((x) => x.name === name);
    if (!v) throw new Error(`no variant ${name}`);
    return v;
  };
  /** The paths (dot-joined keys) where two JSON values differ. */
  function diffPaths(a: unknown, b: unknown, at = ''): string[] {
    if (JSON.stringify(a) === JSON.stringify(b)) return [];
    if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return [at];
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    return [...keys].flatMap((k) =>
      diffPaths((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], at ? `${at}.${k}` : k),
    );
  }
  const changed = (name: string) => {
    const tune = variant(name).tune;
    return tune ? diffPaths(rendered(), tune(rendered())) : [];
  };

  it('starts from the shipped bootstrap, unchanged', () => {
    expect(variant('as shipped').tune).to.equal(undefined);
    expect(variant('as shipped').concurrency).to.equal(undefined);
  });

  it('changes exactly one setting in each variant', () => {
    expect(changed('no access log')).to.deep.equal([
      'static_resources.listeners.0.filter_chains.0.filters.0.typed_config.access_log.0',
    ]);
    const hcm = 'static_resources.listeners.0.filter_chains.0.filters.0.typed_config';
    expect(changed('no grpc_stats').every((p) => p.startsWith(`${hcm}.http_filters.`))).to.equal(true);
    const tuned = variant('no grpc_stats').tune?.(rendered()) as ReturnType<typeof rendered>;
    const filters = tuned.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters;
    expect(filters.map((f: { name: string }) => f.name)).to.deep.equal(['envoy.filters.http.router']);
    expect(changed('grpc_stats without upstream latency')).to.deep.equal([
      `${hcm}.http_filters.0.typed_config.enable_upstream_stats`,
    ]);
    expect(changed('health checks every 5 s')).to.deep.equal([
      'static_resources.clusters.0.health_checks.0.interval',
      'static_resources.clusters.0.health_checks.0.no_traffic_interval',
      'static_resources.clusters.1.health_checks.0.interval',
      'static_resources.clusters.1.health_checks.0.no_traffic_interval',
    ]);
    expect(changed('2 workers')).to.deep.equal([]);
    expect(variant('2 workers').concurrency).to.equal(2);
  });
});
