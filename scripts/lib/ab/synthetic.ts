/**
 * A synthetic experiment in the servers' own log format, for the benchmark
 * (`npm run bench:ab-report`) and the readout's tests: Predict lines built
 * as server/call-log.ts `PredictionRecord`s (stage-2 groups from the real
 * `ExperimentAssigner`, users pseudonymised by the real `UserIds`, redacted
 * inputs as the logger writes them) and RecordOutcomes lines as
 * `OutcomeRecord`s, with conversions drawn from a planted effect.
 */
import { once } from 'node:events';
import { createReadStream, createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { basename, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import type { OutcomeEntry, OutcomeRecord, PredictionRecord, UserIds } from '../../../server/call-log.js';
import type { Role } from '../../../server/config.js';
import { ExperimentAssigner } from '../../../server/experiment.js';
import { SEED_RECORD } from '../load/payload.js';
import { mulberry32 } from '../random.js';
import { conversionProbability, type PlantedEffect, type UnitExposure } from './planted-effect.js';

export interface SyntheticOptions {
  readonly users: number;
  readonly seed: number;
  readonly effect: PlantedEffect;
  readonly userIds: UserIds;
  readonly canaryShare: number;
  readonly experiment: { readonly name: string; readonly salt: string; readonly share: number };
  /** P(label 1) per arm: the models differ. */
  readonly positiveRate: { readonly stable: number; readonly canary: number };
  readonly versions: { readonly stable: string; readonly canary: string };
  readonly model: string;
  /** Time of the first prediction (epoch ms) and between predictions. */
  readonly start: number;
  readonly spacingMs: number;
  /** Outcomes happen this long after their prediction, uniformly. */
  readonly outcomeDelayMs: readonly [number, number];
  /** Outcomes per RecordOutcomes line. */
  readonly outcomesPerLine: number;
  /** Also record revenue (a mean metric) for each conversion. */
  readonly revenue: boolean;
  /** Log each Predict's (redacted) inputs, as LOG_INPUTS does by default: the realistic line size. */
  readonly inputs: boolean;
  /** Keep every unit's exposure (for `truth`): memory grows with users. */
  readonly track: boolean;
}

export const DEFAULT_SYNTHETIC: Omit<SyntheticOptions, 'users' | 'userIds' | 'effect'> = {
  seed: 1,
  canaryShare: 0.1,
  experiment: { name: 'positives-v1', salt: 'ab-salt-1', share: 0.5 },
  positiveRate: { stable: 0.2, canary: 0.3 },
  versions: { stable: '20261124T041750Z', canary: '20261124T041754Z' },
  model: 'conversion',
  start: Date.parse('2026-11-24T00:00:00.000Z'),
  spacingMs: 10,
  outcomeDelayMs: [1000, 3_600_000],
  outcomesPerLine: 10,
  revenue: false,
  inputs: false,
  track: false,
};

/** The seed notes' sample record, as the logger writes it with LOG_REDACT_FIELDS' defaults masked. */
const REDACTED_INPUT = {
  ...SEED_RECORD,
  userId: '[redacted]',
  birthday: '[redacted]',
  deviceName: '[redacted]',
};

/** A RecordOutcomes call's record as the server logs it (`time` from epoch ms `t`). */
export function outcomeRecord(o: {
  readonly requestId: string;
  readonly model: string;
  readonly arm: Role;
  readonly t: number;
  readonly outcomes: OutcomeEntry[];
}): OutcomeRecord {
  return {
    requestId: o.requestId,
    method: 'RecordOutcomes',
    model: o.model,
    version: '',
    arm: o.arm,
    code: 'OK',
    latencyMs: 0.2,
    time: new Date(o.t).toISOString(),
    event: 'outcome',
    outcomes: o.outcomes,
  };
}

/** One line to write, and the arm whose log it belongs to. */
export interface SyntheticLine {
  readonly arm: Role;
  readonly line: string;
  readonly kind: 'prediction' | 'outcome';
}

/** Generates the lines of one experiment; `units` holds the exposures when `track` is on. */
export class SyntheticExperiment {
  readonly units: UnitExposure[] = [];
  predictions = 0;
  outcomes = 0;
  private readonly o: SyntheticOptions;

  constructor(options: Partial<SyntheticOptions> & Pick<SyntheticOptions, 'users' | 'userIds' | 'effect'>) {
    this.o = { ...DEFAULT_SYNTHETIC, ...options };
  }

  private line(arm: Role, record: PredictionRecord | OutcomeRecord, msg: string): string {
    return JSON.stringify({
      level: 'info',
      pid: arm === 'stable' ? 101 : 202,
      component: 'rpc',
      ...record,
      msg,
    });
  }

  *lines(): Generator<SyntheticLine> {
    const o = this.o;
    const rand = mulberry32(o.seed);
    const assigner = new ExperimentAssigner('canary', o.experiment);
    const pending: Record<Role, OutcomeEntry[]> = { stable: [], canary: [] };
    const flush = function* (this: SyntheticExperiment, arm: Role, t: number): Generator<SyntheticLine> {
      const batch = pending[arm];
      if (batch.length === 0) return;
      pending[arm] = [];
      const record = outcomeRecord({ requestId: `oc-${t}-${arm}`, model: o.model, arm, t, outcomes: batch });
      yield { arm, line: this.line(arm, record, 'RecordOutcomes'), kind: 'outcome' };
    }.bind(this);
    for (let i = 0; i < o.users; i++) {
      const t = o.start + i * o.spacingMs;
      const raw = `u${o.seed}-${i}`;
      const user = o.userIds.forLog(raw);
      const arm: Role = rand() < o.canaryShare ? 'canary' : 'stable';
      const label: 0 | 1 = rand() < o.positiveRate[arm] ? 1 : 0;
      const { group, action } =
        arm === 'stable' ? { group: 'baseline' as const, action: label } : assigner.assign(label, raw, '');
      const requestId = `req-${o.seed}-${i}`;
      const record: PredictionRecord = {
        requestId,
        method: 'Predict',
        model: o.model,
        version: o.versions[arm],
        arm,
        code: 'OK',
        latencyMs: 0.41,
        time: new Date(t).toISOString(),
        event: 'prediction',
        experiment: o.experiment.name,
        user,
        outputs: [{ score: label === 1 ? 0.61 : 0.04, label, group, action }],
        ...(o.inputs ? { inputs: [REDACTED_INPUT] } : {}),
      };
      this.predictions++;
      yield { arm, line: this.line(arm, record, 'Predict'), kind: 'prediction' };
      if (o.track) this.units.push({ arm, predictions: [{ label, group, action }] });
      if (rand() < conversionProbability(o.effect, { arm, label, action })) {
        const [lo, hi] = o.outcomeDelayMs;
        const at = new Date(t + lo + rand() * (hi - lo)).toISOString();
        // Through Envoy without x-user-id an outcome reaches either arm.
        const to: Role = rand() < 0.5 ? 'stable' : 'canary';
        pending[to].push({ requestId, instance: 0, model: o.model, metric: 'converted', value: 1, at });
        if (o.revenue) {
          pending[to].push({
            user,
            model: o.model,
            metric: 'revenue',
            value: Math.round(2000 + 3000 * rand()) / 100,
            at,
          });
        }
        this.outcomes += o.revenue ? 2 : 1;
        if (pending[to].length >= o.outcomesPerLine) yield* flush(to, t);
      }
    }
    const end = o.start + o.users * o.spacingMs;
    yield* flush('stable', end);
    yield* flush('canary', end);
  }
}

/**
 * Writes the experiment as the servers would: `dir/<arm>/server.2026-11-24.<n>.log`,
 * a new file every `linesPerFile` lines per arm (pino-roll's rotation). Returns the files.
 */
export async function writeExperiment(
  experiment: SyntheticExperiment,
  dir: string,
  linesPerFile = 1_000_000,
): Promise<string[]> {
  const files: string[] = [];
  const open: Partial<Record<Role, { stream: WriteStream; lines: number; n: number; buf: string[] }>> = {};
  const close = async (s: { stream: WriteStream; buf: string[] }) => {
    if (s.buf.length > 0) s.stream.write(`${s.buf.join('\n')}\n`);
    s.buf = [];
    s.stream.end();
    await once(s.stream, 'close');
  };
  for (const { arm, line } of experiment.lines()) {
    let s = open[arm];
    if (s === undefined || s.lines >= linesPerFile) {
      const n = (s?.n ?? 0) + 1;
      if (s) await close(s);
      mkdirSync(join(dir, arm), { recursive: true });
      const file = join(dir, arm, `server.2026-11-24.${n}.log`);
      files.push(file);
      s = { stream: createWriteStream(file), lines: 0, n, buf: [] };
      open[arm] = s;
    }
    s.buf.push(line);
    s.lines++;
    if (s.buf.length >= 2000) {
      const ok = s.stream.write(`${s.buf.join('\n')}\n`);
      s.buf = [];
      if (!ok) await once(s.stream, 'drain');
    }
  }
  for (const s of Object.values(open)) if (s) await close(s);
  return files;
}

/** Gzips `files` into `archiveDir/<arm>/archive/<name>.gz`, as the log archiver does (zlib's default level). */
export async function archive(files: readonly string[], archiveDir: string): Promise<string[]> {
  const out: string[] = [];
  for (const f of files) {
    const arm = basename(join(f, '..'));
    const dir = join(archiveDir, arm, 'archive');
    mkdirSync(dir, { recursive: true });
    const gz = join(dir, `${basename(f)}.gz`);
    await pipeline(createReadStream(f), createGzip(), createWriteStream(gz));
    out.push(gz);
  }
  return out;
}
