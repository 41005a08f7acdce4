/**
 * The readout's engine: DuckDB, embedded (`@duckdb/node-api`; the Linux x64
 * binary arrives from npm as an optional package, nothing is downloaded at
 * run time). Why DuckDB: its JSON reader parses newline-delimited logs,
 * gzip included, on every core, reading only the fields a query names; its
 * hash joins and aggregates spill to disk past a memory limit, so 10 M
 * prediction lines and 1 M outcomes fit in a bounded footprint; and the join
 * is a page of SQL (sql.ts) instead of a hand-written reader holding every
 * user in a JavaScript Map.
 *
 * Each readout opens its own database in a fresh temporary directory (a file,
 * so tables live on disk and only the buffer pool counts against the limit)
 * and removes it when done.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import { settings } from './sql.js';

export interface EngineOptions {
  /** DuckDB's `memory_limit` (default `1GB`): past it, joins and aggregates spill to disk. */
  readonly memoryLimit: string;
  /** Worker threads (default: 2, the cores of the machines this runs on). */
  readonly threads: number;
  /** Where the database and its spill files go (default: the OS temp directory). */
  readonly tempRoot?: string;
}

export const DEFAULT_ENGINE_OPTIONS: EngineOptions = { memoryLimit: '1GB', threads: 2 };

/** A value DuckDB returned, as JavaScript sees it after the statements' casts. */
export type Cell = string | number | boolean | null;
export type Row = Readonly<Record<string, Cell>>;

/** One DuckDB database for one readout. */
export class Engine {
  /** Each statement's first line and its wall time in ms, in order (the benchmark prints them). */
  readonly timings: { statement: string; ms: number }[] = [];

  private constructor(
    private readonly instance: DuckDBInstance,
    private readonly connection: DuckDBConnection,
    /** The temporary directory: the database file, spill files and staged inputs. */
    readonly dir: string,
  ) {}

  static async open(options: EngineOptions = DEFAULT_ENGINE_OPTIONS): Promise<Engine> {
    const dir = mkdtempSync(join(options.tempRoot ?? tmpdir(), 'ab-readout-'));
    try {
      const instance = await DuckDBInstance.create(join(dir, 'readout.duckdb'));
      const connection = await instance.connect();
      const engine = new Engine(instance, connection, dir);
      for (const s of settings({ ...options, tempDir: join(dir, 'spill') })) await engine.run(s);
      return engine;
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /** Runs one statement. */
  async run(sql: string): Promise<void> {
    await this.named(sql, () => this.connection.run(sql));
  }

  /** Runs one query and returns its rows (the statements cast numbers to DOUBLE, so no BigInt). */
  async rows(sql: string): Promise<Row[]> {
    const reader = await this.named(sql, () => this.connection.runAndReadAll(sql));
    return reader.getRowObjectsJS() as Row[];
  }

  /** A failed statement's error names the statement (its first line), so a report says which step broke. */
  private async named<T>(sql: string, work: () => Promise<T>): Promise<T> {
    const head = sql.trimStart().split('\n', 1)[0] ?? '';
    const t0 = performance.now();
    try {
      return await work();
    } catch (err) {
      throw new Error(`${(err as Error).message.trim()} (in: ${head})`, { cause: err });
    } finally {
      this.timings.push({ statement: head, ms: performance.now() - t0 });
    }
  }

  /** Closes the database and removes its directory. */
  close(): void {
    try {
      this.connection.closeSync();
      this.instance.closeSync();
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}
