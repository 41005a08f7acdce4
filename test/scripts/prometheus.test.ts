import { expect } from 'chai';
import {
  histogramSeries,
  type MetricFamily,
  PrometheusParseError,
  parsePrometheus,
  parseSamples,
  sampleValue,
} from '../../scripts/lib/prometheus.js';
import { startApp, type TestApp } from '../helpers/server.js';

/** Shaped like prom-client 15's exposition, trimmed. */
const TEXT = `# HELP inference_requests_total gRPC requests handled.
# TYPE inference_requests_total counter
inference_requests_total{method="Predict",model="conversion",version="20261124T041754Z",code="OK"} 10
inference_requests_total{method="ListModels",model="",version="",code="OK"} 3

# HELP inference_request_duration_seconds Call latency, \\\\ and a\\nsecond line.
# TYPE inference_request_duration_seconds histogram
inference_request_duration_seconds_bucket{le="0.0005",method="Predict",code="OK"} 4
inference_request_duration_seconds_bucket{le="+Inf",method="Predict",code="OK"} 10
inference_request_duration_seconds_bucket{le="0.001",method="Predict",code="OK"} 9
inference_request_duration_seconds_sum{method="Predict",code="OK"} 0.0061
inference_request_duration_seconds_count{method="Predict",code="OK"} 10
inference_request_duration_seconds_bucket{le="0.0005",method="Predict",code="NOT_FOUND"} 1
inference_request_duration_seconds_bucket{le="+Inf",method="Predict",code="NOT_FOUND"} 1
inference_request_duration_seconds_sum{method="Predict",code="NOT_FOUND"} 0.0002
inference_request_duration_seconds_count{method="Predict",code="NOT_FOUND"} 1
# TYPE rpc_latency summary
rpc_latency{quantile="0.99"} 0.02
rpc_latency_sum 1.5
rpc_latency_count 100
# a comment that is neither HELP nor TYPE
process_cpu_seconds_total 1.5
escaped{a="q\\"uote",b="back\\\\slash",c="new\\nline",d="brace}, comma=\\"x\\""} 2 1700000000000
special{v="nan"} NaN
special{v="inf"} +Inf
special{v="-inf"} -Inf
special{v="exp"} 1.5e-3
`;

describe('Prometheus text parser (scripts/lib/prometheus.ts)', () => {
  const families = parsePrometheus(TEXT);
  const family = (name: string) => families.get(name) as MetricFamily;

  it('reads TYPE and HELP (with its escapes), and keeps the families in order', () => {
    expect([...families.keys()]).to.deep.equal([
      'inference_requests_total',
      'inference_request_duration_seconds',
      'rpc_latency',
      'process_cpu_seconds_total',
      'escaped',
      'special',
    ]);
    expect(family('inference_requests_total').type).to.equal('counter');
    expect(family('inference_request_duration_seconds').help).to.equal(
      'Call latency, \\ and a\nsecond line.',
    );
    expect(family('process_cpu_seconds_total')).to.deep.equal({
      name: 'process_cpu_seconds_total',
      type: 'untyped',
      help: '',
      samples: [{ name: 'process_cpu_seconds_total', labels: {}, value: 1.5 }],
    });
  });

  it('unescapes label values, even ones holding quotes, braces and commas, and keeps timestamps', () => {
    expect(family('escaped').samples).to.deep.equal([
      {
        name: 'escaped',
        labels: { a: 'q"uote', b: 'back\\slash', c: 'new\nline', d: 'brace}, comma="x"' },
        value: 2,
        timestampMs: 1_700_000_000_000,
      },
    ]);
  });

  it('reads NaN, ±Inf and exponents', () => {
    const values = family('special').samples.map((s) => s.value);
    expect(values[0]).to.be.NaN;
    expect(values.slice(1)).to.deep.equal([Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 0.0015]);
  });

  it('gathers a histogram and a summary under the family their TYPE names', () => {
    expect(family('inference_request_duration_seconds').samples).to.have.length(9);
    expect(families.has('inference_request_duration_seconds_bucket')).to.equal(false);
    expect(family('rpc_latency').samples.map((s) => s.name)).to.deep.equal([
      'rpc_latency',
      'rpc_latency_sum',
      'rpc_latency_count',
    ]);
    expect(histogramSeries(family('inference_request_duration_seconds'))).to.deep.equal([
      {
        labels: { method: 'Predict', code: 'OK' },
        buckets: [
          { le: 0.0005, count: 4 },
          { le: 0.001, count: 9 },
          { le: Number.POSITIVE_INFINITY, count: 10 },
        ],
        sum: 0.0061,
        count: 10,
      },
      {
        labels: { method: 'Predict', code: 'NOT_FOUND' },
        buckets: [
          { le: 0.0005, count: 1 },
          { le: Number.POSITIVE_INFINITY, count: 1 },
        ],
        sum: 0.0002,
        count: 1,
      },
    ]);
    expect(() => histogramSeries(family('rpc_latency'))).to.throw(/not a histogram/);
  });

  it('finds samples by name and exact labels', () => {
    const samples = parseSamples(TEXT);
    const ok = { method: 'Predict', model: 'conversion', version: '20261124T041754Z', code: 'OK' };
    expect(sampleValue(samples, 'inference_requests_total', ok)).to.equal(10);
    // A subset of the labels is not the series.
    expect(sampleValue(samples, 'inference_requests_total', { method: 'Predict' })).to.equal(undefined);
    expect(sampleValue(samples, 'process_cpu_seconds_total')).to.equal(1.5);
    expect(parseSamples(TEXT, new Set(['inference_requests_total']))).to.have.length(2);
  });

  it('names the line of anything that is not the format', () => {
    for (const [bad, why] of [
      ['x{a="1"', /line 2: expected "," or "}" after label a/],
      ['x{a="unterminated} 1', /line 2: unterminated value of label a/],
      ['x{a="b\\q"} 1', /line 2: invalid escape \\q/],
      ['x{a="1",a="2"} 1', /line 2: label a given twice/],
      ['x one', /line 2: "one" is not a number/],
      ['x', /line 2: expected a value/],
      ['x 1 soon', /line 2: "soon" is not a timestamp/],
      ['# TYPE x countr', /line 2: unknown metric type "countr"/],
      ['9x 1', /line 2: expected a metric name/],
    ] as const) {
      expect(() => parsePrometheus(`ok 1\n${bad}\n`), bad)
        .to.throw(PrometheusParseError, why)
        .with.property('line', 2);
    }
    expect(() => parsePrometheus('x 1\n# TYPE x gauge\n')).to.throw(/TYPE of x comes after its samples/);
  });

  it('reads every family of a real /metrics page, histograms included', async function () {
    this.timeout(30_000);
    const t: TestApp = await startApp();
    try {
      const text = await (await fetch(`http://127.0.0.1:${t.ports.metrics}/metrics`)).text();
      const all = parsePrometheus(text);
      expect(all.get('inference_request_duration_seconds')?.type).to.equal('histogram');
      expect(all.get('process_resident_memory_bytes')?.samples[0]?.value).to.be.greaterThan(0);
      const runs = histogramSeries(all.get('inference_model_run_duration_seconds') as MetricFamily);
      // The golden replay at load ran each loaded version at least once.
      expect(runs.length).to.be.greaterThan(0);
      for (const s of runs) {
        expect(s.count).to.be.greaterThan(0);
        expect(s.buckets.at(-1)).to.deep.equal({ le: Number.POSITIVE_INFINITY, count: s.count });
      }
    } finally {
      await t.stop();
    }
  });
});
