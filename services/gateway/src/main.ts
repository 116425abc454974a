// Composition root: the process. Reads the environment (the only place that does), starts one node, and
// drains it on SIGTERM/SIGINT.
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, loadConfig } from './config';
import { createLogger } from './logger';
import { startServer } from './server';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env, () => randomBytes(32).toString('base64url'));
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`configuration error: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  if (!config.staticDir) {
    // dist/gateway/main.js serves dist/web.
    config = Object.freeze({
      ...config,
      staticDir: join(dirname(fileURLToPath(import.meta.url)), '..', 'web'),
    });
  }
  const log = createLogger(config.logLevel, config.nodeId);
  if (config.jwt.dev) {
    log.warn(
      'DEV MODE: no JWT_SECRET or JWT_PUBLIC_KEY set; tokens are signed with a random per-process secret and ' +
        'POST /dev/token mints them for anyone. Never run like this in production (NODE_ENV=production refuses to).',
    );
  }
  const server = await startServer(config, log);
  // A safety net, not a design: every promise is handled where it is made. Node would exit on an unhandled
  // rejection; a node must never exit because of anything a client sends.
  process.on('unhandledRejection', (err) => server.unhandledRejection(err));
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    const force = setTimeout(() => {
      log.error('drain did not finish in time; exiting');
      process.exit(1);
    }, config.shutdownGraceMs + 5000);
    force.unref();
    server.drain().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'drain failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err: unknown) => {
  process.stderr.write(`fatal: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
