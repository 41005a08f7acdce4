/**
 * Version labels: names for versions of one model, kept in the repository
 * beside the versions (`<root>/<model>/labels.json`), as TF Serving's
 * `version_labels` but on disk, so every replica of an arm on any machine
 * agrees. A server follows the label of its role (`stable`, `canary`); the
 * rollout command (scripts/ops/rollout.ts) moves labels.
 *
 *   {"stable": "20261124T041750Z", "canary": "20261124T041754Z"}
 *
 * Written atomically (a temp file in the same directory, then rename), so a
 * reader sees the old or the new file, never half of one.
 */
import { randomBytes } from 'node:crypto';
import { rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { VERSION_PATTERN } from './model-manifest.js';
import { FileTooLargeError, readRegularFile } from './regular-file.js';

/** The file name, in the model's directory. */
export const LABELS_FILE = 'labels.json';

/** Label names: lower-case words, as in `stable`, `canary`, `shadow-1`. */
export const LABEL_NAME = /^[a-z][a-z0-9_-]{0,31}$/;

/** Larger than any real labels file: refused before it is parsed. */
const MAX_LABELS_BYTES = 64 * 1024;

/** Label name → version name. */
export type VersionLabels = Readonly<Record<string, string>>;

/** labels.json exists but cannot be used; the message says why. */
export class LabelsError extends Error {
  override name = 'LabelsError';
}

/** Validates parsed labels.json content. Throws `LabelsError` naming the entry. */
export function parseLabels(json: unknown): VersionLabels {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new LabelsError('labels.json must hold an object of label → version');
  }
  const out: Record<string, string> = {};
  for (const [label, version] of Object.entries(json)) {
    if (!LABEL_NAME.test(label)) throw new LabelsError(`label "${label.slice(0, 40)}" is not a label name`);
    if (typeof version !== 'string' || !VERSION_PATTERN.test(version)) {
      throw new LabelsError(`label "${label}" must name a version like 20261120T101500Z`);
    }
    out[label] = version;
  }
  return Object.freeze(out);
}

/**
 * The model's labels: undefined when it has no labels.json (the model then
 * follows the pin or `latest` policy). Throws `LabelsError` when the file
 * exists but is unreadable or invalid: the caller must fail closed.
 */
export async function readLabels(modelDir: string): Promise<VersionLabels | undefined> {
  const path = join(modelDir, LABELS_FILE);
  let text: string;
  try {
    text = (await readRegularFile(path, MAX_LABELS_BYTES)).toString('utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    if (err instanceof FileTooLargeError) throw new LabelsError(`labels.json is ${err.message}`);
    throw new LabelsError(`labels.json cannot be read: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new LabelsError(`labels.json is not JSON: ${(err as Error).message}`);
  }
  return parseLabels(json);
}

/** Writes labels.json atomically (temp file + rename in the same directory). */
export async function writeLabels(modelDir: string, labels: VersionLabels): Promise<void> {
  const checked = parseLabels(labels);
  const sorted = Object.fromEntries(Object.entries(checked).sort(([a], [b]) => a.localeCompare(b)));
  const tmp = join(modelDir, `.${LABELS_FILE}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await writeFile(tmp, `${JSON.stringify(sorted, null, 2)}\n`, { flag: 'wx' });
    await rename(tmp, join(modelDir, LABELS_FILE));
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
