/**
 * The process entry point: the only module that reads `process.env`, installs
 * signal handlers or calls `process.exit`.
 */
import { createApp } from './app.js';
import { CONFIG_DEFAULTS, ConfigError, loadConfig } from './config.js';
import { createLogger } from './logger.js';

/** `--help`: the server takes no arguments; it is configured by environment (or CONFIG_FILE). */
function usage(): string {
  const width = Math.max(...Object.keys(CONFIG_DEFAULTS).map((k) => k.length));
  const rows = Object.entries(CONFIG_DEFAULTS).map(
    ([k, v]) => `  ${k.padEnd(width)}  ${v === '' ? '(unset)' : v}`,
  );
  return [
    'Usage: npm run serve    (or: node dist/server/main.js)',
    '',
    'The inference server. It takes no arguments: it is configured by environment',
    'variables, or a file named by CONFIG_FILE (see README, Configuration). A bad value',
    'stops it with one sentence naming the variable, exit code 2.',
    '',
    'Variables and their defaults:',
    ...rows,
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(usage());
    return;
  }
  if (args.length > 0) {
    process.stderr.write(
      `serve: Unknown option '${args[0]}' (the server takes none: it is configured by environment variables).\nSee: npm run serve -- --help\n`,
    );
    process.exit(2);
  }
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`config error: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const { logger, output } = await createLogger(config.log);
  const app = createApp(config, { logger, logOutput: output });

  // Every exit writes what the logs hold first, bounded in time: a full disk
  // or a stalled stdout must not keep the process alive. A later call (a
  // second signal during shutdown) can only raise the exit code.
  let exitCode: number | undefined;
  const exit = (code: number) => {
    const first = exitCode === undefined;
    exitCode = Math.max(exitCode ?? 0, code);
    if (!first) return;
    setTimeout(() => process.exit(exitCode), config.log.flushTimeoutMs + 500).unref();
    void output.flush(config.log.flushTimeoutMs).finally(() => {
      output.close();
      process.exit(exitCode);
    });
  };

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      logger.warn({ signal }, 'second signal: exiting now');
      exit(1);
      return;
    }
    logger.info({ signal }, 'signal received; shutting down');
    app.stop().then(
      () => exit(0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  try {
    await app.start();
  } catch (err) {
    logger.fatal({ err }, 'start-up failed');
    exit(1);
  }
}

void main();
