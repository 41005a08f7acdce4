import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** Label names, shared by every place that records a metric (and the dashboards and alerts in deploy/). */
export const LABEL = {
  method: 'method',
  model: 'model',
  version: 'version',
  code: 'code',
  result: 'result',
  state: 'state',
  arm: 'arm',
  group: 'group',
  label: 'label',
  source: 'source',
  metric: 'metric',
  destination: 'destination',
} as const;

type L = typeof LABEL;
/** The label set of each metric, as types: a misspelled or missing label does not compile. */
export type RequestLabels = L['method'] | L['model'] | L['version'] | L['code'] | L['arm'];
export type RunLabels = L['model'] | L['version'];
export type LoadLabels = L['model'] | L['version'] | L['result'];
export type VersionStateLabels = L['model'] | L['version'] | L['state'];
export type WantedLabels = L['model'] | L['version'] | L['source'];
export type AssignmentLabels = L['arm'] | L['model'] | L['version'] | L['group'] | L['label'];
export type OutcomeLabels = L['arm'] | L['model'] | L['metric'];

/** Label values for a label set: every label given, each a string. */
export type Labels<T extends string> = { readonly [K in T]: string };

/**
 * Latency buckets in seconds. The first ones resolve sub-millisecond
 * latencies (the demo model answers in well under 1 ms server-side).
 */
export const LATENCY_BUCKETS_S = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1,
  0.25, 0.5, 1, 2.5,
];

/** Every metric the server exports, registered on an injected registry. */
export class Metrics {
  readonly requests: Counter<RequestLabels>;
  readonly requestDuration: Histogram<RequestLabels>;
  readonly inferenceDuration: Histogram<RunLabels>;
  readonly batchSize: Histogram<L['model']>;
  readonly inFlight: Gauge;
  readonly modelLoads: Counter<LoadLabels>;
  readonly modelVersionInfo: Gauge<VersionStateLabels>;
  readonly modelVersionWanted: Gauge<WantedLabels>;
  readonly modelVersionMismatch: Gauge<L['model']>;
  readonly assignments: Counter<AssignmentLabels>;
  readonly outcomes: Counter<OutcomeLabels>;
  readonly logWriteErrors: Counter<L['destination']>;
  private inFlightNow: () => number = () => 0;

  constructor(readonly registry: Registry = new Registry()) {
    collectDefaultMetrics({ register: registry });
    const registers = [registry];
    const requestLabels: RequestLabels[] = [LABEL.method, LABEL.model, LABEL.version, LABEL.code, LABEL.arm];
    this.requests = new Counter({
      name: 'inference_requests_total',
      help: 'gRPC requests handled, by method, model, version, gRPC status code and A/B arm. QPS = rate() of this.',
      labelNames: requestLabels,
      registers,
    });
    this.requestDuration = new Histogram({
      name: 'inference_request_duration_seconds',
      help: 'Server-side response time: request decoded to response written.',
      labelNames: requestLabels,
      buckets: LATENCY_BUCKETS_S,
      registers,
    });
    this.inferenceDuration = new Histogram({
      name: 'inference_model_run_duration_seconds',
      help: 'Time of one ONNX Runtime run (after any dynamic batching; worker hand-off included).',
      labelNames: [LABEL.model, LABEL.version],
      buckets: LATENCY_BUCKETS_S,
      registers,
    });
    this.batchSize = new Histogram({
      name: 'inference_batch_instances',
      help: 'Rows per ONNX Runtime run (after any dynamic batching).',
      labelNames: [LABEL.model],
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
      registers,
    });
    const metrics = this;
    this.inFlight = new Gauge({
      name: 'inference_in_flight_requests',
      help: 'Requests being handled right now.',
      registers,
      // Read at each scrape, not counted up and down on every call.
      collect() {
        this.set(metrics.inFlightNow());
      },
    });
    this.modelLoads = new Counter({
      name: 'inference_model_loads_total',
      help: 'Model version loads, by result (success or failure).',
      labelNames: [LABEL.model, LABEL.version, LABEL.result],
      registers,
    });
    this.modelVersionInfo = new Gauge({
      name: 'inference_model_version_info',
      help: 'Loaded model versions (value 1); state is serving or loaded.',
      labelNames: [LABEL.model, LABEL.version, LABEL.state],
      registers,
    });
    this.modelVersionWanted = new Gauge({
      name: 'inference_model_version_wanted',
      help: 'The version each model should serve (value 1), and why: source is label, pin or latest.',
      labelNames: [LABEL.model, LABEL.version, LABEL.source],
      registers,
    });
    this.modelVersionMismatch = new Gauge({
      name: 'inference_model_version_mismatch',
      help: '1 while a model does not serve the version its label or pin names (kept on the previous one, or unavailable).',
      labelNames: [LABEL.model],
      registers,
    });
    this.assignments = new Counter({
      name: 'inference_ab_assignments_total',
      help: 'Predictions by A/B arm, model, version, group and model label.',
      labelNames: [LABEL.arm, LABEL.model, LABEL.version, LABEL.group, LABEL.label],
      registers,
    });
    this.outcomes = new Counter({
      name: 'inference_outcomes_total',
      help: 'Business outcomes recorded (RecordOutcomes), by arm, model and metric name.',
      labelNames: [LABEL.arm, LABEL.model, LABEL.metric],
      registers,
    });
    this.logWriteErrors = new Counter({
      name: 'inference_log_write_errors_total',
      help: 'Log lines dropped because a destination could not be written (for example a full disk).',
      labelNames: [LABEL.destination],
      registers,
    });
  }

  /** Where `inference_in_flight_requests` reads its value at each scrape: the unary adapter's count. */
  readInFlightFrom(read: () => number): void {
    this.inFlightNow = read;
  }
}

/** A tiny HTTP server exposing `GET /metrics` in the Prometheus text format. */
export class MetricsServer {
  private server: Server | undefined;

  constructor(private readonly registry: Registry) {}

  /** Listens and resolves with the bound port (0 picks a free one). */
  async start(host: string, port: number): Promise<number> {
    const server = createServer((req, res) => {
      if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found; try GET /metrics\n');
        return;
      }
      this.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(text),
        (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(err)}\n`),
      );
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    return (server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
