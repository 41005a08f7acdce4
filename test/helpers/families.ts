/**
 * The three model families one server can serve side by side: the demo LR
 * (models/conversion) and the GBDT and MLP fixtures (test/fixtures/models,
 * trained by the pipeline under their own names), each with its newest
 * version's golden vectors.
 */
import { cpSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { VERSION_PATTERN } from '../../server/model-manifest.js';
import { copyModels, DEMO_MODELS, ROOT } from './server.js';

export const FIXTURE_MODELS = join(ROOT, 'test', 'fixtures', 'models');

/** A version's golden.json: records, the inputs and scores Python computed, at `referenceTime`. */
export interface Golden {
  referenceTime: string;
  cases: { id: string; record: Record<string, unknown>; score: number; label: number }[];
}

/** The golden vectors of `version` of the model in `modelDir`. */
export function goldenOf(modelDir: string, version: string): Golden {
  return JSON.parse(readFileSync(join(modelDir, version, 'golden.json'), 'utf8')) as Golden;
}

const newest = (modelDir: string) =>
  readdirSync(modelDir)
    .filter((v) => VERSION_PATTERN.test(v))
    .sort()
    .pop() as string;

export interface Family {
  readonly family: 'lr' | 'gbdt' | 'mlp';
  readonly model: string;
  readonly dir: string;
  readonly version: string;
  readonly golden: Golden;
}

export const FAMILIES: readonly Family[] = (
  [
    { family: 'lr', model: 'conversion', dir: join(DEMO_MODELS, 'conversion') },
    { family: 'gbdt', model: 'conversion-gbdt', dir: join(FIXTURE_MODELS, 'conversion-gbdt') },
    { family: 'mlp', model: 'conversion-mlp', dir: join(FIXTURE_MODELS, 'conversion-mlp') },
  ] as const
).map((f) => {
  const version = newest(f.dir);
  return { ...f, version, golden: goldenOf(f.dir, version) };
});

/** A temp copy of the demo repository (without labels) plus the fixture families. */
export function familiesRepo(prefix: string): string {
  const repo = copyModels(prefix);
  for (const f of FAMILIES.filter((x) => x.dir.startsWith(FIXTURE_MODELS))) {
    cpSync(f.dir, join(repo, f.model), { recursive: true });
  }
  return repo;
}
