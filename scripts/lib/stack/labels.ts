/**
 * Which version each arm of the local stack serves: the model's labels
 * (labels.json), which the servers follow by role. A model without labels
 * gets them here, once: stable the older of its two newest versions, canary
 * the newer; from then on `npm run rollout` moves them.
 */
import { join } from 'node:path';
import { readLabels, writeLabels } from '../../../server/version-labels.js';
import { olderAndNewer } from '../versions.js';
import type { Role } from './layout.js';

export async function armVersions(
  modelRoot: string,
  say: (s: string) => void,
  model = 'conversion',
): Promise<Record<Role, string>> {
  const dir = join(modelRoot, model);
  const labels = await readLabels(dir);
  if (labels?.stable && labels.canary) return { stable: labels.stable, canary: labels.canary };
  const { older, newer } = olderAndNewer(modelRoot, model);
  const next = { ...labels, stable: labels?.stable ?? older, canary: labels?.canary ?? newer };
  await writeLabels(dir, next);
  say(
    `labels: ${join(dir, 'labels.json')} had no ${labels ? 'stable or canary label' : 'labels'}; wrote stable=${next.stable}, canary=${next.canary}`,
  );
  return { stable: next.stable, canary: next.canary };
}
