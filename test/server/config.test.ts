import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { batchingFor, ConfigError, loadConfig } from '../../server/config.js';

describe('config', () => {
  it('has the documented defaults', () => {
    const c = loadConfig({}, '/srv');
    expect(c.port).to.equal(50051);
    expect(c.metricsPort).to.equal(9464);
    expect(c.maxBatchInstances).to.equal(256);
    expect(c.maxMessageBytes).to.equal(4 * 1024 * 1024);
    expect(c.drainMs).to.equal(5000);
    expect(c.versionPolicy.pins).to.deep.equal({});
    expect(c.role).to.equal('stable');
    expect(c.experiment.share).to.equal(0.5);
    expect(c.log.retainDays).to.equal(3);
    expect(c.log.rotate).to.equal('daily');
    expect(c.modelRoot).to.equal('/srv/models');
    expect(c.log.archiveDir).to.equal('/srv/logs/archive');
  });

  it('is frozen, deeply', () => {
    const c = loadConfig({});
    expect(Object.isFrozen(c)).to.equal(true);
    expect(Object.isFrozen(c.log)).to.equal(true);
    expect(Object.isFrozen(c.versionPolicy.pins)).to.equal(true);
  });

  const bad: [string, string, RegExp][] = [
    ['GRPC_PORT', '70000', /^GRPC_PORT must be an integer from 0 to 65535, got "70000"\.$/],
    ['GRPC_PORT', 'abc', /^GRPC_PORT must be an integer/],
    ['DRAIN_MS', '1.5', /^DRAIN_MS must be an integer/],
    ['ROLE', 'beta', /^ROLE must be one of stable, canary, got "beta"\.$/],
    ['EXPERIMENT_SHARE', '1.2', /^EXPERIMENT_SHARE must be a number from 0 to 1/],
    ['MODEL_VERSION_POLICY', 'conversion=yesterday', /^MODEL_VERSION_POLICY must be "latest" or/],
    ['LOG_LEVEL', 'verbose', /^LOG_LEVEL must be one of debug, info, warn, error/],
    ['LOG_STDOUT', 'maybe', /^LOG_STDOUT must be true or false/],
    ['LOG_ROTATE', 'weekly', /^LOG_ROTATE must be daily, hourly or a period/],
    ['LOG_REDACT_FIELDS', 'a.b', /^LOG_REDACT_FIELDS must be comma-separated field names/],
    ['MODEL_BATCHING', 'conversion=8', /^MODEL_BATCHING must be/],
    ['INFERENCE_WORKERS', '-1', /^INFERENCE_WORKERS must be an integer from 0 to 64/],
    ['MODEL_VERSION_POLICY', 'a=20261120T101500Z,a=20261121T101500Z', /pins model "a" twice/],
    ['MODEL_BATCHING', 'a=8/1ms,a=16/1ms', /configures model "a" twice/],
    ['MODEL_BATCHING', 'a=1/1ms', /^MODEL_BATCHING must be/],
    ['MODEL_BATCHING', '**=8/0ms', /^MODEL_BATCHING must be/],
    ['EXPERIMENT_NAME', ' ', /^EXPERIMENT_NAME must not be empty/],
    ['GRPC_HOST', 'bad host', /^GRPC_HOST must be a host name or an IPv4\/IPv6 address/],
  ];
  for (const [key, value, message] of bad) {
    it(`rejects ${key}=${value} with one sentence naming the variable`, () => {
      expect(() => loadConfig({ [key]: value }))
        .to.throw(ConfigError)
        .with.property('message')
        .that.matches(message);
    });
  }

  it('accepts IPv6 hosts, with or without brackets', () => {
    expect(loadConfig({ GRPC_HOST: '::1' }).host).to.equal('::1');
    expect(loadConfig({ GRPC_HOST: '[::1]' }).host).to.equal('::1');
  });

  it('parses pins, batching and redaction', () => {
    const c = loadConfig({
      MODEL_VERSION_POLICY: 'conversion=20261120T101500Z,other=20261121T000000Z',
      MODEL_BATCHING: 'conversion=32/2ms',
      LOG_REDACT_FIELDS: 'userId, deviceName',
      LOG_ROTATE: '500',
    });
    expect(c.versionPolicy.pins).to.deep.equal({ conversion: '20261120T101500Z', other: '20261121T000000Z' });
    expect(c.batching).to.deep.equal({ conversion: { maxBatchSize: 32, maxQueueDelayMs: 2 } });
    expect(c.log.redactFields).to.deep.equal(['userId', 'deviceName']);
    expect(c.log.rotate).to.equal(500);
  });

  it('coalesces every model by default (zero delay), and takes * for every model without its own entry, or off', () => {
    const byDefault = loadConfig({}).batching;
    expect(byDefault).to.deep.equal({ '*': { maxBatchSize: 64, maxQueueDelayMs: 0 } });
    expect(batchingFor(byDefault, 'conversion')).to.deep.equal({ maxBatchSize: 64, maxQueueDelayMs: 0 });
    const mixed = loadConfig({ MODEL_BATCHING: '*=16/0ms,conversion=32/2ms' }).batching;
    expect(batchingFor(mixed, 'conversion')).to.deep.equal({ maxBatchSize: 32, maxQueueDelayMs: 2 });
    expect(batchingFor(mixed, 'churn')).to.deep.equal({ maxBatchSize: 16, maxQueueDelayMs: 0 });
    expect(batchingFor(loadConfig({ MODEL_BATCHING: 'conversion=32/2ms' }).batching, 'churn')).to.equal(
      undefined,
    );
    for (const off of ['', 'off']) {
      expect(batchingFor(loadConfig({ MODEL_BATCHING: off }).batching, 'conversion')).to.equal(undefined);
    }
  });

  it('reads CONFIG_FILE, with environment variables taking precedence', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
    const file = join(dir, 'server.json');
    writeFileSync(file, JSON.stringify({ GRPC_PORT: 6000, ROLE: 'canary', DRAIN_MS: 10 }));
    const c = loadConfig({ CONFIG_FILE: file, DRAIN_MS: '20' });
    expect(c.port).to.equal(6000);
    expect(c.role).to.equal('canary');
    expect(c.drainMs).to.equal(20);
  });

  it('rejects an unknown variable in CONFIG_FILE', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
    const file = join(dir, 'server.json');
    writeFileSync(file, JSON.stringify({ GRPC_PROT: 6000 }));
    expect(() => loadConfig({ CONFIG_FILE: file })).to.throw(ConfigError, /unknown variable GRPC_PROT/);
  });
});
