/**
 * What the commands share around their own work: options or an exit status
 * (`--help` to stdout, a bad option named on stderr), Ctrl-C that stops the
 * load and still reports, and `main`'s exit code.
 *
 * Exit statuses: 0 done (or --help), 1 a target missed or interrupted,
 * 2 bad options, 3 could not run; 130 for a second Ctrl-C, as a shell reports
 * a process killed by SIGINT (128 + 2).
 */
import { pathToFileURL } from 'node:url';

/** A bad command line: one sentence naming the option and what was expected. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/**
 * True when `moduleUrl` (the caller's `import.meta.url`) is the script node was
 * started with, so a module can be imported by tests without running.
 */
export function isMain(moduleUrl: string): boolean {
  return moduleUrl === pathToFileURL(process.argv[1] ?? '').href;
}

/** An npm script's name (`bench`), its usage text and its argv parser. */
export interface Command<T extends { readonly help: boolean }> {
  readonly name: string;
  readonly usage: string;
  /** Throws `UsageError` with one sentence on bad options. */
  readonly parse: (argv: readonly string[]) => T;
}

/**
 * Names a bad command line on stderr, the one way every command does: the
 * sentence, then where the usage is. Returns 2, the exit status for it.
 */
export function usageFailure(name: string, message: string): number {
  const run = name === 'start' ? 'npm start' : `npm run ${name}`;
  process.stderr.write(`${name}: ${message}\nSee: ${run} -- --help\n`);
  return 2;
}

/**
 * The command's options, or the exit status when there is nothing to run:
 * 0 after printing the usage for --help (to stdout), 2 after naming a bad
 * option on stderr.
 */
export function optionsOrExit<T extends { readonly help: boolean }>(
  command: Command<T>,
  argv: readonly string[],
): T | number {
  let opts: T;
  try {
    opts = command.parse(argv);
  } catch (err) {
    if (err instanceof UsageError) return usageFailure(command.name, err.message);
    throw err;
  }
  if (opts.help) {
    process.stdout.write(`${command.usage}\n`);
    return 0;
  }
  return opts;
}

/**
 * A signal the first SIGINT or SIGTERM aborts, so the command stops its load
 * and still reports what ran; `onInterrupt` runs right after, with the
 * signal's name. A second one exits at once with 130.
 */
export function abortOnSignals(onInterrupt: (sig: NodeJS.Signals) => void): AbortSignal {
  const controller = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    if (controller.signal.aborted) process.exit(130);
    controller.abort();
    onInterrupt(sig);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return controller.signal;
}

/**
 * Runs `main` with the command line when `moduleUrl` (the caller's
 * `import.meta.url`) is the script node was started with, so tests can import
 * the module without running it. The exit code is `main`'s; a crash prints
 * its stack after `name:` and exits 1.
 */
export function runIfMain(
  moduleUrl: string,
  name: string,
  main: (argv: readonly string[]) => Promise<number>,
): void {
  if (!isMain(moduleUrl)) return;
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`${name}: ${(err as Error).stack ?? String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
