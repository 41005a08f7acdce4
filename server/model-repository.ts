import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { BatchingConfig } from './config.js';
import { notFound, unavailable } from './errors.js';
import type { Metrics } from './metrics.js';
import { VERSION_PATTERN } from './model-manifest.js';
import { type ModelLease, ModelLoadError, ModelVersion, type SessionTuning } from './model-version.js';
import { MODEL_NAME } from './request-validation.js';

/** How the repository chooses and keeps versions. */
export interface RepositoryOptions {
  readonly root: string;
  /** Model name → pinned version; unpinned models serve their newest loaded version. */
  readonly pins: Readonly<Record<string, string>>;
  readonly maxLoadedVersions: number;
  readonly pollMs: number;
  readonly tuning: Omit<SessionTuning, 'batching'>;
  /** Dynamic batching per model name; absent = off. */
  readonly batching: Readonly<Record<string, BatchingConfig>>;
}

/** One model's loaded versions; replaced as a whole, never mutated, so a swap is atomic. */
interface ModelState {
  readonly versions: ReadonlyMap<string, ModelVersion>;
  readonly serving: ModelVersion | undefined;
}

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
  /** Versions that failed, keyed by directory, with the file fingerprint that failed. */
  private readonly failed = new Map<string, string>();
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
   * True while some model serves and every model that has served still does.
   * A model directory that never loaded (say, a new model whose first version
   * is broken) answers UNAVAILABLE on its own but does not take the whole
   * server out of rotation.
   */
  get ready(): boolean {
    const serving = [...this.knownModels].filter((m) => this.models.get(m)?.serving);
    return serving.length > 0 && [...this.everServed].every((m) => serving.includes(m));
  }

  /**
   * The version that answers a request: `version` if given and loaded, else
   * the one the policy serves. Throws NOT_FOUND naming what exists, or
   * UNAVAILABLE while the model has nothing loaded yet. The names must have
   * passed `checkModelRef` (request-validation.ts): they are echoed in messages.
   * For metadata only; a request that runs the model takes a `lease`.
   */
  resolve(model: string, version: string): ModelVersion {
    const state = this.models.get(model);
    if (!state?.serving) {
      if (this.knownModels.has(model)) {
        throw unavailable(`model "${model}" has no loaded version yet; retry shortly`);
      }
      const names = [...this.knownModels].sort();
      throw notFound(`unknown model "${model}"; models: ${names.length ? names.join(', ') : '(none)'}`);
    }
    if (version === '') return state.serving;
    const v = state.versions.get(version);
    if (!v) {
      const have = [...state.versions.keys()].sort().reverse().join(', ');
      throw notFound(`model "${model}" has no loaded version "${version}"; loaded: ${have}`);
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

  /** Snapshot of models and their loaded versions, newest first. */
  list(): { name: string; serving: ModelVersion | undefined; versions: ModelVersion[] }[] {
    return [...this.knownModels].sort().map((name) => {
      const s = this.models.get(name);
      const versions = s ? [...s.versions.values()].sort((a, b) => b.version.localeCompare(a.version)) : [];
      return { name, serving: s?.serving, versions };
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
      if (!this.knownModels.has(name)) await this.replace(name, { versions: new Map(), serving: undefined });
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
    const prev = this.models.get(name) ?? { versions: new Map<string, ModelVersion>(), serving: undefined };
    const pin = this.options.pins[name];
    const wanted = new Map<string, ModelVersion>();

    // The pinned version first, then the newest valid ones, up to the limit.
    const candidates = pin && onDisk.includes(pin) ? [pin, ...onDisk.filter((v) => v !== pin)] : onDisk;
    for (const version of candidates) {
      if (wanted.size >= this.options.maxLoadedVersions) break;
      const loaded = prev.versions.get(version) ?? (await this.tryLoad(name, version));
      if (loaded) wanted.set(version, loaded);
    }

    let serving: ModelVersion | undefined;
    if (pin) {
      serving = wanted.get(pin);
      if (!serving) {
        // Never go dark: keep what was serving, or the newest, and say so loudly.
        serving = (prev.serving && wanted.get(prev.serving.version)) ?? [...wanted.values()][0];
        if (serving !== prev.serving || !this.failed.has(`pin:${name}`)) {
          this.logger.error(
            { model: name, pinned: pin, serving: serving?.version },
            'pinned version is not loadable; serving another version',
          );
          this.failed.set(`pin:${name}`, pin);
        }
      } else {
        this.failed.delete(`pin:${name}`);
      }
    } else {
      serving = [...wanted.values()][0];
    }

    const changed =
      serving !== prev.serving ||
      wanted.size !== prev.versions.size ||
      [...wanted.keys()].some((v) => !prev.versions.has(v));
    if (changed) await this.replace(name, { versions: wanted, serving });
  }

  /** Swaps the model's state in one assignment, then retires what dropped out. */
  private async replace(name: string, next: ModelState): Promise<void> {
    const prev = this.models.get(name);
    if (next.versions.size === 0 && !next.serving) this.models.delete(name);
    else this.models.set(name, next);
    if (next.serving) this.everServed.add(name);
    if (!this.knownModels.has(name)) this.everServed.delete(name);
    this.metrics.modelVersionInfo.reset();
    for (const [model, state] of this.models) {
      for (const v of state.versions.values()) {
        this.metrics.modelVersionInfo.set(
          { model, version: v.version, state: v === state.serving ? 'serving' : 'loaded' },
          1,
        );
      }
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
    if (this.failed.get(dir) === fp) return undefined;
    const t0 = performance.now();
    try {
      const v = await ModelVersion.load(
        dir,
        { name, version },
        {
          ...this.options.tuning,
          batching: this.options.batching[name],
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
      this.failed.set(dir, fp);
      this.metrics.modelLoads.inc({ model: name, version, result: 'failure' });
      const reason = err instanceof ModelLoadError ? err.message : String(err);
      this.logger.error(
        { model: name, version, reason },
        'model version failed to load; previous version keeps serving',
      );
      return undefined;
    }
  }
}
