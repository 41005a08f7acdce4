/**
 * Which of a server's JSON log lines the local stack shows in its terminal,
 * and how: start-up, shutdown, model and signal lines, and anything at warn
 * or above, tagged with the arm. Predict lines stay in the log files.
 */
import type { LogRecord } from '../server-process.js';

/** Server log lines worth showing in the terminal. */
const LIFECYCLE = /^(server started|signal received|shutdown|second signal|start-up failed|model)/;

/** The terminal line for `rec` of the server tagged `tag`, or undefined when it is not shown. */
export function terminalLine(tag: string, rec: LogRecord): string | undefined {
  const msg = String(rec.msg ?? '');
  const level = String(rec.level);
  if (!LIFECYCLE.test(msg) && !['warn', 'error', 'fatal'].includes(level)) return undefined;
  const { level: _l, msg: _m, time: _t, pid: _p, ...rest } = rec;
  const extra = Object.keys(rest).length > 0 ? ` ${JSON.stringify(rest)}` : '';
  return `[${tag}] ${level === 'info' ? '' : `${level}: `}${msg}${extra}`;
}
