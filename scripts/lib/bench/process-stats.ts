/**
 * What a process has used so far, read from /proc (Linux): resident memory
 * and CPU time. The benchmarks and the soak sample these for the processes
 * they start and for the load generators they have reaped.
 */
import { readFileSync } from 'node:fs';

/** Resident set size of a process from /proc, in bytes; undefined once it has gone. */
export function rssBytes(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Linux's USER_HZ: /proc/<pid>/stat times are in these ticks (100 on every mainstream kernel). */
const TICKS_PER_S = 100;

/**
 * The CPU times of one /proc `stat` file (a process's, or one thread's under
 * task/), in ms: its own (utime + stime) and its waited-for children's
 * (cutime + cstime). Undefined once it has gone. Resolution 10 ms.
 */
function statTimesMs(path: string): { self: number; children: number } | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  // Fields after the command name, which is in parentheses and may hold spaces:
  // state(3) ... utime(14) stime(15) cutime(16) cstime(17), numbered from 1.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const at = (n: number) => Number(f[n - 3]);
  const tick = 1000 / TICKS_PER_S;
  return { self: (at(14) + at(15)) * tick, children: (at(16) + at(17)) * tick };
}

/**
 * CPU time of a process from /proc/<pid>/stat, in ms: its own (utime +
 * stime) and that of its children it has waited for (cutime + cstime).
 * Undefined once it has gone. Resolution 10 ms.
 */
export function cpuTimesMs(pid: number): { self: number; children: number } | undefined {
  return statTimesMs(`/proc/${pid}/stat`);
}

/**
 * CPU time of a process in ms, split into its main thread (the event loop, for
 * Node; /proc/<pid>/task/<pid>/stat) and the rest (libuv's pool, V8's GC
 * helpers, ONNX Runtime's, including threads that have already exited: the
 * process total less the main thread). Undefined once it has gone.
 */
export function threadCpuMs(pid: number): { main: number; other: number } | undefined {
  const total = cpuTimesMs(pid);
  const main = statTimesMs(`/proc/${pid}/task/${pid}/stat`)?.self;
  if (!total || main === undefined) return undefined;
  return { main, other: Math.max(0, total.self - main) };
}

/** Bytes as MiB with one decimal, `n/a` when unknown. */
export const mib = (bytes: number | undefined) =>
  bytes === undefined ? 'n/a' : `${(bytes / 2 ** 20).toFixed(1)} MiB`;
