import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { type BatchingConfig, batchingFor } from './config.js';
import { notFound, unavailable } from './errors.js';
import type { Metrics } from './metrics.js';
import { VERSION_PATTERN } from './model-manifest.js';
import { type ModelLease, ModelLoadError, ModelVersion, type SessionTuning } from './model-version.js';
import { MODEL_NAME } from './request-validation.js';
import { readLabels, type VersionLabels } from './version-labels.js';

/** How the repository chooses and keeps versions. */
export interface RepositoryOptions {
  readonly root: string;
  /**
   * The version label this server follows (its role by default): a model with a
   * labels.json serves the version under this label, and nothing else.
   */
  readonly label: string;
  /** This server's A/B arm, named in NOT_FOUND messages (the client sees `x-ab-arm` too). */
  readonly arm: string;
  /** Model name → pinned version, for models without labels; the rest serve their newest loadable version. */
  readonly pins: Readonly<Record<string, string>>;
  readonly maxLoadedVersions: number;
  readonly pollMs: number;
  readonly tuning: Omit<SessionTuning, 'batching'>;
  /** Dynamic batching per model name, `*` for every other model (`batchingFor`); absent = off. */
  readonly batching: Readonly<Record<string, BatchingConfig>>;
}

/** Where a model's wanted version comes from. */
export type WantedSource = 'label' | 'pin' | 'latest';

/** What a model should serve, and whether it does. */
export interface Wanted {
  /** The version the label or pin names; undefined under `latest` (the newest loadable one). */
  readonly version: string | undefined;
  readonly source: WantedSource;
  /** Why the wanted version is not the serving one (missing, refused at load, unreadable labels…). */
  readonly problem: string | undefined;
}

/** One model's loaded versions; replaced as a whole, never mutated, so a swap is atomic. */
interface ModelState {
  readonly versions: ReadonlyMap<string, ModelVersion>;
  readonly serving: ModelVersion | undefined;
  readonly wanted: Wanted;
  readonly labels: VersionLabels;
}

/** A model as `list()` reports it. */
export interface ModelStatus {
  readonly name: string;
  readonly serving: ModelVersion | undefined;
  /** Loaded versions, newest first. */
  readonly versions: readonly ModelVersion[];
  readonly wanted: Wanted;
  readonly labels: VersionLabels;
}

const NO_LABELS: VersionLabels = Object.freeze({});

/**
 * The versioned model repository on disk (`<root>/<model>/<version>/`).
 *
 * A poll loop picks up new and removed version directories while the server
 * runs. Each new version is loaded, verified and warmed up off the request path
 * (`ModelVersion.load`), then swapped in by replacing the model's state object.
 * Requests that already hold the old version finish on it; it is released when
 * the last one lets go. A version that fails to load is logged at ERROR, counted
 * in `inference_model_loads_total{result="failure"}`, and not retried until its
 * files change, while the previous version keeps serving.
 */
export class ModelRepository {
  private models = new Map<string, ModelState>();
  /** Versions that failed, keyed by directory, with the file fingerprint that failed and why. */
  private readonly failed = new Map<string, { fingerprint: string; reason: string }>();
  /** The last problem logged per model, so a persisting one is logged once, not every poll. */
  private readonly reported = new Map<string, string>();
  private knownModels = new Set<string>();
  /** Models that have had a serving version since start-up (removed directories drop out). */
  private readonly everServed = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private scanning: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly options: RepositoryOptions,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
  ) {}

  /** Loads what is on disk now, then keeps polling for changes. */
  async start(): Promise<void> {
    await this.scan();
    if (this.stopped) return;
    const tick = () => {
      this.timer = setTimeout(() => {
        void this.scan().finally(() => {
          if (!this.stopped) tick();
        });
      }, this.options.pollMs);
      this.timer.unref();
    };
    tick();
  }

  /** Stops picking up changes (no new loads); what is loaded keeps serving. */
  stopPolling(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** Stops polling and releases every session once its requests are done. */
  async stop(): Promise<void> {
    this.stopPolling();
    await this.scanning;
    const all = [...this.models.values()].flatMap((s) => [...s.versions.values()]);
    this.models = new Map();
    await Promise.all(all.map((v) => v.retire()));
  }

  /**
   * True while some model serves, every model that has served still does, and
   * every model with a label or pin serves something (fail closed: a canary
   * whose labelled version cannot load at start-up stays out of rotation, and
   * Envoy sends its share to stable). A model without labels or pins whose
   * first version is broken answers UNAVAILABLE on its own but does not take
   * the whole server out of rotation.
   */
  get ready(): boolean {
    const serving = [...this.knownModels].filter((m) => this.models.get(m)?.serving);
    if (serving.length === 0 || ![...this.everServed].every((m) => serving.includes(m))) return false;
    return [...this.models].every(([, st]) => st.serving !== undefined || st.wanted.source === 'latest');
  }

  /**
   * The version that answers a request: `version` if given and loaded, else
   * the one the label or policy serves. Throws NOT_FOUND naming what this
   * server holds and its arm, or
   * UNAVAILABLE while the model has nothing loaded yet. The names must have
   * passed `checkModelRef` (request-validation.ts): they are echoed in messages.
   * For metadata only; a request that runs the model takes a `lease`.
   */
  resolve(model: string, version: string): ModelVersion {
    const state = this.models.get(model);
    if (!state?.serving) {
      if (this.knownModels.has(model)) {
        const why = state?.wanted.problem;
        throw unavailable(
          why
            ? `model "${model}" has nothing to serve on this server (arm ${this.options.arm}): ${why}`
            : `model "${model}" has no loaded version yet; retry shortly`,
        );
      }
      const names = [...this.knownModels].sort();
      throw notFound(`unknown model "${model}"; models: ${names.length ? names.join(', ') : '(none)'}`);
    }
    if (version === '') return state.serving;
    const v = state.versions.get(version);
    if (!v) {
      const have = [...state.versions.keys()]
        .sort()
        .reverse()
        .map((x) => (x === state.serving?.version ? `${x} (serving)` : x))
        .join(', ');
      throw notFound(
        `model "${model}" has no version "${version}" on this server (arm ${this.options.arm}); it holds ${have}`,
      );
    }
    return v;
  }

  /**
   * Resolves like `resolve` and leases the version in the same synchronous
   * step, so no retirement can slip between the lookup and the hold. The
   * caller releases the lease when its request is done.
   */
  lease(model: string, version: string): ModelLease {
    return this.resolve(model, version).lease();
  }

  /** Snapshot of every model: serving, loaded versions (newest first), wanted, labels. */
  list(): ModelStatus[] {
    return [...this.knownModels].sort().map((name) => {
      const s = this.models.get(name);
      const versions = s ? [...s.versions.values()].sort((a, b) => b.version.localeCompare(a.version)) : [];
      return {
        name,
        serving: s?.serving,
        versions,
        wanted: s?.wanted ?? { version: undefined, source: 'latest', problem: undefined },
        labels: s?.labels ?? NO_LABELS,
      };
    });
  }

  /** One pass over the repository. Concurrent callers share the running pass. */
  scan(): Promise<void> {
    this.scanning ??= this.scanOnce().finally(() => {
      this.scanning = undefined;
    });
    return this.scanning;
  }

  private async scanOnce(): Promise<void> {
    let names: string[];
    try {
      names = (await readdir(this.options.root, { withFileTypes: true }))
        .filter((d) => d.isDirectory() && MODEL_NAME.test(d.name))
        .map((d) => d.name);
    } catch (err) {
      this.logger.error({ err, root: this.options.root }, 'cannot read the model repository');
      return;
    }
    this.knownModels = new Set(names);
    for (const name of names) {
      if (this.stopped) return;
      await this.scanModel(name);
    }
    for (const name of [...this.models.keys()]) {
      if (!this.knownModels.has(name))
        await this.replace(name, {
          versions: new Map(),
          serving: undefined,
          wanted: { version: undefined, source: 'latest', problem: undefined },
          labels: NO_LABELS,
        });
    }
  }

  private async scanModel(name: string): Promise<void> {
    const modelDir = join(this.options.root, name);
    let onDisk: string[];
    try {
      onDisk = (await readdir(modelDir, { withFileTypes: true }))
        .filter((d) => d.isDirectory() && VERSION_PATTERN.test(d.name))
        .map((d) => d.name)
        .sort()
        .reverse();
    } catch (err) {
      this.logger.error({ err, model: name }, 'cannot read the model directory');
      return;
    }
    const prev = this.models.get(name);
    const prevVersions = prev?.versions ?? new Map<string, ModelVersion>();

    // What to serve: the label of this server's role, else the pin, else the newest.
    let labels: VersionLabels = NO_LABELS;
    let labelsProblem: string | undefined;
    try {
      labels = (await readLabels(modelDir)) ?? NO_LABELS;
    } catch (err) {
      // Fail closed: an unreadable labels.json changes nothing that serves.
      labelsProblem = (err as Error).message;
      labels = prev?.labels ?? NO_LABELS;
    }
    const hasLabels = labelsProblem !== undefined || Object.keys(labels).length > 0;
    const target: { version: string | undefined; source: WantedSource } = hasLabels
      ? { version: labels[this.options.label], source: 'label' }
      : this.options.pins[name]
        ? { version: this.options.pins[name], source: 'pin' }
        : { version: undefined, source: 'latest' };

    // Load, in this order: the wanted version, every labelled one (never evicted),
    // then the newest others up to MODEL_MAX_LOADED_VERSIONS.
    const keep = new Map<string, ModelVersion>();
    const load = async (version: string) => {
      if (keep.has(version) || !onDisk.includes(version)) return;
      const loaded = prevVersions.get(version) ?? (await this.tryLoad(name, version));
      if (loaded) keep.set(version, loaded);
    };
    if (target.version) await load(target.version);
    for (const v of new Set(Object.values(labels))) await load(v);
    // Under a label or pin, the version serving now stays loaded until the wanted one serves (fail closed).
    if (prev?.serving && target.source !== 'latest') await load(prev.serving.version);
    for (const version of onDisk) {
      if (keep.size >= this.options.maxLoadedVersions) break;
      await load(version);
    }

    let serving: ModelVersion | undefined;
    let problem: string | undefined;
    if (target.source === 'latest') {
      serving = onDisk.map((v) => keep.get(v)).find((v) => v !== undefined);
    } else {
      const why =
        labelsProblem ??
        (target.version === undefined
          ? `labels.json has no label "${this.options.label}" (it has ${Object.keys(labels).join(', ') || 'none'})`
          : !onDisk.includes(target.version)
            ? `the ${target.source} names ${target.version}, which is not in the repository`
            : keep.has(target.version)
              ? undefined
              : `the ${target.source} names ${target.version}, which failed to load: ${this.failed.get(join(modelDir, target.version))?.reason ?? 'see the load error above'}`);
      if (why === undefined) {
        serving = keep.get(target.version as string);
      } else {
        // Fail closed: keep what serves now (never switch to some other version); at start-up, nothing.
        problem = why;
        // (A serving version whose directory was removed cannot be kept either, and nothing takes its place.)
        serving = prev?.serving && keep.has(prev.serving.version) ? prev.serving : undefined;
      }
    }
    const wanted: Wanted = { version: target.version, source: target.source, problem };
    this.reportProblem(name, wanted, serving);

    const changed =
      !prev ||
      serving !== prev.serving ||
      keep.size !== prevVersions.size ||
      [...keep.keys()].some((v) => !prevVersions.has(v)) ||
      prev.wanted.version !== wanted.version ||
      prev.wanted.source !== wanted.source ||
      prev.wanted.problem !== wanted.problem ||
      JSON.stringify(prev.labels) !== JSON.stringify(labels);
    if (changed) await this.replace(name, { versions: keep, serving, wanted, labels });
  }

  /** Logs a wanted-version problem at ERROR once per distinct problem, and its end at INFO. */
  private reportProblem(name: string, wanted: Wanted, serving: ModelVersion | undefined): void {
    const key = wanted.problem === undefined ? '' : `${wanted.problem}|${serving?.version ?? ''}`;
    if ((this.reported.get(name) ?? '') === key) return;
    if (wanted.problem !== undefined) {
      this.logger.error(
        {
          model: name,
          wanted: wanted.version ?? null,
          source: wanted.source,
          serving: serving?.version ?? null,
          problem: wanted.problem,
        },
        serving
          ? 'wanted version cannot be served; keeping the version that serves now'
          : 'wanted version cannot be served; this model answers UNAVAILABLE',
      );
    } else if (this.reported.has(name)) {
      this.logger.info({ model: name, serving: serving?.version ?? null }, 'wanted version is serving again');
    }
    if (key === '') this.reported.delete(name);
    else this.reported.set(name, key);
  }

  /** Swaps the model's state in one assignment, then retires what dropped out. */
  private async replace(name: string, next: ModelState): Promise<void> {
    const prev = this.models.get(name);
    if (next.versions.size === 0 && !next.serving && next.wanted.problem === undefined)
      this.models.delete(name);
    else this.models.set(name, next);
    if (next.serving) this.everServed.add(name);
    if (!this.knownModels.has(name)) this.everServed.delete(name);
    this.metrics.modelVersionInfo.reset();
    this.metrics.modelVersionWanted.reset();
    this.metrics.modelVersionMismatch.reset();
    for (const [model, state] of this.models) {
      for (const v of state.versions.values()) {
        this.metrics.modelVersionInfo.set(
          { model, version: v.version, state: v === state.serving ? 'serving' : 'loaded' },
          1,
        );
      }
      const wantedVersion = state.wanted.version ?? state.serving?.version;
      if (wantedVersion) {
        this.metrics.modelVersionWanted.set(
          { model, version: wantedVersion, source: state.wanted.source },
          1,
        );
      }
      this.metrics.modelVersionMismatch.set({ model }, state.wanted.problem === undefined ? 0 : 1);
    }
    if (prev?.serving !== next.serving) {
      this.logger.info(
        { model: name, from: prev?.serving?.version ?? null, to: next.serving?.version ?? null },
        'serving version swapped',
      );
    }
    const dropped = prev ? [...prev.versions.values()].filter((v) => !next.versions.has(v.version)) : [];
    for (const v of dropped) {
      this.logger.info(
        { model: name, version: v.version },
        'version unloaded; released when its requests finish',
      );
      await v.retire();
    }
  }

  private async fingerprint(dir: string): Promise<string> {
    const parts = await Promise.all(
      ['model.json', 'model.onnx', 'golden.json'].map((f) =>
        stat(join(dir, f)).then(
          (s) => `${f}:${s.size}:${s.mtimeMs}`,
          () => `${f}:-`,
        ),
      ),
    );
    return parts.join('|');
  }

  private async tryLoad(name: string, version: string): Promise<ModelVersion | undefined> {
    const dir = join(this.options.root, name, version);
    const fp = await this.fingerprint(dir);
    if (this.failed.get(dir)?.fingerprint === fp) return undefined;
    const t0 = performance.now();
    try {
      const v = await ModelVersion.load(
        dir,
        { name, version },
        {
          ...this.options.tuning,
          batching: batchingFor(this.options.batching, name),
          observeRun: (model, v, rows, seconds) => {
            this.metrics.inferenceDuration.observe({ model, version: v }, seconds);
            this.metrics.batchSize.observe({ model }, rows);
          },
        },
      );
      this.failed.delete(dir);
      this.metrics.modelLoads.inc({ model: name, version, result: 'success' });
      this.logger.info(
        {
          model: name,
          version,
          family: v.manifest.family,
          threshold: v.manifest.threshold,
          loadMs: Math.round(performance.now() - t0),
        },
        'model version loaded and warmed up',
      );
      return v;
    } catch (err) {
      const reason = err instanceof ModelLoadError ? err.message : String(err);
      this.failed.set(dir, { fingerprint: fp, reason });
      this.metrics.modelLoads.inc({ model: name, version, result: 'failure' });
      this.logger.error({ model: name, version, reason }, 'model version failed to load; it will not serve');
      return undefined;
    }
  }
}
