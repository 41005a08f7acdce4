/**
 * Loopback ports: one the kernel says is free, and whether given ones can be
 * bound right now.
 */
import { createServer } from 'node:net';

/**
 * A TCP port free on `host` right now (bound to port 0, read, released). For
 * configs that must name a port before the process that binds it starts;
 * another process may take it in between, so prefer port 0 where the binder
 * reports what it got.
 */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const address = srv.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Why `port` cannot be bound on `host` right now (EADDRINUSE, EACCES…), or undefined when it is free. */
function bindError(port: number, host = '127.0.0.1'): Promise<NodeJS.ErrnoException | undefined> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', (err: NodeJS.ErrnoException) => resolve(err));
    srv.listen(port, host, () => srv.close(() => resolve(undefined)));
  });
}

/** True when `port` can be bound on `host` right now. */
export async function portIsFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return (await bindError(port, host)) === undefined;
}

/**
 * The ones of `ports` that are taken, one line each: `127.0.0.1:8080 (Envoy
 * gRPC listener): EADDRINUSE`. Empty when every port is free.
 */
export async function busyPorts(
  ports: readonly { readonly port: number; readonly what: string }[],
  host = '127.0.0.1',
): Promise<string[]> {
  const busy: string[] = [];
  for (const p of ports) {
    const err = await bindError(p.port, host);
    if (err) busy.push(`${host}:${p.port} (${p.what}): ${err.code ?? err.message}`);
  }
  return busy;
}
