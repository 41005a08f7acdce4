/**
 * The rollout's actions on a running stack: move the canary label, step the
 * weights with an analysis at each step, promote, roll back, and report. Each
 * action prints what it does, confirms it from the running system (Envoy's
 * admin API for weights, each server's ListModels for what it serves) and
 * records it in the state file before it returns.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ModelLoadError, ModelVersion } from '../../../server/model-version.js';
import { readLabels, type VersionLabels, writeLabels } from '../../../server/version-labels.js';
import type { EnvoyAdmin } from '../envoy/admin.js';
import { type Weights, weightsForCanary } from '../envoy/config.js';
import { switchWeights } from '../envoy/switch.js';
import { versionsIn } from '../versions.js';
import {
  type Analysis,
  type Arm,
  type ArmFigures,
  analyse,
  type Check,
  type Thresholds,
} from './analysis.js';
import { type BusinessOptions, businessCheck, businessReadout, promoteAllowed } from './business.js';
import { type MetricsEndpoints, modelOn, type ServerView, servers, snapshot } from './sources.js';
import { initialState, type RolloutState, readState, saveState } from './state.js';

/** The action could not be done; the state was left as the message says. Exit code 1. */
export class RolloutError extends Error {
  override name = 'RolloutError';
}

/** The analysis held the rollout (no verdict): exit code 4. */
export class HeldError extends Error {
  override name = 'HeldError';
}

export interface RolloutContext {
  readonly admin: EnvoyAdmin;
  readonly routesPath: string;
  readonly statePath: string;
  readonly modelsDir: string;
  readonly model: string;
  readonly metrics: MetricsEndpoints;
  readonly thresholds: Thresholds;
  /** How long to wait for servers to serve a label change. */
  readonly serveTimeoutMs: number;
  /** How long to wait for Envoy to load a routes file. */
  readonly switchTimeoutMs: number;
  /** The canary weight of the base split (restored by `promote`). */
  readonly baseCanary: number;
  /** The business metric check (business.ts). */
  readonly business: BusinessOptions;
  readonly out: (line: string) => void;
  readonly signal: AbortSignal;
}

const modelDir = (ctx: RolloutContext) => join(ctx.modelsDir, ctx.model);
const describe = (w: Weights | undefined) =>
  w ? `stable ${w.stable}% / canary ${w.canary}%` : 'no weighted split';

async function state(ctx: RolloutContext): Promise<RolloutState> {
  return (await readState(ctx.statePath)) ?? initialState(ctx.model, ctx.baseCanary);
}

async function labels(ctx: RolloutContext): Promise<VersionLabels> {
  return (await readLabels(modelDir(ctx))) ?? {};
}

/** Sets the canary weight and prints before/after as Envoy confirms them. */
export async function setCanaryWeight(ctx: RolloutContext, canary: number): Promise<void> {
  const r = await switchWeights({
    admin: ctx.admin,
    routesPath: ctx.routesPath,
    weights: weightsForCanary(canary),
    timeoutMs: ctx.switchTimeoutMs,
  });
  ctx.out(
    r.changed
      ? `weights: ${describe(r.before.weights)} → ${describe(r.after.weights)} (Envoy accepted version "${r.after.version}" in ${r.confirmMs} ms)`
      : `weights: ${describe(r.after.weights)} (already in force)`,
  );
}

/**
 * Waits until every server of `arm` serves `version` of the model, as each says
 * itself. Fails fast when a server reports it cannot (a load error, a missing
 * version): it keeps serving its previous version, and the message says why.
 */
export async function waitArmServes(ctx: RolloutContext, arm: Arm, version: string): Promise<ServerView[]> {
  const t0 = Date.now();
  const deadline = t0 + ctx.serveTimeoutMs;
  let last = '';
  for (;;) {
    const views = (await servers(ctx.admin))[arm];
    if (views.length === 0) throw new RolloutError(`Envoy routes the ${arm} arm to no server`);
    const states = views.map((v) => {
      const m = modelOn(v, ctx.model);
      return { v, m, ok: m?.servingVersion === version && m.state === 'SERVING' };
    });
    const summary = states
      .map(
        ({ v, m }) =>
          `${v.address} ${m ? `${m.servingVersion || '(nothing)'} ${m.state}` : `(${v.error ?? 'no model'})`}`,
      )
      .join(', ');
    if (summary !== last) ctx.out(`  ${arm} servers: ${summary}`);
    last = summary;
    if (states.every((s) => s.ok)) {
      ctx.out(
        `  every ${arm} server serves ${ctx.model} ${version} (${Date.now() - t0} ms after the label change)`,
      );
      return views;
    }
    const refused = states.find(({ m }) => m?.wantedVersion === version && m.problem !== '');
    if (refused?.m) {
      throw new RolloutError(
        `${refused.v.address} (${arm}) cannot serve ${version}: ${refused.m.problem}; it keeps serving ${refused.m.servingVersion || 'nothing'}`,
      );
    }
    if (Date.now() > deadline) {
      throw new RolloutError(
        `the ${arm} servers did not all serve ${version} within ${ctx.serveTimeoutMs} ms: ${summary}`,
      );
    }
    await sleep(200, undefined, { signal: ctx.signal });
  }
}

/** Checks the version is published in the repository and loads exactly as a server will load it. */
export async function validatePublished(ctx: RolloutContext, version: string): Promise<void> {
  if (!versionsIn(modelDir(ctx)).includes(version)) {
    throw new RolloutError(
      `${ctx.model} ${version} is not published in ${modelDir(ctx)} (npm run publish-model -- <version dir> --to ${ctx.modelsDir})`,
    );
  }
  let v: ModelVersion;
  try {
    v = await ModelVersion.load(
      join(modelDir(ctx), version),
      { name: ctx.model, version },
      { intraOpThreads: 1 },
    );
  } catch (err) {
    throw new RolloutError(
      `${ctx.model} ${version} does not load: ${err instanceof ModelLoadError ? err.message : String(err)}`,
    );
  }
  await v.retire();
  ctx.out(`validated: ${ctx.model} ${version} loads and reproduces its golden vectors`);
}

/** `canary <version>`: traffic to the canary to 0, then its label to `version`, then wait until it serves. */
export async function canary(ctx: RolloutContext, version: string): Promise<RolloutState> {
  await validatePublished(ctx, version);
  const before = await labels(ctx);
  if (before.stable === undefined) {
    throw new RolloutError(
      `${modelDir(ctx)}/labels.json has no stable label; label the serving version first`,
    );
  }
  if (before.stable === version) throw new RolloutError(`${version} is already the stable version`);
  // No user meets the new version before the analysis starts: the canary weight goes to 0 first.
  await setCanaryWeight(ctx, 0);
  await writeLabels(modelDir(ctx), { ...before, canary: version });
  ctx.out(`labels: canary ${before.canary ?? '(none)'} → ${version} (stable stays ${before.stable})`);
  await waitArmServes(ctx, 'canary', version);
  const s = await state(ctx);
  return saveState(
    ctx.statePath,
    {
      ...s,
      model: ctx.model,
      phase: 'canary-ready',
      canaryVersion: version,
      stableVersion: before.stable,
      steps: [],
      step: -1,
      lastAnalysis: undefined,
      stableBaseline: undefined,
    },
    'canary',
    `canary label → ${version}; every canary server serves it; canary weight 0`,
  );
}

/** One analysis over `intervalMs` with the weights in force (see `analyse` for `stableBaseline`). */
export async function analyseOnce(
  ctx: RolloutContext,
  intervalMs: number,
  stableBaseline?: ArmFigures,
): Promise<Analysis> {
  const before = await snapshot(ctx.admin, ctx.metrics);
  await sleep(intervalMs, undefined, { signal: ctx.signal });
  const after = await snapshot(ctx.admin, ctx.metrics);
  return analyse(before, after, ctx.thresholds, stableBaseline);
}

/** Prints an analysis: one line per check, then the verdict. */
export function printAnalysis(ctx: RolloutContext, a: Analysis): void {
  for (const c of a.checks) ctx.out(`    ${c.verdict.padEnd(12)} ${c.name}: ${c.detail} (limit ${c.limit})`);
  ctx.out(`  analysis ${a.from} → ${a.to}: ${a.verdict.toUpperCase()}`);
}

export interface StartOptions {
  readonly steps: readonly number[];
  readonly intervalMs: number;
  /** Consecutive failed analyses at one step before the rollback. */
  readonly failureThreshold: number;
  /** Inconclusive analyses at one step before the command stops, holding the step. */
  readonly maxHolds: number;
}

/** The analysis with one more check; a failing check fails it. */
function withCheck(a: Analysis, c: Check): Analysis {
  return c.verdict === 'fail'
    ? { ...a, checks: [...a.checks, c], verdict: 'fail', summary: `fail: ${c.name} ${c.detail}` }
    : { ...a, checks: [...a.checks, c] };
}

/** Stable's figures when `a` measured stable itself on a full sample, else the previous baseline. */
function nextBaseline(s: RolloutState, a: Analysis): ArmFigures | undefined {
  return !a.stableFromBaseline && a.arms.stable.calls >= a.thresholds.minCalls
    ? a.arms.stable
    : s.stableBaseline;
}

/**
 * `start`: for each step, set the weights, let the interval pass, analyse.
 * pass → next step; fail (`failureThreshold` times in a row) → canary weight
 * 0 at once, phase rolled-back, RolloutError; inconclusive → stay at the step
 * and analyse again, and after `maxHolds` stop holding it (HeldError). A run
 * interrupted or held resumes at its step.
 */
export async function start(ctx: RolloutContext, o: StartOptions): Promise<RolloutState> {
  let s = await state(ctx);
  const resumable = (s.phase === 'paused' || s.phase === 'held' || s.phase === 'progressing') && s.step >= 0;
  if (!resumable && s.phase !== 'canary-ready') {
    throw new RolloutError(
      `nothing to start: the rollout is ${s.phase}${s.canaryVersion ? ` (canary ${s.canaryVersion})` : ''}; run \`canary <version>\` first`,
    );
  }
  const version = s.canaryVersion as string;
  const current = (await labels(ctx)).canary;
  if (current !== version) {
    throw new RolloutError(
      `the canary label names ${current ?? 'nothing'}, not ${version}; run \`canary ${version}\` again`,
    );
  }
  const steps = resumable ? s.steps : o.steps;
  const first = resumable ? s.step : 0;
  if (resumable) ctx.out(`resuming at step ${first + 1} of ${steps.length} (${steps[first]}%)`);
  for (let i = first; i < steps.length; i++) {
    const weight = steps[i] as number;
    ctx.out(`step ${i + 1}/${steps.length}: canary ${weight}% (${ctx.model} ${version})`);
    s = await saveState(
      ctx.statePath,
      { ...s, phase: 'progressing', steps, step: i },
      'step',
      `canary ${weight}%`,
    );
    await setCanaryWeight(ctx, weight);
    const stepStart = Date.now();
    let failures = 0;
    let holds = 0;
    for (;;) {
      let a = await analyseOnce(ctx, o.intervalMs, s.stableBaseline);
      if (ctx.business.mode !== 'off' && a.verdict === 'pass') {
        a = withCheck(
          a,
          businessCheck(await businessReadout(ctx.business, { since: stepStart, canaryShare: weight / 100 })),
        );
      }
      printAnalysis(ctx, a);
      s = await saveState(
        ctx.statePath,
        { ...s, lastAnalysis: a, stableBaseline: nextBaseline(s, a) },
        'analysis',
        a.summary,
      );
      if (a.verdict === 'pass') break;
      if (a.verdict === 'fail') {
        failures++;
        holds = 0;
        if (failures >= o.failureThreshold) {
          ctx.out(`rolling back: ${a.summary}`);
          await setCanaryWeight(ctx, 0);
          await saveState(ctx.statePath, { ...s, phase: 'rolled-back' }, 'rollback', a.summary);
          throw new RolloutError(
            `rolled back at step ${i + 1} (canary ${weight}%): ${a.summary}. The canary weight is 0; the canary still serves ${version}`,
          );
        }
        ctx.out(`  failed check ${failures} of ${o.failureThreshold} before a rollback; checking again`);
        continue;
      }
      failures = 0;
      holds++;
      if (holds >= o.maxHolds) {
        await saveState(ctx.statePath, { ...s, phase: 'held' }, 'held', a.summary);
        throw new HeldError(
          `holding at step ${i + 1} (canary ${weight}%) after ${holds} inconclusive analyses: ${a.summary}. ` +
            'Send traffic and run `start` again to resume, or `rollback`',
        );
      }
      ctx.out(`  holding at canary ${weight}% (${holds} of ${o.maxHolds}): not advancing without a verdict`);
    }
  }
  s = await saveState(
    ctx.statePath,
    { ...s, phase: 'complete', step: steps.length - 1 },
    'complete',
    `every step passed; canary ${version} at ${steps.at(-1)}%`,
  );
  ctx.out(`every step passed: run \`promote\` to make ${version} the stable version`);
  return s;
}

/**
 * `promote`: the stable label takes the canary's version; once every stable
 * server serves it, traffic returns to the base split. If the stable servers
 * cannot serve it, the stable label goes back to the previous version.
 */
export async function promote(ctx: RolloutContext, force: boolean): Promise<RolloutState> {
  const s = await state(ctx);
  const l = await labels(ctx);
  const version = l.canary;
  if (!version) throw new RolloutError('there is no canary label to promote');
  if (!force && (s.phase !== 'complete' || s.canaryVersion !== version)) {
    throw new RolloutError(
      `the rollout of ${version} is ${s.canaryVersion === version ? s.phase : 'not started'}, not complete; ` +
        'finish `start` (every step passing), or `promote --force` to promote without it',
    );
  }
  if (ctx.business.mode === 'require' && !force) {
    const since = Date.parse([...s.history].reverse().find((h) => h.event === 'canary')?.at ?? '') || 0;
    const r = await businessReadout(ctx.business, {
      since,
      canaryShare: (s.steps.at(-1) ?? ctx.baseCanary) / 100,
    });
    const allowed = promoteAllowed(r);
    ctx.out(`business readout since the trial began: ${allowed.why}`);
    if (!allowed.ok) {
      throw new RolloutError(
        `--business require: not promoting ${version}: ${allowed.why} (promote --force overrides)`,
      );
    }
  }
  const previous = l.stable;
  await writeLabels(modelDir(ctx), { ...l, stable: version });
  ctx.out(`labels: stable ${previous ?? '(none)'} → ${version}`);
  try {
    await waitArmServes(ctx, 'stable', version);
  } catch (err) {
    if (previous) {
      await writeLabels(modelDir(ctx), { ...(await labels(ctx)), stable: previous });
      ctx.out(`labels: stable back to ${previous}`);
    }
    throw err;
  }
  await setCanaryWeight(ctx, ctx.baseCanary);
  return saveState(
    ctx.statePath,
    { ...s, phase: 'idle', stableVersion: version, step: -1, steps: [] },
    'promote',
    `stable label → ${version} (was ${previous}); every stable server serves it; base split restored`,
  );
}

/** `rollback`: canary weight 0 at once; says what the canary still serves. */
export async function rollback(ctx: RolloutContext, reason: string): Promise<RolloutState> {
  await setCanaryWeight(ctx, 0);
  const views = await servers(ctx.admin).catch(() => undefined);
  const serving = views?.canary
    .map((v) => `${v.address}: ${modelOn(v, ctx.model)?.servingVersion || '?'}`)
    .join(', ');
  ctx.out(`the canary still serves ${serving ?? '(servers did not answer)'}; no user is routed to it`);
  const s = await state(ctx);
  return saveState(ctx.statePath, { ...s, phase: 'rolled-back' }, 'rollback', reason);
}

/** What `status` reports. */
export interface Status {
  readonly weights: Weights | undefined;
  readonly routesVersion: string | undefined;
  readonly labels: VersionLabels;
  readonly servers: Record<Arm, ServerView[]>;
  readonly state: RolloutState;
}

export async function status(ctx: RolloutContext): Promise<Status> {
  const live = await ctx.admin.liveRoutes();
  return {
    weights: live?.weights,
    routesVersion: live?.version,
    labels: await labels(ctx),
    servers: await servers(ctx.admin),
    state: await state(ctx),
  };
}

export function printStatus(ctx: RolloutContext, st: Status): void {
  ctx.out(`weights:  ${describe(st.weights)} (routes version "${st.routesVersion ?? '-'}")`);
  ctx.out(
    `labels:   ${ctx.model}: ${
      Object.entries(st.labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(', ') || '(none: servers follow pins or latest)'
    }`,
  );
  for (const arm of ['stable', 'canary'] as const) {
    for (const v of st.servers[arm]) {
      const m = modelOn(v, ctx.model);
      const what = m
        ? `serves ${m.servingVersion || '(nothing)'} [${m.state}${m.problem ? `: ${m.problem}` : ''}], wants ${m.wantedVersion || 'latest'} (${m.wantedSource})`
        : `did not answer: ${v.error ?? 'no such model'}`;
      ctx.out(`${arm.padEnd(8)}  ${v.address} ${v.healthy ? 'healthy' : 'UNHEALTHY'}: ${what}`);
    }
  }
  const s = st.state;
  const step =
    s.step >= 0 && s.steps.length ? ` at step ${s.step + 1}/${s.steps.length} (${s.steps[s.step]}%)` : '';
  ctx.out(
    `rollout:  ${s.phase}${s.canaryVersion ? ` of ${s.canaryVersion}` : ''}${step}, updated ${s.updatedAt}`,
  );
  if (s.lastAnalysis) ctx.out(`last analysis: ${s.lastAnalysis.summary}`);
}
