/**
 * Every SQL statement of the readout, in order, and nothing else: the reader
 * (engine.ts) runs them, the exposure join (exposure.ts) names what each one
 * returns. DuckDB dialect.
 *
 * The logs are read once (`read_ndjson`, newline-delimited JSON, the union of
 * all files, gzip by extension, lines of other programs and partial lines
 * ignored) into two tables, one row per prediction (output) and one per
 * outcome; everything after that works on those tables. The field names
 * are server/call-log.ts's `PredictionRecord` and `OutcomeRecord`; a test
 * writes lines with those types and reads them back through these statements.
 *
 * Only randomised predictions are exposures: a line with `forced` (the call
 * carried `x-ab-group`) or `pinned` (it named its version) was not assigned
 * by the split, so it is kept only to resolve outcomes and to be counted.
 *
 * Units: the unit of a prediction is its A/B key (the output's own `user`,
 * else the request's `user`), else the prediction itself
 * (`r:<requestId>#<instance>`), the same key the server hashed.
 * Times are epoch milliseconds (BIGINT).
 */

import { PREDICTION_METHODS } from '../../../server/call-log.js';

/** A SQL string literal. */
export function literal(s: string): string {
  return `'${s.replaceAll("'", "''")}'`;
}

/** A SQL list of string literals. */
function list(items: readonly string[]): string {
  return `[${items.map(literal).join(', ')}]`;
}

/** Session settings: bounded memory (the rest spills to `tempDir`), `threads` workers. */
export function settings(o: { memoryLimit: string; threads: number; tempDir: string }): string[] {
  return [
    `SET memory_limit = ${literal(o.memoryLimit)}`,
    `SET threads = ${Math.max(1, Math.floor(o.threads))}`,
    `SET temp_directory = ${literal(o.tempDir)}`,
    // Order of rows never matters here; keeping it costs memory on large scans.
    'SET preserve_insertion_order = false',
  ];
}

/** The fields of a log line the readout reads (server/call-log.ts); any other field is skipped unparsed. */
const LOG_COLUMNS = `{
  event: 'VARCHAR', code: 'VARCHAR', method: 'VARCHAR', "time": 'VARCHAR', requestId: 'VARCHAR', model: 'VARCHAR',
  version: 'VARCHAR', arm: 'VARCHAR', experiment: 'VARCHAR', "user": 'VARCHAR', forced: 'VARCHAR', pinned: 'BOOLEAN',
  outputs: 'STRUCT(label INTEGER, "group" VARCHAR, action INTEGER, "user" VARCHAR)[]',
  outcomes: 'STRUCT(requestId VARCHAR, instance INTEGER, "user" VARCHAR, model VARCHAR, metric VARCHAR, "value" DOUBLE, "at" VARCHAR)[]'
}`;

/** The fields of a bulk outcome row as bulk-outcomes.ts writes it (call-log.ts's `OutcomeEntry`). */
const OUTCOME_COLUMNS = `{
  requestId: 'VARCHAR', instance: 'INTEGER', "user": 'VARCHAR', model: 'VARCHAR', metric: 'VARCHAR',
  "value": 'DOUBLE', "at": 'VARCHAR'
}`;

const ms = (iso: string) => `epoch_ms(try_cast(${iso} AS TIMESTAMPTZ))`;

/**
 * One scan of every log file: successful predictions and outcomes, with only
 * the fields above. A line longer than 64 MiB (a 256-instance batch logs far
 * less) or that is not JSON is skipped.
 */
export function loadLines(files: readonly string[]): string {
  return `CREATE TABLE lines AS
SELECT event, method, ${ms('"time"')} AS t, requestId AS request_id, model, version, arm, experiment,
       "user" AS req_user, forced, pinned, outputs, outcomes
FROM read_ndjson(${list(files)}, columns = ${LOG_COLUMNS}, ignore_errors = true,
                 maximum_object_size = 67108864)
WHERE code = 'OK' AND event IN ('prediction', 'outcome')`;
}

/** An empty `lines` table, when there are no log files (bulk outcomes alone). */
export const EMPTY_LINES = `CREATE TABLE lines AS
SELECT NULL::VARCHAR AS event, NULL::VARCHAR AS method, NULL::BIGINT AS t, NULL::VARCHAR AS request_id, NULL::VARCHAR AS model,
       NULL::VARCHAR AS version, NULL::VARCHAR AS arm, NULL::VARCHAR AS experiment, NULL::VARCHAR AS req_user,
       NULL::VARCHAR AS forced, NULL::BOOLEAN AS pinned,
       NULL::STRUCT(label INTEGER, "group" VARCHAR, action INTEGER, "user" VARCHAR)[] AS outputs,
       NULL::STRUCT(requestId VARCHAR, instance INTEGER, "user" VARCHAR, model VARCHAR, metric VARCHAR, "value" DOUBLE, "at" VARCHAR)[] AS outcomes
WHERE false`;

/**
 * One row per prediction (each output of each Predict or ModelInfer line,
 * call-log.ts PREDICTION_METHODS) inside
 * [since, until). `exp_key` is the canary's experiment name (the stable arm
 * assigns nothing, so its name is not part of its identity). `first_output`
 * marks one row per request, so requests can still be counted. `forced` and
 * `pinned` say how a call was routed (call-log.ts PredictionFields);
 * `randomised` is neither.
 */
export function loadPredictions(window: { since?: number; until?: number }): string {
  const bounds = [
    window.since === undefined ? '' : `AND t >= ${window.since}`,
    window.until === undefined ? '' : `AND t < ${window.until}`,
  ].join(' ');
  return `CREATE TABLE pred AS
WITH flat AS (
  SELECT model, arm, version, CASE WHEN arm = 'canary' THEN experiment ELSE '' END AS exp_key, t, request_id,
         forced IS NOT NULL AS forced, pinned IS TRUE AS pinned, req_user, unnest(outputs) AS o, unnest(range(len(outputs))) AS instance,
         req_user IS NOT NULL OR list_bool_and(list_transform(outputs, x -> x."user" IS NOT NULL)) AS all_users
  FROM lines
  WHERE event = 'prediction' AND method IN ${list([...PREDICTION_METHODS])} AND arm IN ('stable', 'canary') AND t IS NOT NULL AND len(outputs) > 0 ${bounds}
)
SELECT model, arm, version, exp_key, t, request_id, instance::INTEGER AS instance,
       coalesce(o."user", req_user, 'r:' || request_id || '#' || instance) AS unit,
       coalesce(o."user", req_user) IS NOT NULL AS has_user,
       o.label AS label, o."group" AS grp, o.action AS action, all_users, instance = 0 AS first_output,
       forced, pinned, NOT forced AND NOT pinned AS randomised
FROM flat`;
}

/** One row per outcome, from the logs (RecordOutcomes) and from the bulk files, numbered. */
export function loadOutcomes(bulkFiles: readonly string[]): string {
  const bulk =
    bulkFiles.length === 0
      ? ''
      : `UNION ALL
  SELECT requestId, instance, "user", model, metric, "value", ${ms('"at"')}, 'bulk'
  FROM read_ndjson(${list(bulkFiles)}, columns = ${OUTCOME_COLUMNS})`;
  return `CREATE TABLE oc AS
SELECT row_number() OVER () AS id, * FROM (
  SELECT o.requestId AS request_id, o.instance AS instance, o."user" AS "user", o.model AS model,
         o.metric AS metric, o."value" AS "value", ${ms('o."at"')} AS "at", 'log' AS source
  FROM (SELECT unnest(outcomes) AS o FROM lines WHERE event = 'outcome')
  ${bulk}
) WHERE "at" IS NOT NULL AND metric IS NOT NULL AND "value" IS NOT NULL AND model IS NOT NULL`;
}

export const DROP_LINES = 'DROP TABLE lines';

/** What was read: prediction and outcome lines (the predictions not randomised among them), and the time they span. */
export const INPUT_SUMMARY = `SELECT
  (SELECT count(*)::DOUBLE FROM pred WHERE first_output) AS prediction_requests,
  (SELECT count(*)::DOUBLE FROM pred) AS predictions,
  (SELECT count(*)::DOUBLE FROM pred WHERE NOT randomised) AS not_randomised,
  (SELECT count(*)::DOUBLE FROM pred WHERE forced) AS forced,
  (SELECT count(*)::DOUBLE FROM pred WHERE pinned) AS pinned,
  (SELECT count(*)::DOUBLE FROM oc WHERE source = 'log') AS log_outcomes,
  (SELECT count(*)::DOUBLE FROM oc WHERE source = 'bulk') AS bulk_outcomes,
  (SELECT min(t)::DOUBLE FROM pred) AS first_t,
  (SELECT max(t)::DOUBLE FROM pred) AS last_t`;

/**
 * Version pairs, from the randomised predictions. On each arm, a version serves from its first prediction
 * until the next version's first prediction (or the end of the logs); a
 * version whose predictions all fall inside another version's span on the
 * same arm did not serve, it was named by the caller (an older version still
 * loaded, QA, in logs from before the `pinned` field), and is left out. A pair is a stable version and a canary
 * version (and experiment) over the time both served: [t0, t1). Runs with
 * other versions behind an arm are other pairs, never pooled.
 */
export const PAIRS = `CREATE TABLE pairs AS
WITH spans AS (
  SELECT model, arm, version, exp_key, min(t) AS t0, max(t) AS t1 FROM pred WHERE randomised GROUP BY ALL
), serving AS (
  SELECT s.* FROM spans s WHERE NOT EXISTS (
    SELECT 1 FROM spans o
    WHERE o.model = s.model AND o.arm = s.arm AND (o.version <> s.version OR o.exp_key <> s.exp_key)
      AND o.t0 <= s.t0 AND o.t1 >= s.t1 AND (o.t0 < s.t0 OR o.t1 > s.t1)
  )
), territory AS (
  SELECT *, coalesce(lead(t0) OVER (PARTITION BY model, arm ORDER BY t0, t1), (SELECT max(t) + 1 FROM pred)) AS t_end
  FROM serving
)
SELECT (row_number() OVER (ORDER BY s.model, greatest(s.t0, c.t0), s.version, c.version, c.exp_key))::INTEGER AS pair,
       s.model AS model, s.version AS stable_version, c.version AS canary_version, c.exp_key AS experiment,
       greatest(s.t0, c.t0) AS t0, least(s.t_end, c.t_end) AS t1
FROM territory s JOIN territory c ON s.model = c.model AND s.arm = 'stable' AND c.arm = 'canary'
WHERE greatest(s.t0, c.t0) < least(s.t_end, c.t_end)`;

/** The pairs, for the report. */
export const PAIR_ROWS = `SELECT pair, model, stable_version, canary_version, experiment
FROM pairs ORDER BY pair`;

/** Each pair's two arms, to join predictions on equality. */
export const PAIR_ARMS = `CREATE TABLE pair_arms AS
SELECT pair, model, 'stable' AS arm, stable_version AS version, '' AS exp_key, t0, t1 FROM pairs
UNION ALL
SELECT pair, model, 'canary', canary_version, experiment, t0, t1 FROM pairs`;

/** A pair's exposures: the randomised predictions of its versions, inside its window. */
const PAIR_PREDICTIONS = `pair_arms pa JOIN pred x
  ON x.model = pa.model AND x.arm = pa.arm AND x.version = pa.version AND x.exp_key = pa.exp_key
 AND x.t >= pa.t0 AND x.t < pa.t1 AND x.randomised`;

/**
 * The predictions of each pair's window that were not randomised (forced or
 * pinned), by the arm that served them, whatever version they named: left
 * out of every exposure, counted, and used to spot units they moved across
 * arms (EXPOSURES).
 */
export const NOT_RANDOMISED = `CREATE TABLE nr AS
SELECT pa.pair AS pair, x.arm AS arm, x.unit AS unit, x.forced AS forced, x.pinned AS pinned
FROM pair_arms pa JOIN pred x ON x.model = pa.model AND x.arm = pa.arm AND x.t >= pa.t0 AND x.t < pa.t1
WHERE NOT x.randomised`;

/** The predictions left out as not randomised, per pair and arm: all, forced, pinned (a call may be both), units. */
export const NOT_RANDOMISED_ROWS = `SELECT pair, arm, count(*)::DOUBLE AS predictions,
  count(*) FILTER (WHERE forced)::DOUBLE AS forced, count(*) FILTER (WHERE pinned)::DOUBLE AS pinned,
  count(DISTINCT unit)::DOUBLE AS units
FROM nr GROUP BY ALL ORDER BY ALL`;

/**
 * The assignment counts of each pair, by arm and group (grp NULL: the whole
 * arm): predictions, those carrying a user, distinct users, positives
 * (label 1), treated (action 1), requests and requests whose every
 * prediction carries a user; the first and last prediction.
 */
export const ASSIGNMENTS = `SELECT pa.pair, x.arm, x.grp,
  count(*)::DOUBLE AS predictions,
  count(*) FILTER (WHERE x.has_user)::DOUBLE AS with_user,
  count(DISTINCT x.unit) FILTER (WHERE x.has_user)::DOUBLE AS users,
  count(*) FILTER (WHERE x.label = 1)::DOUBLE AS positives,
  count(*) FILTER (WHERE x.action = 1)::DOUBLE AS treated,
  count(*) FILTER (WHERE x.first_output)::DOUBLE AS requests,
  count(*) FILTER (WHERE x.first_output AND x.all_users)::DOUBLE AS requests_with_users,
  min(x.t)::DOUBLE AS first_t, max(x.t)::DOUBLE AS last_t
FROM ${PAIR_PREDICTIONS}
GROUP BY GROUPING SETS ((pa.pair, x.arm, x.grp), (pa.pair, x.arm))
ORDER BY ALL`;

/**
 * Exposures: one row per (pair, arm, unit) with the first exposure, and on
 * the canary the first positive (experiment or control) and its group.
 * `both_arms` marks units seen on both arms of the pair (a weight change
 * moved them), counting a forced or pinned prediction on the other arm too
 * (QA sent a randomised user to the other model: its outcomes are no longer
 * one arm's); `groups` > 1 marks a canary unit seen in both
 * stage-2 groups (the salt changed under one experiment name).
 */
export const EXPOSURES = `CREATE TABLE ex AS
SELECT *, count(*) OVER (PARTITION BY pair, unit) > 1
          OR EXISTS (SELECT 1 FROM nr WHERE nr.pair = e.pair AND nr.unit = e.unit AND nr.arm <> e.arm) AS both_arms
FROM (
  SELECT pa.pair AS pair, x.arm AS arm, x.unit AS unit, min(x.t) AS t_first,
         min(x.t) FILTER (WHERE x.grp IN ('experiment', 'control')) AS t_pos,
         arg_min(x.grp, x.t) FILTER (WHERE x.grp IN ('experiment', 'control')) AS grp2,
         CASE WHEN min(x.grp) FILTER (WHERE x.grp IN ('experiment', 'control')) IS NULL THEN 0
              WHEN min(x.grp) FILTER (WHERE x.grp IN ('experiment', 'control'))
                 = max(x.grp) FILTER (WHERE x.grp IN ('experiment', 'control')) THEN 1 ELSE 2 END AS groups
  FROM ${PAIR_PREDICTIONS}
  GROUP BY ALL
) e`;

/** Units excluded from every comparison of a pair, by reason. */
export const EXCLUSIONS = `SELECT pair,
  count(DISTINCT unit) FILTER (WHERE both_arms)::DOUBLE AS both_arms,
  count(DISTINCT unit) FILTER (WHERE NOT both_arms AND groups > 1)::DOUBLE AS both_groups
FROM ex GROUP BY pair ORDER BY pair`;

/**
 * The units each comparison counts, from when: stage `arms` (stable vs
 * canary) from the first exposure on the arm, with the canary unit's stratum
 * (`experiment`, `control`, or `none` when it never had a positive); stage
 * `positives` (experiment vs control) from the first positive prediction.
 * Units on both arms, or in both groups, are left out.
 */
export const COMPARISON_UNITS = `CREATE TABLE expo AS
SELECT pair, 'arms' AS stage, arm AS grp, CASE WHEN arm = 'canary' THEN coalesce(grp2, 'none') ELSE 'none' END AS stratum,
       unit, t_first AS t0
FROM ex WHERE NOT both_arms AND groups <= 1
UNION ALL
SELECT pair, 'positives', grp2, grp2, unit, t_pos FROM ex WHERE arm = 'canary' AND NOT both_arms AND groups = 1`;

/**
 * Outcomes resolved to units. An outcome naming a prediction (requestId and
 * instance of the same model) takes that prediction's unit; one naming a user
 * takes the user. Its idempotency key is the prediction (`p:`) when it names
 * one, else the user (`u:`): the same key and metric count once.
 * `resolved`: `prediction`, `user`, `ambiguous` (the requestId and instance
 * name predictions of two units, and no user), `unmatched` (no such
 * prediction, and no user).
 */
export const RESOLVED_OUTCOMES = `CREATE TABLE ocr AS
WITH named AS (
  SELECT DISTINCT request_id, instance, model, unit FROM pred
  WHERE request_id IN (SELECT request_id FROM oc WHERE request_id IS NOT NULL)
), matched AS (
  SELECT o.id, count(DISTINCT n.unit) AS units, any_value(n.unit) AS unit
  FROM oc o JOIN named n ON n.request_id = o.request_id AND n.instance = coalesce(o.instance, 0) AND n.model = o.model
  GROUP BY o.id
)
SELECT o.id, o.model, o.metric, o."value" AS "value", o."at" AS "at", o.source,
       CASE WHEN m.units = 1 THEN m.unit ELSE o."user" END AS unit,
       CASE WHEN o.request_id IS NOT NULL THEN 'p:' || o.request_id || '#' || coalesce(o.instance, 0)
            ELSE 'u:' || o."user" END AS key,
       CASE WHEN m.units = 1 THEN 'prediction' WHEN o."user" IS NOT NULL THEN 'user'
            WHEN m.units > 1 THEN 'ambiguous' ELSE 'unmatched' END AS resolved
FROM oc o LEFT JOIN matched m USING (id)`;

/** Metrics per model, and whether each is binomial (every value 0 or 1). */
export const METRICS = `CREATE TABLE metrics AS
SELECT model, metric, bool_and("value" IN (0, 1)) AS binomial, count(*) AS outcomes FROM ocr GROUP BY ALL`;

export const METRIC_ROWS = `SELECT model, metric, binomial, outcomes::DOUBLE AS outcomes FROM metrics ORDER BY model, metric`;

/** How outcomes resolved, per model and metric. */
export const RESOLUTION_ROWS = `SELECT model, metric, resolved, source, count(*)::DOUBLE AS outcomes,
  count(DISTINCT key)::DOUBLE AS keys
FROM ocr GROUP BY ALL ORDER BY ALL`;

/** Each comparison unit with each of its outcomes, and the time from its exposure to the outcome. */
export const JOINED = `CREATE TABLE joined AS
SELECT e.pair, e.stage, e.grp, e.stratum, e.unit, o.metric, o.key, o."value" AS "value", o."at" AS "at", o."at" - e.t0 AS after
FROM expo e JOIN pairs p USING (pair) JOIN ocr o ON o.unit = e.unit AND o.model = p.model`;

export interface AttributionRules {
  /** Outcomes count from exposure + delay (ms)... */
  readonly delayMs: number;
  /** ...to exposure + delay + window (ms); undefined: no end. */
  readonly windowMs: number | undefined;
}

const inWindow = (r: AttributionRules) =>
  `after >= ${r.delayMs}${r.windowMs === undefined ? '' : ` AND after <= ${r.delayMs + r.windowMs}`}`;

/** Outcomes left out by the time rules, per pair, stage and metric (rows, before deduplication). */
export function ignoredOutcomes(r: AttributionRules): string {
  return `SELECT pair, stage, metric,
  count(*) FILTER (WHERE after < 0)::DOUBLE AS before_exposure,
  count(*) FILTER (WHERE after >= 0 AND after < ${r.delayMs})::DOUBLE AS in_delay,
  count(*) FILTER (WHERE ${r.windowMs === undefined ? 'false' : `after > ${r.delayMs + r.windowMs}`})::DOUBLE AS after_window,
  count(*) FILTER (WHERE ${inWindow(r)})::DOUBLE AS counted_rows
FROM joined GROUP BY ALL ORDER BY ALL`;
}

/**
 * Each unit's value per metric, inside its window. Each key counts once (its
 * earliest outcome); a unit's value is the largest (binomial: converted or
 * not) or the sum (other metrics) over its keys.
 */
export function unitValues(r: AttributionRules): string {
  return `CREATE TABLE uv AS
WITH keyed AS (
  SELECT pair, stage, unit, metric, key, arg_min("value", "at") AS "value", count(*) AS copies
  FROM joined WHERE ${inWindow(r)} GROUP BY ALL
)
SELECT k.pair, k.stage, k.unit, k.metric,
       CASE WHEN m.binomial THEN max(k."value") ELSE sum(k."value") END AS y,
       sum(k.copies - 1) AS duplicates
FROM keyed k JOIN pairs p USING (pair) JOIN metrics m ON m.model = p.model AND m.metric = k.metric
GROUP BY k.pair, k.stage, k.unit, k.metric, m.binomial`;
}

/**
 * Sufficient statistics per pair, stage, group, stratum and metric: units
 * exposed, Σy, Σy², units with y > 0, units with an outcome, duplicate
 * outcomes dropped. Units without outcomes count with y = 0.
 */
export const MOMENTS = `SELECT e.pair, e.stage, e.grp, e.stratum, m.metric,
  count(*)::DOUBLE AS n,
  coalesce(sum(u.y), 0)::DOUBLE AS sum,
  coalesce(sum(u.y * u.y), 0)::DOUBLE AS sum_squares,
  count(*) FILTER (WHERE u.y > 0)::DOUBLE AS positive_units,
  count(u.y)::DOUBLE AS with_outcome,
  coalesce(sum(u.duplicates), 0)::DOUBLE AS duplicates
FROM expo e JOIN pairs p USING (pair) JOIN metrics m ON m.model = p.model
LEFT JOIN uv u ON u.pair = e.pair AND u.stage = e.stage AND u.unit = e.unit AND u.metric = m.metric
GROUP BY ALL ORDER BY ALL`;

/** Outcomes whose unit has no exposure in any pair, per model and metric. */
export const UNEXPOSED_OUTCOMES = `SELECT o.model, o.metric, count(*)::DOUBLE AS outcomes
FROM ocr o WHERE o.unit IS NOT NULL AND NOT EXISTS (
  SELECT 1 FROM ex JOIN pairs p USING (pair) WHERE ex.unit = o.unit AND p.model = o.model
) GROUP BY ALL ORDER BY ALL`;
