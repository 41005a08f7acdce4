/**
 * Runs a version's QA cases against a deployed server or Envoy, so a tester
 * can accept the version before it goes live:
 *
 *     npm run qa -- --target HOST:PORT (--file PATH | --version-dir DIR)
 *                   [--deadline-ms N] [--user-id ID] [--header KEY=VALUE]...
 *
 * Each case's request goes out as one Predict call with the generated grpc-js
 * client; the case passes when the status code is the expected one and, for OK
 * cases, the response comes from the requested model and version and every
 * prediction has the expected label and a score within `scoreTolerance`
 * (1e-5, the golden contract, when the case gives none). One line per case,
 * then a summary.
 *
 * Metadata: every call carries `x-user-id` (default `qa`), the key the server
 * and Envoy use for A/B assignment, so one run lands on one arm consistently;
 * `--header x-ab-group=canary` (repeatable, any key) adds headers such as
 * Envoy's QA override to test one arm.
 *
 * Before any case, qa asks the target (with the same metadata, so through Envoy
 * the same arm answers) which version it serves: when that is not the version
 * under test, the run fails at once instead of testing some other model.
 *
 * Exit codes:
 *   0  every case passed
 *   1  at least one case failed, or the target serves another version
 *   2  usage: bad arguments, or the QA file is missing or malformed
 *   3  the target could not be reached within the deadline
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import {
  InferenceServiceClient,
  type PredictResponse,
} from '../../server/generated/inference/v1/inference.js';
import { USER_ID_HEADER } from '../../server/headers.js';
import { parseCommandLine } from '../lib/args.js';
import { runIfMain, UsageError, usageFailure } from '../lib/cli.js';
import { parseQaFile, type QaCase, type QaFile, statusName } from '../lib/qa-file.js';

const EXIT = { ok: 0, failed: 1, usage: 2, unreachable: 3 } as const;

/** The golden-vector contract's tolerance, used when a case sets no `scoreTolerance`. */
const DEFAULT_SCORE_TOLERANCE = 1e-5;
/** At most this many mismatches are spelled out per failing case. */
const MAX_REASONS = 3;

const USAGE = `usage: npm run qa -- --target HOST:PORT (--file PATH | --version-dir DIR) [options]

  --target HOST:PORT   the server or Envoy listener to test
  --file PATH          a qa.json (models/<name>/<version>/qa.json)
  --version-dir DIR    shorthand for --file DIR/qa.json
  --deadline-ms N      per-call deadline, also the connect timeout (default 5000)
  --user-id ID         x-user-id sent with every call (default "qa")
  --header KEY=VALUE   extra metadata, repeatable (e.g. x-ab-group=canary)

qa first checks (ListModels, same metadata) that the target serves the QA file's
version; a target serving another version fails the run before any case.

exit codes: 0 all passed, 1 a case failed or another version serves, 2 usage or bad QA file, 3 target unreachable`;

interface Options {
  target: string;
  file: string;
  deadlineMs: number;
  metadata: Metadata;
}

function parseCli(argv: readonly string[]): Options | 'help' {
  const v = parseCommandLine(argv, {
    target: { type: 'string' },
    file: { type: 'string' },
    'version-dir': { type: 'string' },
    'deadline-ms': { type: 'string' },
    'user-id': { type: 'string' },
    header: { type: 'string', multiple: true },
  }).values;
  if (v.help) return 'help';
  if (!v.target) throw new UsageError('--target HOST:PORT is required');
  if (!/^[^\s:]+:\d{1,5}$/.test(v.target) && !/^\[[0-9a-fA-F:.]+\]:\d{1,5}$/.test(v.target)) {
    throw new UsageError(`--target must be HOST:PORT, got "${v.target}"`);
  }
  if ((v.file === undefined) === (v['version-dir'] === undefined)) {
    throw new UsageError('give exactly one of --file and --version-dir');
  }
  const file = v.file ?? join(v['version-dir'] as string, 'qa.json');
  const deadlineMs = Number(v['deadline-ms'] ?? '5000');
  if (!Number.isInteger(deadlineMs) || deadlineMs < 1 || deadlineMs > 600_000) {
    throw new UsageError(`--deadline-ms must be an integer from 1 to 600000, got "${v['deadline-ms']}"`);
  }
  const metadata = new Metadata();
  try {
    metadata.set(USER_ID_HEADER, v['user-id'] ?? 'qa');
    for (const h of v.header ?? []) {
      const eq = h.indexOf('=');
      if (eq <= 0) throw new UsageError(`--header must be KEY=VALUE, got "${h}"`);
      metadata.set(h.slice(0, eq).trim().toLowerCase(), h.slice(eq + 1));
    }
  } catch (err) {
    // grpc-js rejects keys outside [0-9a-z_.-] and binary keys given as strings.
    throw err instanceof UsageError ? err : new UsageError(`bad metadata: ${(err as Error).message}`);
  }
  return { target: v.target, file, deadlineMs, metadata };
}

interface Outcome {
  response?: PredictResponse;
  error?: ServiceError;
  ms: number;
}

function call(client: InferenceServiceClient, c: QaCase, opts: Options): Promise<Outcome> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    client.predict(
      { ...c.request },
      opts.metadata,
      { deadline: Date.now() + opts.deadlineMs },
      (error, response) => {
        const ms = performance.now() - t0;
        resolve(error ? { error, ms } : { response, ms });
      },
    );
  });
}

/** Why the outcome does not meet the case's expectation; empty when it does. */
function check(c: QaCase, out: Outcome): string[] {
  const got = out.error ? statusName(out.error.code) : 'OK';
  if (got !== c.expect.code) {
    const details = out.error ? `: ${out.error.details}` : '';
    return [`expected ${c.expect.code}, got ${got}${details}`];
  }
  const res = out.response;
  if (!res) return [];
  const reasons: string[] = [];
  if (res.model !== c.request.model)
    reasons.push(`served by model "${res.model}", requested "${c.request.model}"`);
  if (c.request.version !== '' && res.version !== c.request.version) {
    reasons.push(`served by version ${res.version}, requested ${c.request.version}`);
  }
  const want = c.expect.predictions;
  if (want) {
    if (res.predictions.length !== want.length) {
      reasons.push(`${res.predictions.length} predictions, expected ${want.length}`);
    } else {
      const tol = c.expect.scoreTolerance ?? DEFAULT_SCORE_TOLERANCE;
      want.forEach((w, i) => {
        const p = res.predictions[i];
        if (!p) return;
        if (p.label !== w.label) {
          reasons.push(
            `predictions[${i}].label is ${p.label}, expected ${w.label} (score ${p.score.toFixed(6)})`,
          );
        }
        const diff = Math.abs(p.score - w.score);
        if (!(diff <= tol)) {
          reasons.push(
            `predictions[${i}].score is ${p.score.toFixed(6)}, expected ${w.score} ± ${tol} (off by ${diff.toFixed(6)})`,
          );
        }
      });
    }
  }
  return reasons;
}

/** The version the target serves for `model`, asked with the run's metadata. */
function servingVersion(
  client: InferenceServiceClient,
  model: string,
  opts: Options,
): Promise<{ version: string; arm: string; error?: string }> {
  return new Promise((resolve) =>
    client.listModels({}, opts.metadata, { deadline: Date.now() + opts.deadlineMs }, (err, res) => {
      if (err) resolve({ version: '', arm: '', error: `${statusName(err.code)}: ${err.details}` });
      else resolve({ version: res.models.find((m) => m.name === model)?.servingVersion ?? '', arm: res.arm });
    }),
  );
}

function waitForReady(client: InferenceServiceClient, deadlineMs: number): Promise<Error | undefined> {
  return new Promise((resolve) => client.waitForReady(Date.now() + deadlineMs, (err) => resolve(err)));
}

function out(line: string): void {
  process.stdout.write(`${line}\n`);
}

async function loadFile(path: string): Promise<QaFile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${path}: ${(err as Error).message}`);
  }
  try {
    return parseQaFile(JSON.parse(text));
  } catch (err) {
    throw new UsageError(`${path} is not a valid QA file: ${(err as Error).message}`);
  }
}

async function main(argv: readonly string[]): Promise<number> {
  let opts: Options;
  let qa: QaFile;
  try {
    const parsed = parseCli(argv);
    if (parsed === 'help') {
      out(USAGE);
      return EXIT.ok;
    }
    opts = parsed;
    qa = await loadFile(opts.file);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    return usageFailure('qa', err.message);
  }

  const md = Object.entries(opts.metadata.toJSON())
    .map(([k, v]) => `${k}=${v.join(',')}`)
    .join(' ');
  out(
    `qa: ${qa.model} ${qa.version}, ${qa.cases.length} cases from ${opts.file} against ${opts.target} ` +
      `(deadline ${opts.deadlineMs} ms; metadata ${md})`,
  );
  if (qa.expectedAt && qa.horizonDays !== undefined) {
    const ageDays = (Date.now() - Date.parse(qa.expectedAt)) / 86_400_000;
    if (ageDays > qa.horizonDays) {
      out(
        `qa: note: expected scores were computed at ${qa.expectedAt}, ${ageDays.toFixed(0)} days ago; ` +
          `the file vouches for its labels for ${qa.horizonDays} days, so age-dependent cases may drift`,
      );
    }
  }

  const client = new InferenceServiceClient(opts.target, credentials.createInsecure());
  try {
    const notReady = await waitForReady(client, opts.deadlineMs);
    if (notReady) {
      out(`qa: cannot reach ${opts.target} within ${opts.deadlineMs} ms: ${notReady.message}`);
      return EXIT.unreachable;
    }
    const serving = await servingVersion(client, qa.model, opts);
    if (serving.error) {
      out(`qa: ListModels failed: ${serving.error}`);
      return EXIT.failed;
    }
    if (serving.version !== qa.version) {
      out(
        `qa: FAIL - the answering server (arm ${serving.arm || '?'}) serves ${qa.model} ${serving.version || '(nothing)'}, ` +
          `not ${qa.version}, the version under test; move its label first (npm run rollout -- canary ${qa.version}) ` +
          'or target the arm that serves it',
      );
      return EXIT.failed;
    }
    out(`qa: the answering server (arm ${serving.arm}) serves ${qa.model} ${serving.version}`);
    const t0 = performance.now();
    const failed: string[] = [];
    for (const c of qa.cases) {
      const outcome = await call(client, c, opts);
      const reasons = check(c, outcome);
      const ms = `${outcome.ms.toFixed(1)} ms`;
      if (reasons.length === 0) {
        const r = outcome.response;
        const what = r
          ? `OK from ${r.model} ${r.version} (arm ${r.arm}), ${r.predictions.length} prediction${r.predictions.length === 1 ? '' : 's'}`
          : `${c.expect.code}: ${outcome.error?.details ?? ''}`;
        out(`PASS  ${c.name} - ${what} (${ms})`);
      } else {
        failed.push(c.name);
        const shown = reasons.slice(0, MAX_REASONS).join('; ');
        const more = reasons.length > MAX_REASONS ? `; and ${reasons.length - MAX_REASONS} more` : '';
        out(`FAIL  ${c.name} - ${shown}${more} (${ms})`);
      }
    }
    const secs = ((performance.now() - t0) / 1000).toFixed(1);
    const passed = qa.cases.length - failed.length;
    out(
      `qa: ${passed} passed, ${failed.length} failed of ${qa.cases.length} cases in ${secs} s` +
        (failed.length ? `; failed: ${failed.map((n) => JSON.stringify(n)).join(', ')}` : ''),
    );
    return failed.length ? EXIT.failed : EXIT.ok;
  } finally {
    client.close();
  }
}

runIfMain(import.meta.url, 'qa', main);
