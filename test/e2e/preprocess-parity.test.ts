/**
 * Differential test of the two implementations of the preprocessing contract
 * (models/README.md): the server's Preprocessor and the training pipeline's
 * features.py must accept the same records, name the same field when they
 * refuse one, and produce the same model inputs, or production serves what
 * training refused. A seeded corpus of generated records (test/helpers/
 * record-corpus.ts) goes through both: the TypeScript side in process, the
 * Python side through scripts/pipeline/featurize.py, spawned once per manifest.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { FieldError } from '../../server/errors.js';
import { type Manifest, parseManifest } from '../../server/model-manifest.js';
import { Preprocessor } from '../../server/preprocess.js';
import { runCli } from '../helpers/cli.js';
import {
  CLASSES,
  type CorpusClass,
  type CorpusRecord,
  generateCorpus,
  toPythonJson,
} from '../helpers/record-corpus.js';
import { DEMO_MODELS, NEWER, ROOT, removeDir } from '../helpers/server.js';

const PYTHON = join(ROOT, '.venv', 'bin', 'python');
const FEATURIZE = join(ROOT, 'scripts', 'pipeline', 'featurize.py');
/** `now` of every age: fixed, so a failure replays exactly. */
const NOW = '2026-11-24T00:00:00.000Z';
const NOW_MS = Date.parse(NOW);
const TOLERANCE = 1e-6;
const SEED = 20261124;

/** What one implementation made of one record. */
type Verdict =
  | { readonly ok: true; readonly features: readonly number[] }
  | { readonly ok: false; readonly field: string; readonly error: string };

/**
 * A manifest with a field of every kind, both types of category, ranges open
 * on one side, unicode vocabulary values, and optional fields with and
 * without defaults: what the demo model's fields do not exercise.
 */
const KITCHEN_SINK_FIELDS = [
  { name: 'x', type: 'number', required: true, transform: { kind: 'numeric' } },
  {
    name: 'y',
    type: 'number',
    required: false,
    default: 0.5,
    transform: { kind: 'numeric' },
    range: { min: -1000, max: 1000 },
  },
  {
    name: 'z',
    type: 'number',
    required: false,
    default: 0,
    transform: { kind: 'numeric' },
    range: { min: 0 },
  },
  { name: 'd', type: 'string', required: true, transform: { kind: 'age', unit: 'days' } },
  {
    name: 'b',
    type: 'string',
    required: false,
    default: '2000-02-29',
    transform: { kind: 'age', unit: 'years' },
    range: { min: 0, max: 150 },
  },
  { name: 's', type: 'string', required: false, default: '0*0', transform: { kind: 'screen' } },
  {
    name: 't',
    type: 'string',
    required: true,
    transform: { kind: 'screen' },
    range: { min: 1, max: 100000 },
  },
  { name: 'cat', type: 'number', required: false, default: 0, transform: { kind: 'hash', buckets: 7 } },
  {
    name: 'tag',
    type: 'string',
    required: true,
    transform: { kind: 'vocabulary', values: ['', 'é', 'e\u0301', '😀', 'a', '中文'] },
  },
  {
    name: 'n',
    type: 'number',
    required: false,
    default: -1,
    transform: { kind: 'vocabulary', values: ['-1', '0', '1', '9007199254740991'] },
  },
  { name: 'label', type: 'string', required: false, default: '', transform: { kind: 'hash', buckets: 1 } },
  { name: 'note', type: 'string', required: false },
  { name: 'ref', type: 'number', required: false, default: 0 },
];

function featureNames(fields: readonly Record<string, unknown>[]): string[] {
  return fields.flatMap((f) => {
    const t = f.transform as { kind: string; values?: string[]; buckets?: number } | undefined;
    if (!t) return [];
    if (t.kind === 'vocabulary') return [...(t.values ?? []), '<unknown>'].map((v) => `${f.name}=${v}`);
    if (t.kind === 'hash') return Array.from({ length: t.buckets ?? 0 }, (_, i) => `${f.name}#${i}`);
    if (t.kind === 'screen') return [`${f.name}_width`, `${f.name}_height`];
    return [String(f.name)];
  });
}

/** The TypeScript verdict, from the server's own code. */
function serverVerdict(p: Preprocessor, record: Record<string, unknown>): Verdict {
  const out = new Float32Array(p.width);
  try {
    p.fill(record, NOW_MS, out, 0);
  } catch (err) {
    if (err instanceof FieldError) return { ok: false, field: err.field, error: err.reason };
    throw err;
  }
  return { ok: true, features: [...out] };
}

/** The Python verdicts of every record, from one run of scripts/pipeline/featurize.py. */
async function pipelineVerdicts(manifestPath: string, corpus: readonly CorpusRecord[]): Promise<Verdict[]> {
  const run = await runCli(PYTHON, [FEATURIZE, '--manifest', manifestPath, '--now', NOW], {
    cwd: ROOT,
    input: corpus.map((c) => `${toPythonJson(c.record)}\n`).join(''),
    timeoutMs: 60_000,
  });
  if (run.code !== 0) throw new Error(`featurize.py exited with ${run.code}: ${run.stderr}`);
  const lines = run.stdout.split('\n').filter((l) => l !== '');
  expect(lines.length, 'one verdict per record').to.equal(corpus.length);
  return lines.map((l) => JSON.parse(l) as Verdict);
}

/** Why two verdicts differ, or undefined when they agree. */
function difference(ts: Verdict, py: Verdict): string | undefined {
  if (!ts.ok || !py.ok) {
    if (ts.ok) return `server accepts, pipeline refuses ${py.ok ? '' : py.field}`;
    if (py.ok) return `server refuses ${ts.field}, pipeline accepts`;
    return ts.field === py.field ? undefined : `server names ${ts.field}, pipeline ${py.field}`;
  }
  if (ts.features.length !== py.features.length)
    return `widths ${ts.features.length} vs ${py.features.length}`;
  for (const [j, v] of ts.features.entries()) {
    const w = py.features[j] as number;
    if (!(Math.abs(v - w) <= TOLERANCE)) return `column ${j}: server ${v}, pipeline ${w}`;
  }
  return undefined;
}

function short(v: Verdict): string {
  return v.ok ? 'ok' : `${v.field}: ${v.error}`.slice(0, 100);
}

interface Outcome {
  readonly corpus: string;
  readonly item: CorpusRecord;
  readonly ts: Verdict;
  readonly py: Verdict;
}

const CORPORA = [
  { name: `conversion/${NEWER}`, n: 5000, seed: SEED },
  { name: 'kitchen-sink', n: 2000, seed: SEED + 1 },
];

describe('preprocessing parity: the server and the training pipeline agree record by record', function () {
  this.timeout(120_000);
  const outcomes: Outcome[] = [];
  let dir: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'parity-'));
    const demo = JSON.parse(
      readFileSync(join(DEMO_MODELS, 'conversion', NEWER, 'model.json'), 'utf8'),
    ) as Record<string, unknown>;
    const manifests: Record<string, unknown>[] = [
      demo,
      { ...demo, fields: KITCHEN_SINK_FIELDS, featureNames: featureNames(KITCHEN_SINK_FIELDS) },
    ];
    for (const [i, spec] of CORPORA.entries()) {
      const json = manifests[i] as Record<string, unknown>;
      const path = join(dir, `${i}.model.json`);
      writeFileSync(path, JSON.stringify(json));
      const manifest: Manifest = parseManifest(json, { name: 'conversion', version: NEWER });
      const preprocessor = new Preprocessor(manifest);
      const corpus = generateCorpus(manifest.fields, { seed: spec.seed, n: spec.n, nowMs: NOW_MS });
      const py = await pipelineVerdicts(path, corpus);
      for (const [k, item] of corpus.entries()) {
        outcomes.push({
          corpus: spec.name,
          item,
          ts: serverVerdict(preprocessor, item.record),
          py: py[k] as Verdict,
        });
      }
    }
  });
  after(() => removeDir(dir));

  it(`gives the same verdict, names the same field and computes the same inputs (to ${TOLERANCE}) for ${CORPORA.reduce((n, c) => n + c.n, 0)} records`, () => {
    const mismatches = outcomes.flatMap((o) => {
      const why = difference(o.ts, o.py);
      return why === undefined ? [] : [{ ...o, why }];
    });
    const report = mismatches
      .slice(0, 12)
      .map(
        (m) =>
          `  [${m.corpus} ${m.item.cls}${m.item.field ? ` ${m.item.field}` : ''}] ${m.why}\n` +
          `    record   ${toPythonJson(m.item.record).slice(0, 300)}\n` +
          `    server   ${short(m.ts)}\n    pipeline ${short(m.py)}`,
      )
      .join('\n');
    expect(
      mismatches.length,
      `${mismatches.length} of ${outcomes.length} records disagree; the first:\n${report}\n`,
    ).to.equal(0);
  });

  it('exercises every divergence class, with accepted and refused records where the class has both', () => {
    const counts = new Map<CorpusClass, { accepted: number; refused: number }>();
    for (const o of outcomes) {
      const c = counts.get(o.item.cls) ?? { accepted: 0, refused: 0 };
      if (o.ts.ok && o.py.ok) c.accepted++;
      if (!o.ts.ok && !o.py.ok) c.refused++;
      counts.set(o.item.cls, c);
    }
    const table = [...counts].map(([cls, c]) => `${cls}=${c.accepted}/${c.refused}`).join(' ');
    for (const [cls, expected] of Object.entries(CLASSES) as [CorpusClass, string][]) {
      const c = counts.get(cls) ?? { accepted: 0, refused: 0 };
      const where = `class ${cls} (accepted/refused: ${table})`;
      expect(c.accepted + c.refused, where).to.be.at.least(100);
      if (expected === 'accept') expect(c.refused, where).to.equal(0);
      if (expected === 'reject') expect(c.accepted, where).to.equal(0);
      if (expected === 'mixed') {
        expect(c.accepted, where).to.be.at.least(10);
        expect(c.refused, where).to.be.at.least(10);
      }
    }
  });

  it('names the bent field when a class only refuses', () => {
    const wrong = outcomes.filter(
      (o) => CLASSES[o.item.cls] === 'reject' && (o.ts.ok || o.ts.field !== o.item.field),
    );
    expect(wrong.map((o) => `${o.item.cls} ${o.item.field}: ${short(o.ts)}`).slice(0, 5)).to.deep.equal([]);
  });
});
