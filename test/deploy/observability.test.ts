/**
 * What an operator looks at, checked with the real tools: the Prometheus rules
 * (`promtool check rules`, and `promtool test rules` with a synthetic case per
 * alert), the Compose stack's Prometheus config, and the Grafana dashboard:
 * well-formed, every query on the provisioned datasource, every PromQL
 * expression parsed by promtool. (The Compose suite also runs each query on a
 * live Prometheus.)
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { dashboardQueries, loadDashboard, queriesAsRuleFile } from '../../scripts/lib/deploy/dashboard.js';
import { exec } from '../../scripts/lib/deploy/exec.js';
import { PROJECT_ROOT } from '../../scripts/lib/deploy/paths.js';

const RULES = join(PROJECT_ROOT, 'deploy', 'prometheus', 'rules', 'inference.yml');
const RULE_TESTS = join(PROJECT_ROOT, 'deploy', 'prometheus', 'tests', 'inference.test.yml');

describe('Prometheus rules and the Grafana dashboard', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'deploy-obs-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('passes promtool check rules, with every alert the design asks for', async () => {
    const r = await exec('promtool', ['check', 'rules', RULES]);
    expect(r.code, r.stderr + r.stdout).to.equal(0);
    const alerts = [...readFileSync(RULES, 'utf8').matchAll(/^\s+- alert: (\w+)$/gm)].map((m) => m[1]);
    expect(alerts).to.have.members([
      'InferenceCanaryErrorRateHigh',
      'InferenceCanaryLatencyHigh',
      'InferenceSampleRatioMismatch',
      'InferenceModelLoadFailed',
      'InferenceModelVersionMismatch',
      'InferenceServerDown',
      'InferenceServerNotReady',
      'InferenceLogWriteErrors',
    ]);
  });

  it('passes promtool test rules, with a test of each alert', async () => {
    const r = await exec('promtool', ['test', 'rules', RULE_TESTS]);
    expect(r.code, r.stdout + r.stderr).to.equal(0);
    const tested = new Set(
      [...readFileSync(RULE_TESTS, 'utf8').matchAll(/alertname: (\w+)/g)].map((m) => m[1]),
    );
    const alerts = [...readFileSync(RULES, 'utf8').matchAll(/- alert: (\w+)/g)].map((m) => m[1]);
    for (const a of alerts) expect(tested.has(a), `no promtool test for ${a}`).to.equal(true);
  });

  it("passes promtool check config on the Compose stack's prometheus.yml", async () => {
    // The config names the rules at their container path; check a copy pointing at the repository's.
    const text = (await import('node:fs'))
      .readFileSync(join(PROJECT_ROOT, 'deploy', 'prometheus.yml'), 'utf8')
      .replace('/etc/prometheus/rules/*.yml', join(PROJECT_ROOT, 'deploy', 'prometheus', 'rules', '*.yml'));
    expect(text).to.include(join(PROJECT_ROOT, 'deploy', 'prometheus', 'rules'));
    const copy = join(dir, 'prometheus.yml');
    writeFileSync(copy, text);
    const r = await exec('promtool', ['check', 'config', copy]);
    expect(r.code, r.stdout + r.stderr).to.equal(0);
    expect(r.stdout + r.stderr).to.match(/SUCCESS: 14 rules found/);
  });

  it('has a dashboard whose every PromQL expression parses (promtool) on the provisioned datasource', async () => {
    const d = loadDashboard();
    expect(d.uid).to.equal('inference-ab');
    const queries = dashboardQueries(d);
    expect(queries.length).to.be.at.least(15);
    // Grafana's datasource variable, resolved to the provisioned Prometheus at load time.
    const datasourceVariable = ['$', '{datasource}'].join('');
    for (const q of queries) expect(q.datasource, q.panel).to.equal(datasourceVariable);
    const file = join(dir, 'dashboard-rules.yml');
    writeFileSync(file, queriesAsRuleFile(queries));
    const r = await exec('promtool', ['check', 'rules', file]);
    expect(r.code, r.stdout + r.stderr).to.equal(0);
    expect(r.stdout).to.include(`SUCCESS: ${queries.length} rules found`);
    // Every metric family the operator needs has a panel.
    const all = queries.map((q) => q.expr).join('\n');
    for (const metric of [
      'inference_requests_total',
      'inference_request_duration_seconds_bucket',
      'inference_model_run_duration_seconds_bucket',
      'inference_in_flight_requests',
      'inference_model_loads_total',
      'inference_model_version_info',
      'inference_model_version_mismatch',
      'inference_ab_assignments_total',
      'inference_outcomes_total',
      'inference_log_write_errors_total',
      'envoy_cluster_membership_healthy',
    ]) {
      expect(all, metric).to.include(metric);
    }
  });
});
