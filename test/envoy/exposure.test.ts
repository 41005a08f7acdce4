/**
 * What Envoy exposes, and to whom: the arm override only on the QA listener,
 * a malformed x-user-id refused before it is hashed, bounded access log
 * lines, an admin that only its owner can change, TLS and mutual TLS.
 */
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { credentials, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { INVALID_USER_ID_MESSAGE, USER_ID_PATTERN } from '../../scripts/lib/envoy/config.js';
import { InferenceServiceClient } from '../../server/generated/inference/v1/inference.js';
import { isUserId } from '../../server/request-validation.js';
import { type AbStack, countArms, failures, runCalls, startAbStack } from '../helpers/envoy.js';
import { RawClient } from '../helpers/raw-grpc.js';
import { predict, ROOT, removeDir, SAMPLE_RECORD, waitFor } from '../helpers/server.js';
import { makeThrowawayCa, type ThrowawayCa } from '../helpers/tls.js';

/** A Predict body for the seed record, encoded by the generated stubs. */
async function predictBody(): Promise<Buffer> {
  const { PredictRequest } = await import('../../server/generated/inference/v1/inference.js');
  return Buffer.from(
    PredictRequest.encode({
      model: 'conversion',
      version: '',
      requestId: '',
      instances: [{ ...SAMPLE_RECORD }],
    }).finish(),
  );
}

describe('Envoy exposure: overrides, A/B keys, access log', function () {
  this.timeout(60_000);
  let stack: AbStack;
  before(async () => {
    stack = await startAbStack();
  });
  after(async () => stack?.stop());

  it('ignores x-ab-group from the public listener, and honours it on the QA listener', async () => {
    // Judged by the route Envoy matched (its access log), not only by the arm that answered:
    // on a loaded machine the canary can miss a health check, and then its share is
    // served by stable (canary_with_fallback) whatever the header says.
    const entriesOf = async (calls: number, from: number) => {
      await waitFor(
        `${calls} access log entries`,
        () => stack.accessLog().length >= from + calls,
        10_000,
        50,
      );
      return stack.accessLog().slice(from, from + calls);
    };
    let seen = stack.accessLog().length;
    const first = await runCalls(stack.client, 400, (i) => ({ user: `exp-${i}` }));
    expect(failures(first)).to.deep.equal([]);
    const firstLog = await entriesOf(400, seen);
    seen += 400;
    expect(new Set(firstLog.map((e) => e.route))).to.deep.equal(new Set(['ab_split']));
    // The split's pick for each user: the canary's share targets canary_with_fallback.
    const pick = new Map(firstLog.map((e) => [e.user as string, e.cluster]));
    const canaryUsers = [...pick].filter(([, c]) => c === 'canary_with_fallback').map(([u]) => u);
    const stableUsers = [...pick].filter(([, c]) => c === 'stable').map(([u]) => u);
    expect(canaryUsers.length).to.be.greaterThan(5);
    expect(canaryUsers.length + stableUsers.length).to.equal(400);
    // Public: the header is stripped, so each user is split as before whatever it says.
    const toStable = await runCalls(stack.client, canaryUsers.length, (i) => ({
      user: canaryUsers[i],
      override: 'stable',
    }));
    const toCanary = await runCalls(stack.client, 40, (i) => ({ user: stableUsers[i], override: 'canary' }));
    expect(failures([...toStable, ...toCanary])).to.deep.equal([]);
    const publicLog = await entriesOf(canaryUsers.length + 40, seen);
    seen += canaryUsers.length + 40;
    expect(
      publicLog.every((e) => e.listener === 'public' && e.route === 'ab_split' && e.override === null),
    ).to.equal(true);
    for (const e of publicLog.slice(0, canaryUsers.length)) {
      // The canary's target again (or, after a retry of a missed canary, stable: attempts > 1).
      expect(e.cluster === 'canary_with_fallback' || Number(e.attempts) > 1, JSON.stringify(e)).to.equal(
        true,
      );
    }
    expect(countArms(toCanary)).to.deep.equal({ stable: 40 });
    // QA listener: the override wins.
    const qaStable = await runCalls(stack.qaClient, canaryUsers.length, (i) => ({
      user: canaryUsers[i],
      override: 'stable',
    }));
    const qaCanary = await runCalls(stack.qaClient, 40, (i) => ({
      user: stableUsers[i],
      override: 'canary',
    }));
    expect(countArms(qaStable)).to.deep.equal({ stable: canaryUsers.length });
    expect(countArms(qaCanary)).to.deep.equal({ canary: 40 });
    const qaLog = await entriesOf(canaryUsers.length + 40, seen);
    expect(qaLog.every((e) => e.listener === 'qa')).to.equal(true);
    expect(qaLog.filter((e) => e.route === 'qa_override_stable' && e.override === 'stable').length).to.equal(
      canaryUsers.length,
    );
    expect(qaLog.filter((e) => e.route === 'qa_override_canary' && e.override === 'canary').length).to.equal(
      40,
    );
  });

  it('answers INVALID_ARGUMENT itself to an x-user-id the server would refuse, before hashing it', async () => {
    const raw = new RawClient(`127.0.0.1:${stack.port}`);
    const body = await predictBody();
    try {
      // Non-ASCII (which grpc-js would drop, so the server would see no key at all), too long,
      // empty, control characters.
      for (const value of ['café', 'x'.repeat(129), 'x'.repeat(60_000), '', 'tab\there']) {
        const r = await raw.call({
          path: '/inference.v1.InferenceService/Predict',
          body,
          headers: { 'x-user-id': Buffer.from(value, 'utf8').toString('latin1') },
        });
        expect(r.grpcStatus, `${JSON.stringify(value.slice(0, 20))}: ${r.grpcMessage}`).to.equal(
          status.INVALID_ARGUMENT,
        );
        expect(r.grpcMessage).to.equal(INVALID_USER_ID_MESSAGE);
      }
      // The longest and the widest keys the server accepts pass.
      for (const value of ['y'.repeat(128), ' !~ printable ASCII ~! ']) {
        const r = await raw.call({
          path: '/inference.v1.InferenceService/Predict',
          body,
          headers: { 'x-user-id': value },
        });
        expect(r.grpcStatus, r.grpcMessage).to.equal(status.OK);
      }
      // Without the header the split is random, as before.
      const r = await raw.call({ path: '/inference.v1.InferenceService/Predict', body });
      expect(r.grpcStatus).to.equal(status.OK);
    } finally {
      raw.close();
    }
    // No arm ever saw the bad keys: Envoy answered without an upstream.
    await waitFor(
      'the refusals in the access log',
      () => stack.accessLog().filter((e) => e.grpc_status === 'INVALID_ARGUMENT').length >= 5,
      5000,
      50,
    );
    const refused = stack.accessLog().filter((e) => e.grpc_status === 'INVALID_ARGUMENT');
    expect(refused.every((e) => e.cluster === null)).to.equal(true);
  });

  it("accepts exactly the keys the server accepts (Envoy's pattern and isUserId agree)", () => {
    const pattern = new RegExp(USER_ID_PATTERN);
    const samples = [
      'a',
      ' ',
      '~',
      'x'.repeat(128),
      'x'.repeat(129),
      '',
      '\t',
      '\x7f',
      'é',
      '\u0000',
      'user 42',
      'a\nb',
    ];
    for (let c = 0; c < 256; c++) samples.push(String.fromCharCode(c), `u${String.fromCharCode(c)}`);
    for (const s of samples) expect(pattern.test(s), JSON.stringify(s)).to.equal(isUserId(s));
  });

  it('logs at most 128 characters of a header, whatever the client sent (a 60 KB x-user-id above)', async () => {
    await waitFor(
      'the 60 KB refusal in the access log',
      () => stack.accessLog().some((e) => e.user?.startsWith('xxxx') === true),
      5000,
      50,
    );
    const long = stack.accessLog().find((e) => e.user?.startsWith('xxxx') === true);
    expect(long?.user).to.equal('x'.repeat(128));
    for (const e of stack.accessLog() as unknown as Record<string, unknown>[]) {
      for (const k of ['user', 'request_id', 'override', 'method']) {
        const v = e[k];
        if (typeof v === 'string') expect(v.length, k).to.be.at.most(k === 'method' ? 256 : 128);
      }
    }
  });
});

describe('Envoy admin: writes only for the user running Envoy', function () {
  this.timeout(60_000);
  let stack: AbStack;
  before(async () => {
    // As npm start renders it: the real admin on a Unix socket, a read-only view on TCP.
    stack = await startAbStack({ adminSocket: true });
  });
  after(async () => stack?.stop());

  it('keeps the real admin on a 0600 Unix socket; the TCP port is read-only, and enough for npm run weights', async () => {
    const socket = stack.admin.base.replace(/^unix:/, '');
    expect(socket).to.match(/admin\.sock$/);
    expect(statSync(socket).mode & 0o777).to.equal(0o600);
    expect(await stack.admin.ready()).to.equal(true);
    const view = `http://127.0.0.1:${stack.adminViewPort}`;
    expect((await fetch(`${view}/clusters?format=json`)).status).to.equal(200);
    expect((await fetch(`${view}/server_info`)).status).to.equal(200);
    for (const path of [
      '/quitquitquit',
      '/healthcheck/fail',
      '/reset_counters',
      '/logging?level=trace',
      '/drain_listeners',
    ]) {
      expect((await fetch(`${view}${path}`, { method: 'POST' })).status, path).to.equal(404);
      expect((await fetch(`${view}${path}`)).status, path).to.equal(404);
    }
    // `npm run weights` (the rollout command's weights action) writes the routes file and
    // confirms through the read-only view that Envoy loaded it: a real change, and back.
    for (const [canary, stable] of [
      [25, 75],
      [10, 90],
    ] as const) {
      const weights = spawnSync(
        process.execPath,
        [
          join(ROOT, 'dist', 'scripts', 'ops', 'rollout.js'),
          'weights',
          String(canary),
          '--routes',
          stack.routesPath,
          '--admin',
          `127.0.0.1:${stack.adminViewPort}`,
        ],
        { encoding: 'utf8' },
      );
      expect(weights.status, `${weights.stdout}${weights.stderr}`).to.equal(0);
      expect(weights.stdout).to.match(
        new RegExp(`→ stable ${stable}% / canary ${canary}% \\(Envoy accepted version`),
      );
    }
    // Still serving, still healthy: the view's refused writes changed nothing.
    expect(failures(await runCalls(stack.client, 20, (i) => ({ user: `adm-${i}` })))).to.deep.equal([]);
  });
});

describe('Envoy TLS and mutual TLS on the listener', function () {
  this.timeout(60_000);
  let ca: ThrowawayCa;
  before(() => {
    ca = makeThrowawayCa();
  });
  after(() => removeDir(ca.dir));

  async function predictWith(port: number, creds: ReturnType<typeof credentials.createSsl>) {
    // The certificate names localhost too; an IP as TLS server name is not allowed (RFC 6066).
    const client = new InferenceServiceClient(`127.0.0.1:${port}`, creds, {
      'grpc.ssl_target_name_override': 'localhost',
    });
    try {
      await predict(client, { instances: [{ ...SAMPLE_RECORD }] }, undefined, 3000);
      return status.OK;
    } catch (err) {
      return (err as { code: number }).code;
    } finally {
      client.close();
    }
  }

  it('with mutual TLS: refuses a client without a certificate, and plaintext; serves one with a certificate from the CA', async () => {
    const stack = await startAbStack({
      bootstrap: {
        tls: { certChainPath: ca.serverCert, privateKeyPath: ca.serverKey, clientCaPath: ca.caCert },
      },
    });
    try {
      const caPem = ca.read(ca.caCert);
      expect(await predictWith(stack.port, credentials.createSsl(caPem))).to.equal(status.UNAVAILABLE);
      expect(await predictWith(stack.port, credentials.createInsecure() as never)).to.equal(
        status.UNAVAILABLE,
      );
      const withCert = credentials.createSsl(caPem, ca.read(ca.clientKey), ca.read(ca.clientCert));
      expect(await predictWith(stack.port, withCert)).to.equal(status.OK);
      // The QA listener requires the certificate too.
      expect(await predictWith(stack.qaPort, credentials.createSsl(caPem))).to.equal(status.UNAVAILABLE);
      expect(await predictWith(stack.qaPort, withCert)).to.equal(status.OK);
    } finally {
      await stack.stop();
    }
  });

  it('with TLS only: serves a client that trusts the CA, refuses plaintext', async () => {
    const stack = await startAbStack({
      bootstrap: { tls: { certChainPath: ca.serverCert, privateKeyPath: ca.serverKey } },
    });
    try {
      expect(await predictWith(stack.port, credentials.createSsl(ca.read(ca.caCert)))).to.equal(status.OK);
      expect(await predictWith(stack.port, credentials.createInsecure() as never)).to.equal(
        status.UNAVAILABLE,
      );
    } finally {
      await stack.stop();
    }
  });
});
