/**
 * The process entry point: the only module that reads `process.env`, installs
 * signal handlers or calls `process.exit`.
 */
import { createApp } from './app.js';
import { ConfigError, loadConfig } from './config.js';
import { createLogger } from './logger.js';

async function main(): Promise<void> {
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
  const logger = await createLogger(config.log);
  const app = createApp(config, { logger });

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      logger.warn({ signal }, 'second signal: exiting now');
      setTimeout(() => process.exit(1), 1000).unref(); // if the flush cannot finish
      logger.flush(() => process.exit(1));
    }
    logger.info({ signal }, 'signal received; shutting down');
    app.stop().then(
      () => logger.flush(() => process.exit(0)),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        logger.flush(() => process.exit(1));
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  try {
    await app.start();
  } catch (err) {
    logger.fatal({ err }, 'start-up failed');
    logger.flush(() => process.exit(1));
  }
}

void main();
