/**
 * A real Kubernetes API server on loopback, for validating the Helm chart
 * (`kubectl apply --dry-run=server --validate=strict`) and for the weights
 * command's ConfigMap path: etcd (Debian's etcd-server) and kube-apiserver
 * v1.37.2 (built by scripts/dev/bootstrap.mjs --deploy), with no controllers,
 * scheduler or kubelet, so objects are stored and validated but never run.
 *
 * Flags: `--endpoint-reconciler-type=none` (the default reconciler wants a
 * routable advertise address), a static token file whose user is in
 * system:masters, and service-account signing keys (required since 1.20).
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { Daemon, type ExecOptions, exec, execOk, waitFor } from './exec.js';
import { tool } from './paths.js';

export interface KubeApiServerOptions {
  /** A fresh directory for etcd's data, keys, certificates and logs. */
  readonly dir: string;
  readonly etcdPort: number;
  readonly etcdPeerPort: number;
  readonly apiPort: number;
}

export class KubeApiServer {
  private constructor(
    private readonly etcd: Daemon,
    private readonly apiserver: Daemon,
    readonly url: string,
    readonly kubeconfig: string,
    private readonly token: string,
  ) {}

  static async start(o: KubeApiServerOptions): Promise<KubeApiServer> {
    mkdirSync(o.dir, { recursive: true });
    const etcdUrl = `http://127.0.0.1:${o.etcdPort}`;
    const peerUrl = `http://127.0.0.1:${o.etcdPeerPort}`;
    const etcd = Daemon.start(
      'etcd',
      'etcd',
      [
        '--name',
        'deploy-test',
        '--data-dir',
        join(o.dir, 'etcd'),
        '--listen-client-urls',
        etcdUrl,
        '--advertise-client-urls',
        etcdUrl,
        '--listen-peer-urls',
        peerUrl,
        '--initial-advertise-peer-urls',
        peerUrl,
        '--initial-cluster',
        `deploy-test=${peerUrl}`,
        '--log-level',
        'warn',
      ],
      { logFile: join(o.dir, 'etcd.log') },
    );
    try {
      const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const saKey = join(o.dir, 'sa.key');
      const saPub = join(o.dir, 'sa.pub');
      writeFileSync(saKey, privateKey.export({ type: 'pkcs1', format: 'pem' }));
      writeFileSync(saPub, publicKey.export({ type: 'spki', format: 'pem' }));
      const token = randomBytes(16).toString('hex');
      const tokens = join(o.dir, 'tokens.csv');
      writeFileSync(tokens, `${token},deploy-test-admin,deploy-test-admin,system:masters\n`, { mode: 0o600 });
      const url = `https://127.0.0.1:${o.apiPort}`;
      const apiserver = Daemon.start(
        'kube-apiserver',
        tool('kube-apiserver'),
        [
          `--etcd-servers=${etcdUrl}`,
          '--bind-address=127.0.0.1',
          '--advertise-address=127.0.0.1',
          `--secure-port=${o.apiPort}`,
          `--cert-dir=${join(o.dir, 'certs')}`,
          `--token-auth-file=${tokens}`,
          '--authorization-mode=RBAC',
          '--service-account-issuer=https://kubernetes.default.svc',
          `--service-account-key-file=${saPub}`,
          `--service-account-signing-key-file=${saKey}`,
          '--service-cluster-ip-range=10.96.0.0/16',
          '--endpoint-reconciler-type=none',
        ],
        { logFile: join(o.dir, 'kube-apiserver.log') },
      );
      const kubeconfig = join(o.dir, 'kubeconfig');
      writeFileSync(
        kubeconfig,
        [
          'apiVersion: v1',
          'kind: Config',
          'clusters:',
          `- name: deploy-test\n  cluster:\n    server: ${url}\n    insecure-skip-tls-verify: true`,
          'users:',
          `- name: admin\n  user:\n    token: ${token}`,
          'contexts:',
          '- name: deploy-test\n  context:\n    cluster: deploy-test\n    user: admin',
          'current-context: deploy-test',
          '',
        ].join('\n'),
        { mode: 0o600 },
      );
      const server = new KubeApiServer(etcd, apiserver, url, kubeconfig, token);
      await waitFor(
        'kube-apiserver /readyz',
        async () => {
          if (apiserver.exit) throw new Error(`kube-apiserver exited; see ${apiserver.logFile}`);
          if (etcd.exit) throw new Error(`etcd exited; see ${etcd.logFile}`);
          return (await server.get('/readyz')) === 'ok' ? true : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 100 },
      );
      return server;
    } catch (err) {
      etcd.killNow();
      throw err;
    }
  }

  /** GET a path as the admin user (the serving certificate is self-signed). */
  get(path: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const req = request(
        `${this.url}${path}`,
        { rejectUnauthorized: false, headers: { authorization: `Bearer ${this.token}` }, timeout: 5000 },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => {
            body += d;
          });
          res.on('end', () => resolve(body));
        },
      );
      req.on('error', reject);
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.end();
    });
  }

  /** `kubectl --kubeconfig … <args>`; throws unless it exits 0. */
  kubectl(args: readonly string[], o: ExecOptions = {}): Promise<string> {
    return execOk(tool('kubectl'), ['--kubeconfig', this.kubeconfig, ...args], { timeoutMs: 120_000, ...o });
  }

  /** The same, resolving with the exit and output whatever they are. */
  kubectlResult(args: readonly string[], o: ExecOptions = {}) {
    return exec(tool('kubectl'), ['--kubeconfig', this.kubeconfig, ...args], { timeoutMs: 120_000, ...o });
  }

  /** kube-apiserver takes its time on SIGTERM (it drains for up to a minute): escalate after 3 s. */
  async stop(): Promise<void> {
    await this.apiserver.stop(3000);
    await this.etcd.stop(5000);
  }

  killNow(): void {
    this.apiserver.killNow();
    this.etcd.killNow();
  }
}
