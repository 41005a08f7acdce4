/**
 * The Grafana dashboard (deploy/grafana/dashboards/inference-ab.json) as data:
 * its PromQL queries with Grafana's variables replaced by values Prometheus
 * accepts, so a test can parse them (`promtool check rules` on a generated rule
 * file) and run them on a live Prometheus.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROJECT_ROOT } from './paths.js';

export const DASHBOARD_PATH = join(PROJECT_ROOT, 'deploy', 'grafana', 'dashboards', 'inference-ab.json');

interface Target {
  refId?: string;
  expr?: string;
  datasource?: { uid?: string };
}
interface Panel {
  id?: number;
  title?: string;
  type?: string;
  datasource?: { uid?: string };
  targets?: Target[];
  panels?: Panel[];
}
export interface Dashboard {
  uid?: string;
  title?: string;
  panels?: Panel[];
  templating?: { list?: { name: string; allValue?: string }[] };
}

export interface DashboardQuery {
  /** `<panel title> / <refId>`. */
  readonly panel: string;
  readonly panelId: number;
  readonly refId: string;
  /** Datasource uid the target (or its panel) names. */
  readonly datasource: string | undefined;
  /** With Grafana's variables replaced. */
  readonly expr: string;
  readonly raw: string;
}

export function loadDashboard(path = DASHBOARD_PATH): Dashboard {
  return JSON.parse(readFileSync(path, 'utf8')) as Dashboard;
}

/**
 * Grafana's built-in interval variables become 1m / 1h; a template variable
 * becomes its "All" value (every variable here is a regex matcher), else `.*`.
 */
export function substituteVariables(expr: string, d: Dashboard): string {
  const all = new Map((d.templating?.list ?? []).map((v) => [v.name, v.allValue ?? '.*']));
  return expr
    .replace(/\$__rate_interval|\$__interval|\$\{__rate_interval\}|\$\{__interval\}/g, '1m')
    .replace(/\$__range|\$\{__range\}/g, '1h')
    .replace(
      /\$\{(\w+)(?::\w+)?\}|\$(\w+)/g,
      (_m, a: string | undefined, b: string | undefined) => all.get((a ?? b) as string) ?? '.*',
    );
}

/** Every query of every panel (rows' nested panels included). */
export function dashboardQueries(d: Dashboard): DashboardQuery[] {
  const out: DashboardQuery[] = [];
  const visit = (panels: Panel[]) => {
    for (const p of panels) {
      for (const t of p.targets ?? []) {
        if (typeof t.expr !== 'string') continue;
        out.push({
          panel: `${p.title ?? '?'} / ${t.refId ?? '?'}`,
          panelId: p.id ?? -1,
          refId: t.refId ?? '?',
          datasource: t.datasource?.uid ?? p.datasource?.uid,
          expr: substituteVariables(t.expr, d),
          raw: t.expr,
        });
      }
      visit(p.panels ?? []);
    }
  };
  visit(d.panels ?? []);
  return out;
}

/** A Prometheus rule file with one recording rule per query, for `promtool check rules`. */
export function queriesAsRuleFile(queries: readonly DashboardQuery[]): string {
  const rules = queries.map(
    (q) =>
      `      - record: dashboard:panel_${q.panelId}_${q.refId}\n        expr: ${JSON.stringify(q.expr)}\n`,
  );
  return `groups:\n  - name: dashboard\n    rules:\n${rules.join('')}`;
}
