/**
 * The ghz command line for one run, built from a typed description (ghz
 * v0.121's flags, https://ghz.sh/docs/options).
 */

/** What one ghz run should do. Durations are in milliseconds. */
export interface GhzRun {
  /** host:port of the gRPC server (no scheme). */
  readonly host: string;
  /** Fully qualified method, `package.Service/Method`. */
  readonly call: string;
  /**
   * Plaintext when true; TLS (system roots, or `cacert`) when false. ghz itself
   * defaults to TLS, so this is always passed explicitly one way or the other.
   */
  readonly insecure: boolean;
  readonly cacert?: string;
  /** A .proto file and its import paths; without it ghz uses server reflection. */
  readonly proto?: { readonly file: string; readonly importPaths: readonly string[] };
  /** A compiled FileDescriptorSet instead of `proto` (a peer whose package ships only `*_pb2.py`). */
  readonly protoset?: string;
  /**
   * Path of the request body template (JSON after ghz's Go text/template
   * expansion). A file rather than `-d`: ghz's CLI insists `-d` parses as JSON
   * before templating, so a template producing a bare number (`"userId": {{…}}`)
   * is only accepted from `--data-file`, which is read raw.
   */
  readonly dataFile: string;
  /** Request metadata; values may hold ghz templates. */
  readonly metadata?: Readonly<Record<string, string>>;
  /** Fixed request rate; omitted means as fast as `concurrency` workers go. */
  readonly rps?: number;
  /** Workers (ghz `-c`): the closed-loop concurrency, or the pool that serves `rps`. */
  readonly concurrency: number;
  readonly connections?: number;
  readonly durationMs: number;
  /** Per-request deadline. */
  readonly timeoutMs: number;
  readonly connectTimeoutMs?: number;
  /** CPUs ghz may use (its own default is all of them). */
  readonly cpus?: number;
  /** Where ghz writes its JSON report. */
  readonly outputFile: string;
  readonly name?: string;
  /** String tags stored in the report. */
  readonly tags?: Readonly<Record<string, string>>;
}

/** ghz takes Go durations; whole milliseconds are always exact. */
function goDuration(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${Math.round(ms)}ms`;
}

/**
 * The ghz command line for `run`, as an argv array (never a shell string, so
 * templates and JSON need no quoting).
 *
 * `--duration-stop=wait` lets calls in flight at the end finish and be counted:
 * ghz's default (`close`) cuts the connection under them and reports them as
 * errors, which would fail a zero-error SLO for no fault of the server.
 */
export function ghzArgs(run: GhzRun): string[] {
  const args = [`--call=${run.call}`];
  if (run.proto) {
    args.push(`--proto=${run.proto.file}`);
    if (run.proto.importPaths.length > 0) args.push(`--import-paths=${run.proto.importPaths.join(',')}`);
  } else if (run.protoset) {
    args.push(`--protoset=${run.protoset}`);
  }
  if (run.insecure) args.push('--insecure');
  else if (run.cacert) args.push(`--cacert=${run.cacert}`);
  args.push(`--data-file=${run.dataFile}`);
  if (run.metadata && Object.keys(run.metadata).length > 0) {
    args.push(`--metadata=${JSON.stringify(run.metadata)}`);
  }
  if (run.rps !== undefined) args.push(`--rps=${run.rps}`);
  args.push(`--concurrency=${run.concurrency}`);
  if (run.connections !== undefined) args.push(`--connections=${run.connections}`);
  args.push(
    `--duration=${goDuration(run.durationMs)}`,
    '--duration-stop=wait',
    `--timeout=${goDuration(run.timeoutMs)}`,
  );
  if (run.connectTimeoutMs !== undefined) args.push(`--connect-timeout=${goDuration(run.connectTimeoutMs)}`);
  if (run.cpus !== undefined) args.push(`--cpus=${run.cpus}`);
  if (run.name) args.push(`--name=${run.name}`);
  if (run.tags && Object.keys(run.tags).length > 0) args.push(`--tags=${JSON.stringify(run.tags)}`);
  args.push('--format=json', `--output=${run.outputFile}`, run.host);
  return args;
}
