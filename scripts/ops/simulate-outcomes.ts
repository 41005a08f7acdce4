/**
 * `npm run simulate-outcomes`: business outcomes for demo traffic, with a
 * planted effect (scripts/lib/ab/planted-effect.ts DEMO_EFFECT: every
 * prediction converts at 8% untreated, a positive the canary treats 3 points
 * more, one stable treats 1 point more: the canary's positives are better
 * targeted). It reads the servers' prediction logs,
 * draws each prediction's conversion, and sends the conversions through
 * `RecordOutcomes` via Envoy, as a business back end would: by requestId and
 * instance, without x-user-id, so each lands on either arm and the readout
 * must join across both arms' logs. Then it prints what a correct readout
 * must find (the planted lifts, given who was exposed).
 *
 *   npm start                       # the stack
 *   npm run loadtest                # demo traffic
 *   npm run simulate-outcomes       # outcomes with the planted effect
 *   npm run ab-report               # recovers it within its intervals
 *
 * Draws are a hash of (seed, unit, the unit's nth prediction in the logs),
 * not of the request id a server or Envoy made up: the same traffic gives the
 * same draws in every run (the demo test's readout is then one fixed
 * realisation, not a fresh one each time), and running it twice on the same
 * logs sends the same outcomes, which the readout counts once.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { createGunzip } from 'node:zlib';
import { credentials, Metadata } from '@grpc/grpc-js';
import { asPredictionRecord, userOfOutput } from '../../server/call-log.js';
import { InferenceServiceClient, type Outcome } from '../../server/generated/inference/v1/inference.js';
import { findLogFiles } from '../lib/ab/log-files.js';
import {
  conversionProbability,
  DEMO_EFFECT,
  type Truth,
  truth,
  type UnitExposure,
} from '../lib/ab/planted-effect.js';
import { intOption, parseCommandLine } from '../lib/args.js';
import { optionsOrExit, runIfMain } from '../lib/cli.js';

const USAGE = `Usage: npm run simulate-outcomes -- [options]

Reads the servers' prediction logs and sends a conversion outcome (metric "converted", value 1)
for each prediction that converts under the planted effect, through RecordOutcomes.

  --logs <dir>         the servers' logs (default logs)
  --target <host:port> where to send RecordOutcomes (default 127.0.0.1:8080, Envoy)
  --seed <n>           the draws' seed (default 1): the same seed sends the same outcomes
  --batch <n>          outcomes per call (default 200)
  --delay <s>          outcomes happen 1 to this many seconds after their prediction (default 60)
  --dry-run            send nothing; print the planted truth
  --json               print the sent count and the truth as JSON
`;

interface Options {
  logs: string;
  target: string;
  seed: number;
  batch: number;
  delayS: number;
  dryRun: boolean;
  json: boolean;
  help: boolean;
}

function options(argv: readonly string[]): Options {
  const { values } = parseCommandLine(argv, {
    logs: { type: 'string' },
    target: { type: 'string' },
    seed: { type: 'string' },
    batch: { type: 'string' },
    delay: { type: 'string' },
    'dry-run': { type: 'boolean' },
    json: { type: 'boolean' },
  });
  return {
    logs: resolve(values.logs ?? 'logs'),
    target: values.target ?? '127.0.0.1:8080',
    seed: intOption(values.seed, '--seed', 0, 2 ** 31) ?? 1,
    batch: intOption(values.batch, '--batch', 1, 256) ?? 200,
    delayS: intOption(values.delay, '--delay', 1, 86_400) ?? 60,
    dryRun: values['dry-run'] === true,
    json: values.json === true,
    help: values.help === true,
  };
}

/** Two uniform draws in [0, 1) from sha256(seed:unit:n), for the unit's nth prediction. */
function draws(seed: number, unit: string, n: number): [number, number] {
  const h = createHash('sha256').update(`${seed}:${unit}:${n}`).digest();
  return [h.readUInt32BE(0) / 2 ** 32, h.readUInt32BE(4) / 2 ** 32];
}

interface Simulated {
  outcomes: Outcome[];
  units: UnitExposure[];
  predictions: number;
  usersOnBothArms: number;
}

/** Reads every prediction; draws the conversions; keeps each unit's exposures for the truth. */
async function simulate(o: Options): Promise<Simulated> {
  const now = Date.now();
  const outcomes: Outcome[] = [];
  const byUnit = new Map<
    string,
    {
      arms: Set<string>;
      t: number[];
      /** Its predictions read so far, forced and pinned ones included (the draws' index). */
      read: number;
      /** The arm of its randomised predictions; undefined while it has none. */
      arm: UnitExposure['arm'] | undefined;
      predictions: UnitExposure['predictions'][number][];
    }
  >();
  let predictions = 0;
  for (const file of findLogFiles(o.logs)) {
    const raw = createReadStream(file);
    const input = file.endsWith('.gz') ? raw.pipe(createGunzip()) : raw;
    for await (const line of createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY })) {
      if (!line.includes('"event":"prediction"')) continue;
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        continue;
      }
      const rec = asPredictionRecord(parsed);
      if (!rec) continue;
      const t = Date.parse(rec.time);
      rec.outputs.forEach((out, i) => {
        predictions++;
        const key = userOfOutput(rec, i) ?? `r:${rec.requestId}#${i}`;
        let u = byUnit.get(key);
        if (!u) {
          u = { arms: new Set(), t: [], read: 0, arm: undefined, predictions: [] };
          byUnit.set(key, u);
        }
        // As the readout counts: a forced or pinned call is no exposure, but still puts its unit on its arm.
        u.arms.add(rec.arm);
        if (rec.forced === undefined && rec.pinned === undefined) {
          u.arm = rec.arm;
          u.t.push(t);
          u.predictions.push({ label: out.label, group: out.group, action: out.action });
        }
        const [convert, delay] = draws(o.seed, key, u.read++);
        if (
          convert < conversionProbability(DEMO_EFFECT, { arm: rec.arm, label: out.label, action: out.action })
        ) {
          // 1 s to --delay after the prediction, but never in the future, and never before the
          // prediction itself: an outcome clamped to before its exposure is one the readout
          // rightly leaves out, and the demo's latest predictions would all lose theirs
          // (the readout then found the planted effect diluted, about 60% of outcomes dropped).
          const at = Math.max(t + 1, Math.min(now, t + 1000 + delay * (o.delayS - 1) * 1000));
          outcomes.push({
            requestId: rec.requestId,
            instance: i,
            userId: '',
            model: rec.model,
            metric: 'converted',
            value: 1,
            occurredAt: new Date(at),
          });
        }
      });
    }
  }
  const units: UnitExposure[] = [];
  let both = 0;
  for (const u of byUnit.values()) {
    if (u.arm === undefined) continue;
    if (u.arms.size > 1) {
      both++;
      continue;
    }
    // In time order, as the readout counts from the first exposure.
    const order = u.t.map((t, i) => [t, i] as const).sort((a, b) => a[0] - b[0]);
    units.push({
      arm: u.arm,
      predictions: order.map(([, i]) => u.predictions[i] as UnitExposure['predictions'][number]),
    });
  }
  return { outcomes, units, predictions, usersOnBothArms: both };
}

function send(client: InferenceServiceClient, batch: Outcome[]): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    client.recordOutcomes(
      { outcomes: batch },
      new Metadata(),
      { deadline: Date.now() + 10_000 },
      (err, res) => {
        if (err) reject(err);
        else resolvePromise(res.recorded);
      },
    );
  });
}

const pts = (x: number) => `${x >= 0 ? '+' : ''}${(100 * x).toFixed(2)} points`;
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const line = (name: string, t: Truth['positives'], base: string, treat: string) =>
  `  ${name}: ${base} ${pct(t.baseline)} → ${treat} ${pct(t.treatment)}: ${pts(t.absolute)} (${t.relative >= 0 ? '+' : ''}${pct(t.relative)} relative)`;

async function main(argv: readonly string[]): Promise<number> {
  const o = optionsOrExit({ name: 'simulate-outcomes', usage: USAGE, parse: options }, argv);
  if (typeof o === 'number') return o;
  let sim: Simulated;
  try {
    sim = await simulate(o);
  } catch (err) {
    process.stderr.write(`simulate-outcomes: cannot read ${o.logs}: ${(err as Error).message}\n`);
    return 1;
  }
  if (sim.predictions === 0) {
    process.stderr.write(`simulate-outcomes: no predictions in ${o.logs} (run npm run loadtest first)\n`);
    return 1;
  }
  let recorded = 0;
  if (!o.dryRun) {
    const client = new InferenceServiceClient(o.target, credentials.createInsecure());
    try {
      for (let i = 0; i < sim.outcomes.length; i += o.batch) {
        recorded += await send(client, sim.outcomes.slice(i, i + o.batch));
      }
    } catch (err) {
      process.stderr.write(
        `simulate-outcomes: RecordOutcomes to ${o.target} failed after ${recorded} outcomes: ${(err as Error).message}\n`,
      );
      return 1;
    } finally {
      client.close();
    }
  }
  const t = truth(DEMO_EFFECT, sim.units);
  if (o.json) {
    process.stdout.write(
      `${JSON.stringify({ predictions: sim.predictions, outcomes: sim.outcomes.length, recorded, truth: t }, null, 2)}\n`,
    );
    return 0;
  }
  process.stdout.write(
    [
      `simulate-outcomes: ${sim.predictions.toLocaleString('en-US')} predictions read from ${o.logs}; ` +
        `${sim.outcomes.length.toLocaleString('en-US')} conversions drawn (seed ${o.seed})` +
        (o.dryRun
          ? ', none sent (--dry-run)'
          : `, ${recorded.toLocaleString('en-US')} recorded through ${o.target}`),
      `Planted: P(convert) negative ${pct(DEMO_EFFECT.negative)}, untreated positive ${pct(DEMO_EFFECT.positive)}, ` +
        `treated +${pct(DEMO_EFFECT.canaryUplift)} on the canary, +${pct(DEMO_EFFECT.stableUplift)} on stable. What the readout should find:`,
      line('stage 2, experiment vs control', t.positives, 'control', 'experiment'),
      line('stage 1, canary vs stable', t.arms, 'stable', 'canary'),
      line('canary if promoted vs stable', t.promoted, 'stable', 'promoted canary'),
      ...(sim.usersOnBothArms > 0
        ? [`  (${sim.usersOnBothArms} users on both arms left out, as the readout does)`]
        : []),
      '',
    ].join('\n'),
  );
  return 0;
}

runIfMain(import.meta.url, 'simulate-outcomes', main);
