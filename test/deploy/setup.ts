/** What several deployment suites set up alike: a scratch directory and an API server, both torn down. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Teardown } from '../../scripts/lib/deploy/exec.js';
import { KubeApiServer } from '../../scripts/lib/deploy/kube.js';
import { freePort } from '../helpers/envoy.js';

/** A fresh directory under the system temp dir, removed by `teardown`. */
export function scratchDir(prefix: string, teardown: Teardown): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const remove = () => rmSync(dir, { recursive: true, force: true });
  teardown.add('temp dir', async () => remove(), remove);
  return dir;
}

/** etcd and kube-apiserver on free loopback ports, in `dir`, stopped by `teardown`. */
export async function startApiServer(dir: string, teardown: Teardown): Promise<KubeApiServer> {
  const api = await KubeApiServer.start({
    dir,
    etcdPort: await freePort(),
    etcdPeerPort: await freePort(),
    apiPort: await freePort(),
  });
  teardown.add(
    'kube-apiserver',
    () => api.stop(),
    () => api.killNow(),
  );
  return api;
}
