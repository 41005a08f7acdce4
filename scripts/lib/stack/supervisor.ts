/**
 * The local stack's children and their order of stopping. The servers and
 * Envoy run in their own process groups (a terminal's Ctrl-C reaches only the
 * stack), so the stack stops them itself: the servers first, which drain
 * while Envoy still answers, then Envoy. A first SIGINT or SIGTERM starts
 * that; a second one more than a second later kills everything at once (a
 * terminal and npm may both deliver the same Ctrl-C). If the stack dies
 * anyway, its exit takes the children down with SIGKILL.
 */
import type { ChildProcess } from 'node:child_process';
import { exitText } from '../children.js';

/** One supervised child. */
export interface Child {
  readonly name: string;
  readonly proc: ChildProcess;
  /** Resolves once it has exited, with how (`code 0`, `signal SIGKILL`). */
  readonly exited: Promise<string>;
  /** Stopped last (Envoy), after every other child has exited. */
  readonly last: boolean;
  running: boolean;
}

export class Supervisor {
  private readonly children: Child[] = [];
  private readonly stops = new Map<Child, () => Promise<unknown>>();
  private stopping: Promise<number> | undefined;
  private firstSignalAt = 0;

  constructor(private readonly say: (line: string) => void) {
    process.once('exit', () => this.killAll());
  }

  /** True once a child has been added. */
  get hasChildren(): boolean {
    return this.children.length > 0;
  }

  /**
   * Supervises `proc` from now on. `stop` ends it gracefully and resolves
   * once it has exited; `last` children are stopped after all others.
   */
  add(name: string, proc: ChildProcess, stop: () => Promise<unknown>, last = false): Child {
    const child: Child = {
      name,
      proc,
      last,
      running: proc.exitCode === null && proc.signalCode === null,
      exited: new Promise((resolve) => {
        if (proc.exitCode !== null || proc.signalCode !== null)
          resolve(exitText(proc.exitCode, proc.signalCode));
        else proc.once('exit', (code, signal) => resolve(exitText(code, signal)));
      }),
    };
    void child.exited.then(() => {
      child.running = false;
    });
    this.stops.set(child, stop);
    this.children.push(child);
    return child;
  }

  /** Calls `then` when `child` exits on its own (not while the stack stops). */
  onUnexpectedExit(child: Child, then: (how: string) => void): void {
    void child.exited.then((how) => {
      if (!this.stopping) then(how);
    });
  }

  /**
   * Stops every child in order (once; later calls get the same promise) and
   * resolves with `code`: first all but the `last` ones, in parallel, then
   * the `last` ones.
   */
  stopAll(reason: string, code: number): Promise<number> {
    this.stopping ??= (async () => {
      this.say(`stopping (${reason}): servers first, so they drain while Envoy still answers, then Envoy`);
      for (const wave of [false, true]) {
        await Promise.all(
          this.children
            .filter((c) => c.last === wave && c.running)
            .map(async (c) => {
              await this.stops.get(c)?.();
              this.say(`${c.name} exited (${await c.exited})`);
            }),
        );
      }
      this.say('stopped');
      return code;
    })();
    return this.stopping;
  }

  /** SIGKILL to every child still running. */
  killAll(): void {
    for (const c of this.children) if (c.running) c.proc.kill('SIGKILL');
  }

  /** SIGINT and SIGTERM stop the stack and exit with 0; a second signal kills everything and exits 1. */
  handleSignals(): void {
    const onSignal = (signal: NodeJS.Signals) => {
      const now = Date.now();
      if (this.firstSignalAt !== 0 && now - this.firstSignalAt > 1000) {
        this.say(`${signal} again: killing everything now`);
        this.killAll();
        process.exit(1);
      }
      if (this.firstSignalAt === 0) {
        this.firstSignalAt = now;
        void this.stopAll(signal, 0).then((code) => process.exit(code));
      }
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }
}
