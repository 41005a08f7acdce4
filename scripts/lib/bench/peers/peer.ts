/**
 * What a peer of `npm run bench -- --peers` is (another model server serving
 * the same weights through its own Open Inference Protocol endpoint), and how
 * one is started: its venv's Python runs its app under scripts/bench/ on free
 * loopback ports, output to a file, and it is ready when its gRPC ModelReady
 * says so. Its processes (servers often fork workers or a backend stub) are
 * listed once it is ready, so a phase records the CPU of every one of them.
 */
import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { credentials, Metadata } from '@grpc/grpc-js';
import { GRPCInferenceServiceClient } from '../../../../server/generated/inference/oip/open_inference_grpc.js';
import { fileTail, spawnToFile, stopChild, untilReady } from '../../children.js';
import { modelInferInputs, modelInferRaw } from '../../load/payload.js';
import { PROJECT_ROOT } from '../../paths.js';
import { freePort } from '../../ports.js';
import type { Watched } from '../measure.js';
import type { Processes } from '../processes.js';
import type { PeerVenv } from './venvs.js';

/** How a peer's requests carry their tensors: the encoding its own client sends, and Triton's batch dimension. */
export interface PeerWire {
  /** `raw`: raw_input_contents (tritonclient); `typed`: contents lists (the KServe and MLServer SDKs). */
  readonly encoding: 'raw' | 'typed';
  /** Each input's shape for one record: `[1]`, or `[1, 1]` where the model has a batch dimension. */
  readonly shape: readonly number[];
}

/**
 * One record as a ModelInfer request on `wire`, in proto JSON (bytes in
 * base64): what ghz sends (`--data-file`), and, through the generated
 * `ModelInferRequest.fromJSON`, what the score check sends.
 */
export function requestJson(model: string, record: Readonly<Record<string, unknown>>, wire: PeerWire) {
  const tensors = wire.encoding === 'raw' ? modelInferRaw(record) : { inputs: modelInferInputs(record) };
  return {
    model_name: model,
    model_version: '',
    ...tensors,
    inputs: tensors.inputs.map((t) => ({ ...t, shape: [...wire.shape] })),
  };
}

/** The ports a peer listens on (each its own: most peers open gRPC, REST and metrics). */
export interface PeerPorts {
  readonly grpc: number;
  readonly http: number;
  readonly metrics: number;
}

/** `--grpc-port N --http-port M --metrics-port K`, the flags of the apps that take all three. */
export const portFlags = (p: PeerPorts) => [
  '--grpc-port',
  String(p.grpc),
  '--http-port',
  String(p.http),
  '--metrics-port',
  String(p.metrics),
];

/** One peer, as scripts/lib/bench/peers/<noun>.ts describes it. */
export interface PeerSpec {
  /** Short key: `triton`, `kserve`, `mlserver` (venv .venv-peers/<venv>, requirements scripts/bench/requirements/<key>.txt). */
  readonly key: string;
  /** The row label in the report, with the version. */
  readonly label: string;
  /** Directory under .venv-peers/. */
  readonly venv: string;
  /** The `*_pb2` module whose descriptor is the contract ghz gets as a protoset. */
  readonly pb2Module: string;
  readonly wire: PeerWire;
  /** What the report says about its settings. */
  readonly settings: string;
  /** The app's argv after the interpreter, given the version directory and the ports. */
  args(versionDir: string, ports: PeerPorts): string[];
  /** Extra environment for the app. */
  env?(venv: PeerVenv, ports: PeerPorts): Record<string, string>;
  /** How long loading may take. */
  readonly startTimeoutMs: number;
}

/** The scripts/bench/ app of a peer. */
export const peerApp = (file: string) => join(PROJECT_ROOT, 'scripts', 'bench', file);

/** A started peer. */
export interface RunningPeer {
  readonly spec: PeerSpec;
  readonly proc: ChildProcess;
  readonly pid: number;
  /** host:port of its gRPC endpoint. */
  readonly host: string;
  readonly outFile: string;
  /** Its process and every descendant it had once ready. */
  readonly watch: readonly Watched[];
  stop(): Promise<void>;
}

/** The parent pid and command name of every process, from /proc. */
function processTable(): { pid: number; ppid: number; comm: string }[] {
  const out: { pid: number; ppid: number; comm: string }[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const comm = stat.slice(stat.indexOf('(') + 1, close);
      const ppid = Number(stat.slice(close + 2).split(' ')[1]);
      out.push({ pid: Number(name), ppid, comm });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** `pid` and its descendants, parents first. */
export function processTree(pid: number): { pid: number; comm: string }[] {
  const table = processTable();
  const root = table.find((p) => p.pid === pid);
  const tree = root ? [{ pid, comm: root.comm }] : [];
  for (let i = 0; i < tree.length; i++) {
    const parent = tree[i]?.pid;
    for (const p of table) if (p.ppid === parent) tree.push({ pid: p.pid, comm: p.comm });
  }
  return tree;
}

/** A gRPC Open Inference Protocol client for `host`. */
export const oipClientFor = (host: string) =>
  new GRPCInferenceServiceClient(host, credentials.createInsecure());

/** Whether `model` is ready at `client`, false on any error (not listening yet, still loading). */
export function modelReady(client: GRPCInferenceServiceClient, model: string): Promise<boolean> {
  return new Promise((resolve) => {
    client.modelReady(
      { name: model, version: '' },
      new Metadata(),
      { deadline: Date.now() + 2000 },
      (err, res) => resolve(!err && res?.ready === true),
    );
  });
}

/**
 * Starts `spec` for `versionDir` with `venv`, registered with `procs`; resolves
 * once ModelReady says `model` is ready. Stopping it also kills, by pid, any
 * descendant still alive after its parent exited.
 */
export async function startPeer(
  procs: Processes,
  spec: PeerSpec,
  o: {
    readonly venv: PeerVenv;
    readonly versionDir: string;
    readonly model: string;
    readonly workDir: string;
  },
): Promise<RunningPeer> {
  const ports: PeerPorts = { grpc: await freePort(), http: await freePort(), metrics: await freePort() };
  const outFile = join(o.workDir, `peer-${spec.key}.out`);
  const env = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '',
    PYTHONUNBUFFERED: '1',
    PYTHONDONTWRITEBYTECODE: '1',
    ...spec.env?.(o.venv, ports),
  };
  const proc = spawnToFile(o.venv.python, spec.args(o.versionDir, ports), env, outFile);
  let tree: { pid: number; comm: string }[] = [];
  const stop = async () => {
    await stopChild(proc, 10_000);
    for (const p of tree.slice(1)) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  };
  procs.add(`peer ${spec.key}`, stop);
  const host = `127.0.0.1:${ports.grpc}`;
  const client = oipClientFor(host);
  try {
    await untilReady(spec.label, proc, () => modelReady(client, o.model), {
      timeoutMs: spec.startTimeoutMs,
      output: () => fileTail(outFile),
      intervalMs: 500,
    });
  } finally {
    client.close();
  }
  tree = processTree(proc.pid as number);
  // Names are unique per process: a server's workers often share a command name.
  const watch = tree.map((p) => ({ name: `${spec.key} ${p.comm} ${p.pid}`, pid: p.pid }));
  return { spec, proc, pid: proc.pid as number, host, outFile, watch, stop };
}
