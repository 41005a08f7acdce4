/**
 * Outcomes from the business side, in bulk: `ab-report --outcomes FILE`.
 * A CSV file with a header row, or JSON lines, with the fields of the
 * RecordOutcomes RPC: requestId, instance, userId, model, metric, value,
 * occurredAt (ISO 8601). Each row is checked as the RPC checks an outcome
 * (one bad row refuses the file, naming the line and the field), and raw
 * user ids are pseudonymised with the servers' key (`LOG_PSEUDONYM_KEY`,
 * server/call-log.ts `UserIds`) before the join, because that is what the
 * prediction logs hold. The rows are written, as call-log.ts `OutcomeEntry`
 * JSON lines, to a file the engine reads with the logs' outcomes.
 */

import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import type { OutcomeEntry, UserIds } from '../../../server/call-log.js';
import { METRIC_NAME } from '../../../server/outcome-recorder.js';
import { isRequestId, isUserId, MODEL_NAME } from '../../../server/request-validation.js';

/** A refused bulk file: names the file, the line and the field. */
export class BulkOutcomeError extends Error {
  override name = 'BulkOutcomeError';
}

const FIELDS = ['requestId', 'instance', 'userId', 'model', 'metric', 'value', 'occurredAt'] as const;
type Field = (typeof FIELDS)[number];

/** Splits one CSV record (RFC 4180 quoting: "a,b" and "" inside quotes; no line breaks inside a field). */
export function splitCsv(line: string): string[] {
  const out: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') {
        field += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"' && field === '') quoted = true;
    else if (ch === ',') {
      out.push(field);
      field = '';
    } else field += ch;
  }
  out.push(field);
  return out;
}

/** One row's fields, as strings or numbers as the file had them. */
type RawRow = Partial<Record<Field, unknown>>;

/** Checks one row as the RPC checks an outcome; returns the entry to log, or throws naming `what`. */
export function checkRow(row: RawRow, where: string, userIds: UserIds): OutcomeEntry {
  const bad = (field: Field, what: string) => new BulkOutcomeError(`${where}: ${field} ${what}`);
  const str = (f: Field): string => {
    const v = row[f];
    if (v === undefined || v === null) return '';
    if (typeof v === 'string') return v.trim();
    if (typeof v === 'number') return String(v);
    throw bad(f, 'must be a string');
  };
  const requestId = str('requestId');
  const userId = str('userId');
  if (requestId === '' && userId === '') {
    throw bad('requestId', 'or userId is required: say which prediction or which user the outcome follows');
  }
  if (requestId !== '' && !isRequestId(requestId)) {
    throw bad(
      'requestId',
      'must be 1 to 128 printable ASCII characters without spaces (the Predict requestId)',
    );
  }
  const instanceText = str('instance');
  const instance = instanceText === '' ? 0 : Number(instanceText);
  if (!Number.isInteger(instance) || instance < 0 || instance > 65535) {
    throw bad('instance', 'must be the index of the instance in its Predict request (0-65535)');
  }
  if (requestId === '' && instance !== 0) throw bad('instance', 'needs the requestId it indexes');
  if (userId !== '' && !isUserId(userId)) throw bad('userId', 'must be 1 to 128 printable ASCII characters');
  const model = str('model');
  if (!MODEL_NAME.test(model)) throw bad('model', 'must name the model the outcome measures');
  const metric = str('metric');
  if (!METRIC_NAME.test(metric)) {
    throw bad('metric', 'must be 1 to 64 of lower-case letters, digits and "_", starting with a letter');
  }
  const valueText = str('value');
  const value = valueText === '' ? Number.NaN : Number(valueText);
  if (!Number.isFinite(value)) throw bad('value', 'must be a finite number (1 or 0 for a conversion)');
  const at = Date.parse(str('occurredAt'));
  if (Number.isNaN(at)) throw bad('occurredAt', 'must be an ISO 8601 time: when the outcome happened');
  return {
    ...(requestId === '' ? {} : { requestId, instance }),
    ...(userId === '' ? {} : { user: userIds.forLog(userId) }),
    model,
    metric,
    value,
    at: new Date(at).toISOString(),
  };
}

/**
 * Reads a bulk outcome file (`-`: `stdin`; `.gz`: gunzipped) and writes its
 * checked, pseudonymised rows to `out` as JSON lines. Returns the row count.
 */
export async function convertBulkOutcomes(
  file: string,
  out: string,
  userIds: UserIds,
  stdin: Readable = process.stdin,
): Promise<number> {
  const name = file === '-' ? 'stdin' : file;
  const raw = file === '-' ? stdin : createReadStream(file);
  const input = file.endsWith('.gz') ? raw.pipe(createGunzip()) : raw;
  const failed = new Promise<never>((_, reject) => {
    raw.once('error', reject);
    input.once('error', reject);
  });
  const sink = createWriteStream(out);
  let header: string[] | undefined;
  let format: 'csv' | 'json' | undefined;
  let rows = 0;
  let lineNo = 0;
  let chunk: string[] = [];
  const flush = async () => {
    if (chunk.length === 0) return;
    if (!sink.write(`${chunk.join('\n')}\n`)) await once(sink, 'drain');
    chunk = [];
  };
  const work = (async () => {
    for await (const line of createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY })) {
      lineNo++;
      if (line.trim() === '') continue;
      const where = `${name}:${lineNo}`;
      format ??= line.trimStart().startsWith('{') ? 'json' : 'csv';
      let row: RawRow;
      if (format === 'json') {
        let parsed: unknown;
        try {
          parsed = JSON.parse(line);
        } catch {
          throw new BulkOutcomeError(
            `${where}: not a JSON object (a JSON-lines file has one object per line)`,
          );
        }
        if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
          throw new BulkOutcomeError(`${where}: not a JSON object`);
        }
        row = parsed as RawRow;
      } else if (header === undefined) {
        header = splitCsv(line).map((h) => h.trim());
        const unknown = header.filter((h) => !(FIELDS as readonly string[]).includes(h));
        if (unknown.length > 0) {
          throw new BulkOutcomeError(
            `${where}: unknown column ${JSON.stringify(unknown[0])}; the columns are ${FIELDS.join(', ')}`,
          );
        }
        continue;
      } else {
        const cells = splitCsv(line);
        if (cells.length !== header.length) {
          throw new BulkOutcomeError(`${where}: ${cells.length} fields, the header has ${header.length}`);
        }
        row = Object.fromEntries(header.map((h, i) => [h, cells[i]]));
      }
      chunk.push(JSON.stringify(checkRow(row, where, userIds)));
      rows++;
      if (chunk.length >= 10_000) await flush();
    }
    await flush();
  })();
  try {
    await Promise.race([work, failed]);
  } finally {
    sink.end();
    await once(sink, 'close');
  }
  return rows;
}
