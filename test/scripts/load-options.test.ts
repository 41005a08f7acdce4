import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { parseDuration } from '../../scripts/lib/args.js';
import { UsageError } from '../../scripts/lib/cli.js';
import { parseGhzReport } from '../../scripts/lib/load/ghz-report.js';
import { abSplit, predictCalls, type Snapshot, snapshot } from '../../scripts/lib/load/metrics.js';
import { isLoopback, parseLoadtestArgs, resolveTarget } from '../../scripts/lib/load/options.js';
import {
  expectedCall,
  mixedRecords,
  type PayloadRecord,
  predictTemplate,
  recordsFromFile,
  SEED_RECORD,
} from '../../scripts/lib/load/payload.js';
import { formatSummary, type LoadtestResult, perSecond, renderHtml } from '../../scripts/lib/load/report.js';
import { checkSlo, DEFAULT_SLO } from '../../scripts/lib/load/slo.js';
import { summarize } from '../../scripts/lib/load/summary.js';
import { parseSamples } from '../../scripts/lib/prometheus.js';
import { versionStamp as timestamp, versionsIn } from '../../scripts/lib/versions.js';
import { REQUEST_ID_HEADER, USER_ID_HEADER } from '../../server/headers.js';
import { FIXTURES, DEMO_MODELS as MODELS } from '../helpers/server.js';

describe('loadtest options', () => {
  const parse = (...argv: string[]) => parseLoadtestArgs(argv, '/proj');
  const usage = (...argv: string[]) => expect(() => parse(...argv)).to.throw(UsageError);

  it('defaults to Envoy at 500/s for 30 s, plaintext, the seed SLOs, reports/ in the project', () => {
    const o = parse();
    expect(o.protocol).to.equal('predict');
    expect(o.target).to.equal('envoy');
    expect(o.host).to.equal('127.0.0.1:8080');
    expect(o.metrics).to.deep.equal(['127.0.0.1:9464', '127.0.0.1:9465']);
    expect(o.mode).to.deep.equal({ kind: 'rate', rps: 500, workers: 50 });
    expect(o.durationMs).to.equal(30_000);
    expect(o.insecure).to.equal(true);
    expect(o.model).to.equal('conversion');
    expect(o.modelVersion).to.equal('');
    expect(o.payload).to.deep.equal({ kind: 'mixed' });
    expect(o.slo).to.deep.equal({ p99Ms: 100, maxErrorRate: 0 });
    expect(o.reportsDir).to.equal('/proj/reports');
    expect(Object.isFrozen(o) && Object.isFrozen(o.mode)).to.equal(true);
  });

  it('drives the Open Inference Protocol with --protocol oip, and refuses any other protocol', () => {
    expect(parse('--protocol', 'oip').protocol).to.equal('oip');
    usage('--protocol', 'kserve');
  });

  it('resolves named targets and HOST:PORT, with their metrics endpoints', () => {
    expect(resolveTarget('stable')).to.deep.include({ host: '127.0.0.1:50051', slug: 'stable' });
    expect(resolveTarget('canary').metrics).to.deep.equal(['127.0.0.1:9465']);
    expect(resolveTarget('127.0.0.1:50061')).to.deep.equal({
      host: '127.0.0.1:50061',
      slug: '127.0.0.1-50061',
      metrics: [],
    });
    expect(resolveTarget('[::1]:8080').slug).to.equal('___1_-8080');
    expect(parse('--target', 'stable', '--metrics', 'none').metrics).to.deep.equal([]);
    expect(parse('--target', 'localhost:1', '--metrics', '127.0.0.1:9,http://h:1/m').metrics).to.deep.equal([
      '127.0.0.1:9',
      'http://h:1/m',
    ]);
  });

  it('reads --rps as a fixed rate and --concurrency alone as a closed loop', () => {
    expect(parse('--rps', '50').mode).to.deep.equal({ kind: 'rate', rps: 50, workers: 50 });
    expect(parse('--concurrency', '8').mode).to.deep.equal({ kind: 'closed', concurrency: 8 });
    expect(parse('--rps', '50', '--concurrency', '8').mode).to.deep.equal({
      kind: 'rate',
      rps: 50,
      workers: 8,
    });
  });

  it('uses plaintext on loopback and TLS elsewhere unless --insecure', () => {
    expect(isLoopback('127.0.0.1') && isLoopback('localhost') && isLoopback('[::1]')).to.equal(true);
    expect(isLoopback('10.0.0.1')).to.equal(false);
    expect(parse('--target', 'grpc.example.com:443').insecure).to.equal(false);
    expect(parse('--target', 'grpc.example.com:443', '--insecure').insecure).to.equal(true);
    const tls = parse('--target', '127.0.0.1:8443', '--cacert', 'ca.pem');
    expect([tls.insecure, tls.cacert]).to.deep.equal([false, '/proj/ca.pem']);
    usage('--insecure', '--cacert', 'ca.pem');
  });

  it('parses durations with units', () => {
    expect(parseDuration('500ms', 'd')).to.equal(500);
    expect(parseDuration('1.5s', 'd')).to.equal(1500);
    expect(parseDuration('2m', 'd')).to.equal(120_000);
    expect(() => parseDuration('10', '--duration')).to.throw(UsageError, /--duration/);
  });

  it('takes the payload, SLOs, model version and reports dir', () => {
    const o = parse(
      '--payload',
      'records.json',
      '--slo-p99-ms',
      '10',
      '--slo-max-error-rate',
      '0.01',
      '--slo-min-rps',
      '400',
      '--model-version',
      '20261124T041754Z',
      '--reports',
      '/tmp/r',
    );
    expect(o.payload).to.deep.equal({ kind: 'file', path: '/proj/records.json' });
    expect(o.slo).to.deep.equal({ p99Ms: 10, maxErrorRate: 0.01, minRps: 400 });
    expect(o.modelVersion).to.equal('20261124T041754Z');
    expect(o.reportsDir).to.equal('/tmp/r');
    expect(parse('--payload', 'seed').payload).to.deep.equal({ kind: 'seed' });
  });

  it('rejects bad values with one sentence naming the option', () => {
    const cases: [string[], RegExp][] = [
      [['--target', 'prod'], /--target must be envoy, stable, canary or HOST:PORT/],
      [['--target', '127.0.0.1:0'], /--target/],
      [['--target', '127.0.0.1:70000'], /--target/],
      [['--rps', '0'], /--rps must be an integer from 1 to 100000/],
      [['--rps', '1.5'], /--rps/],
      [['--concurrency', 'many'], /--concurrency/],
      [['--duration', '2h'], /--duration must be from 100ms to 1h/],
      [['--duration', '50ms'], /--duration/],
      [['--timeout', 'soon'], /--timeout/],
      [['--model', 'a b'], /--model must be a model name/],
      [['--model-version', 'latest'], /--model-version/],
      [['--slo-p99-ms', '0'], /--slo-p99-ms must be a number greater than 0/],
      [['--slo-max-error-rate', '2'], /--slo-max-error-rate must be a number from 0 to 1/],
      [['--metrics', 'nowhere'], /--metrics/],
      [['--connections', '0'], /--connections/],
      [['--bogus'], /bogus/],
      [['stray'], /stray/],
    ];
    for (const [argv, msg] of cases) expect(() => parse(...argv), argv.join(' ')).to.throw(UsageError, msg);
  });
});

/**
 * Expands the small subset of Go text/template that `predictTemplate` emits
 * (variables, `add`, `mod`, `if/else if eq`), for call n. ghz's real expansion
 * is checked end to end by the integration test; this pins the template's
 * intent.
 */
function expand(template: string, n: number): string {
  const vars = new Map<string, number>();
  const evalExpr = (e: string): number => {
    const add = /^add (\d+) \.RequestNumber$/.exec(e);
    if (add) return Number(add[1]) + n;
    const mod = /^mod \.RequestNumber (\d+)$/.exec(e);
    if (mod) return n % Number(mod[1]);
    if (e === '.RequestNumber') return n;
    const v = vars.get(e);
    if (v === undefined) throw new Error(`unsupported template expression ${e}`);
    return v;
  };
  let out = '';
  // Stack of "is this branch emitting" / "has a branch been taken".
  const stack: { on: boolean; taken: boolean }[] = [];
  const emitting = () => stack.every((f) => f.on);
  for (const part of template.split(/(\{\{.*?\}\})/)) {
    const action = /^\{\{(.*)\}\}$/.exec(part)?.[1];
    if (action === undefined) {
      if (emitting()) out += part;
      continue;
    }
    const assign = /^(\$\w+) := (.*)$/.exec(action);
    const cond = /^(?:if|else if) eq (\$\w+) (\d+)$/.exec(action);
    if (assign) vars.set(assign[1] as string, evalExpr(assign[2] as string));
    else if (action.startsWith('if ') && cond) {
      const hit = evalExpr(cond[1] as string) === Number(cond[2]);
      stack.push({ on: hit, taken: hit });
    } else if (action.startsWith('else if ') && cond) {
      const top = stack.at(-1) as { on: boolean; taken: boolean };
      const hit = !top.taken && evalExpr(cond[1] as string) === Number(cond[2]);
      top.on = hit;
      top.taken ||= hit;
    } else if (action === 'end') stack.pop();
    else if (emitting()) out += String(evalExpr(action));
  }
  return out;
}

describe('loadtest request templates', () => {
  const opts = { model: 'conversion', version: '', runId: 'loadtest-x' };
  const seedOnly: PayloadRecord[] = [{ id: 'seed', record: SEED_RECORD }];
  const three: PayloadRecord[] = [
    { id: 'seed', record: SEED_RECORD },
    { id: 'a', record: { ...SEED_RECORD, appId: 20001 } },
    { id: 'b', record: { ...SEED_RECORD, platformType: 1 } },
  ];

  it("is the seed's sample record (the pipeline's seed-sample golden case)", () => {
    const versions = versionsIn(join(MODELS, 'conversion'));
    expect(versions.length).to.be.greaterThan(0);
    for (const v of versions) {
      const golden = JSON.parse(readFileSync(join(MODELS, 'conversion', v, 'golden.json'), 'utf8')) as {
        cases: { id: string; record: unknown }[];
      };
      expect(golden.cases.find((c) => c.id === 'seed-sample')?.record).to.deep.equal(SEED_RECORD);
    }
  });

  it('varies userId (a JSON number) and x-user-id (the same, as a string) per call', () => {
    const t = predictTemplate(seedOnly, opts);
    expect(t.metadata).to.deep.equal({
      [USER_ID_HEADER]: '{{add 102079311 .RequestNumber}}',
      [REQUEST_ID_HEADER]: 'loadtest-x-{{.RequestNumber}}',
    });
    for (const n of [0, 1, 41]) {
      const want = expectedCall(seedOnly, opts, n);
      const body = JSON.parse(expand(t.data, n)) as { instances: { userId: unknown }[] };
      expect(body).to.deep.equal(want.body);
      expect(body.instances[0]?.userId).to.be.a('number');
      expect(expand(t.metadata[USER_ID_HEADER] as string, n)).to.equal(want.metadata[USER_ID_HEADER]);
      expect(expand(t.metadata[REQUEST_ID_HEADER] as string, n)).to.equal(want.metadata[REQUEST_ID_HEADER]);
    }
    expect(expectedCall(seedOnly, opts, 0).metadata['x-user-id']).to.equal('102079311');
  });

  it('cycles through several records by call number', () => {
    const t = predictTemplate(three, { ...opts, version: '20261124T041754Z' });
    expect(t.data).to.include('{{$i := mod .RequestNumber 3}}');
    for (let n = 0; n < 7; n++) {
      const body = JSON.parse(expand(t.data, n));
      expect(body, `call ${n}`).to.deep.equal(
        expectedCall(three, { ...opts, version: '20261124T041754Z' }, n).body,
      );
    }
  });

  it('refuses records that would read as template actions', () => {
    expect(() => predictTemplate([{ id: 'x', record: { deviceName: '{{evil}}' } }], opts)).to.throw(/\{\{/);
    expect(() => predictTemplate([], opts)).to.throw(/at least one/);
  });

  it('mixes in the positive golden cases of the local model versions', () => {
    const records = mixedRecords(MODELS, 'conversion');
    expect(records[0]).to.deep.equal({ id: 'seed', record: SEED_RECORD });
    for (const r of records.slice(1)) {
      const [version, id] = r.id.split('/') as [string, string];
      const golden = JSON.parse(readFileSync(join(MODELS, 'conversion', version, 'golden.json'), 'utf8')) as {
        cases: { id: string; label: number; record: unknown }[];
      };
      const c = golden.cases.find((x) => x.id === id);
      expect(c?.label).to.equal(1);
      expect(c?.record).to.deep.equal(r.record);
    }
    expect(mixedRecords('/nonexistent', 'conversion')).to.deep.equal([{ id: 'seed', record: SEED_RECORD }]);
  });

  it('reads records from a file, or says what is wrong with it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'payload-'));
    try {
      writeFileSync(join(dir, 'ok.json'), JSON.stringify([SEED_RECORD, { ...SEED_RECORD, type: 1 }]));
      writeFileSync(join(dir, 'obj.json'), JSON.stringify(SEED_RECORD));
      expect(recordsFromFile(join(dir, 'ok.json'))).to.have.length(2);
      expect(() => recordsFromFile(join(dir, 'obj.json'))).to.throw(/array of record objects/);
      expect(() => recordsFromFile(join(dir, 'missing.json'))).to.throw(/could not read/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** Shaped like the server's /metrics (prom-client 15), trimmed. */
const METRICS_BEFORE = `# HELP inference_requests_total gRPC requests handled.
# TYPE inference_requests_total counter
inference_requests_total{method="Predict",model="conversion",version="20261124T041754Z",code="OK"} 10
inference_requests_total{method="ListModels",model="",version="",code="OK"} 3
# HELP inference_ab_assignments_total Predictions by A/B arm, group and model label.
# TYPE inference_ab_assignments_total counter
inference_ab_assignments_total{arm="canary",group="canary_negative",label="0"} 7
inference_ab_assignments_total{arm="canary",group="experiment",label="1"} 3
process_cpu_seconds_total 1.5
`;
const METRICS_AFTER = `inference_requests_total{method="Predict",model="conversion",version="20261124T041754Z",code="OK"} 110
inference_requests_total{method="Predict",model="nope",version="",code="NOT_FOUND"} 5
inference_ab_assignments_total{arm="canary",group="canary_negative",label="0"} 77
inference_ab_assignments_total{arm="canary",group="experiment",label="1"} 18
inference_ab_assignments_total{arm="canary",group="control",label="1"} 15
`;
const STABLE_AFTER = `inference_ab_assignments_total{arm="stable",group="baseline",label="0"} 850
inference_ab_assignments_total{arm="stable",group="baseline",label="1"} 50
`;

function snap(entries: Record<string, string>, failures: Record<string, string> = {}): Snapshot {
  return {
    byEndpoint: new Map(Object.entries(entries).map(([ep, text]) => [ep, parseSamples(text)])),
    failures: new Map(Object.entries(failures)),
  };
}

describe('loadtest A/B split from server metrics', () => {
  it('diffs assignments per arm and group across endpoints, and counts Predict calls', () => {
    const before = snap({ canary: METRICS_BEFORE, stable: '' });
    const after = snap({ canary: METRICS_AFTER, stable: STABLE_AFTER });
    expect(predictCalls(before)).to.equal(10);
    expect(predictCalls(after)).to.equal(115);
    const s = abSplit(before, after);
    expect(s.total).to.equal(70 + 15 + 15 + 900);
    expect(s.byArm).to.deep.equal({ canary: 100, stable: 900 });
    expect(s.byGroup).to.deep.equal({ canary_negative: 70, experiment: 15, control: 15, baseline: 900 });
    expect(s.positivesByArm).to.deep.equal({ canary: 30, stable: 50 });
    expect(s.endpoints).to.deep.equal(['canary', 'stable']);
  });

  it('scrapes /metrics over HTTP and records why an endpoint could not be read', async () => {
    const listen = (s: Server) =>
      new Promise<number>((resolve) =>
        s.listen(0, '127.0.0.1', () => resolve((s.address() as AddressInfo).port)),
      );
    const up = createServer((req, res) => res.end(req.url === '/metrics' ? METRICS_BEFORE : ''));
    const down = createServer();
    const upPort = await listen(up);
    const downPort = await listen(down);
    await new Promise((r) => down.close(r));
    try {
      const s = await snapshot([`127.0.0.1:${upPort}`, `127.0.0.1:${downPort}`]);
      expect(predictCalls(s)).to.equal(10);
      expect([...s.byEndpoint.keys()]).to.deep.equal([`127.0.0.1:${upPort}`]);
      expect(Object.fromEntries(s.failures)).to.deep.equal({ [`127.0.0.1:${downPort}`]: 'ECONNREFUSED' });
    } finally {
      up.closeAllConnections();
      await new Promise((r) => up.close(r));
    }
  });

  it('keeps each version its own series: a version swap mid-run counts both versions', () => {
    const line = (version: string, n: number) =>
      `inference_ab_assignments_total{arm="stable",model="conversion",version="${version}",group="baseline",label="0"} ${n}\n`;
    // Both versions answer during the run (a label moved), each its own series.
    const before = snap({ stable: line('20261124T041750Z', 100) + line('20261201T114452Z', 10) });
    const after = snap({ stable: line('20261124T041750Z', 160) + line('20261201T114452Z', 40) });
    expect(abSplit(before, after).byArm).to.deep.equal({ stable: 60 + 30 });
    // A version that appears only after the start counts from zero.
    expect(abSplit(snap({ stable: line('20261124T041750Z', 100) }), after).byArm).to.deep.equal({
      stable: 60 + 40,
    });
  });

  it('counts a reset counter from zero and leaves out endpoints not read both times', () => {
    const before = snap({ canary: METRICS_AFTER }, { stable: 'ECONNREFUSED' });
    const after = snap({ canary: METRICS_BEFORE, stable: STABLE_AFTER });
    const s = abSplit(before, after);
    expect(s.byGroup).to.deep.equal({ canary_negative: 7, experiment: 3 });
    expect(s.endpoints).to.deep.equal(['canary']);
    expect(s.unreachable).to.deep.equal({ stable: 'ECONNREFUSED' });
  });
});

describe('loadtest summary and HTML report', () => {
  const report = parseGhzReport(JSON.parse(readFileSync(join(FIXTURES, 'ghz-errors.json'), 'utf8')));
  const summary = summarize(report);
  const result = (over: Partial<LoadtestResult> = {}): LoadtestResult => ({
    title: 'Load test of envoy',
    target: 'envoy',
    host: '127.0.0.1:8080',
    load: 'rate 500/s, 50 workers',
    durationMs: 30_000,
    payload: 'the seed sample record',
    report,
    summary,
    verdicts: checkSlo(summary, DEFAULT_SLO),
    split: abSplit(snap({ canary: METRICS_BEFORE }), snap({ canary: METRICS_AFTER })),
    requestedRps: 500,
    generator: 'ghz',
    ...over,
  });

  it('prints rate, percentiles, errors by status, the split and each verdict', () => {
    // The recorded run went as fast as it could; pretend a higher rate was asked for.
    const text = formatSummary(result({ requestedRps: Math.ceil(report.rps * 2) }));
    for (const want of [
      'envoy (127.0.0.1:8080)',
      'p50 ',
      'p90 ',
      'p95 ',
      'p99 ',
      'max ',
      'RESOURCE_EXHAUSTED (8)  164',
      'NOT_FOUND ×7: unknown model "no-such-model"',
      'canary  100.0%',
      'experiment',
      'FAIL  error-rate',
      'PASS  p99',
      `of the requested ${Math.ceil(report.rps * 2)}/s`,
    ]) {
      expect(text).to.include(want);
    }
  });

  it('says why there is no split', () => {
    const text = formatSummary(result({ split: { unavailable: 'metrics not reachable (x: ECONNREFUSED)' } }));
    expect(text).to.include('A/B split   metrics not reachable (x: ECONNREFUSED)');
  });

  it('renders a self-contained page, escaping error messages', () => {
    const html = renderHtml(result());
    expect(html).to.match(/^<!doctype html>/);
    expect(html).to.include('SLO missed');
    expect(html).to.include('unknown model &quot;no-such-model&quot;');
    expect(html).to.not.match(/<script|https?:\/\/(?!grpc)/);
  });

  it('buckets calls per second of the run', () => {
    const rows = perSecond(report);
    expect(rows.reduce((n, r) => n + r.calls, 0)).to.equal(report.count);
    expect(rows.reduce((n, r) => n + r.errors, 0)).to.equal(summary.errorCount);
  });

  it('names report files by a model-version-shaped timestamp', () => {
    expect(timestamp(new Date('2026-11-24T04:28:20.123Z'))).to.equal('20261124T042820Z');
  });
});
