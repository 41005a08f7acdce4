import { createHmac } from 'node:crypto';
import { expect } from 'chai';
import { asPredictionRecord, UserIds, userOfOutput } from '../../server/call-log.js';
import { DEV_PSEUDONYM_KEY } from '../../server/config.js';
import { USER_ID_HEADER } from '../../server/headers.js';
import { metadataOf, predict, SAMPLE_RECORD, startApp, waitFor } from '../helpers/server.js';

describe('prediction log: redaction and user pseudonyms', function () {
  this.timeout(30_000);

  it('masks exactly the fields named in LOG_REDACT_FIELDS', async () => {
    const t = await startApp({ LOG_REDACT_FIELDS: 'userId,deviceName' });
    try {
      await predict(t.client, { requestId: 'redact-1', instances: [{ ...SAMPLE_RECORD }] });
      await waitFor('the prediction line', () => t.logs.lines.some((l) => l.requestId === 'redact-1'));
      const line = t.logs.lines.find((l) => l.requestId === 'redact-1') as {
        inputs: Record<string, unknown>[];
      };
      expect(line.inputs[0]).to.deep.equal({
        ...SAMPLE_RECORD,
        userId: '[redacted]',
        deviceName: '[redacted]',
      });
    } finally {
      await t.stop();
    }
  });

  it('logs the A/B key as a keyed pseudonym: same user same token, joinable across arms, not the raw id', async () => {
    const key = 'shared-secret-of-both-arms';
    const stable = await startApp({ LOG_PSEUDONYM_KEY: key });
    const canary = await startApp({ LOG_PSEUDONYM_KEY: key, ROLE: 'canary' });
    try {
      for (const [t, id] of [
        [stable, 's-1'],
        [canary, 'c-1'],
        [canary, 'c-2'],
      ] as const) {
        await predict(
          t.client,
          { requestId: id, instances: [{ ...SAMPLE_RECORD }] },
          metadataOf({ [USER_ID_HEADER]: 'user-42' }),
        );
      }
      await waitFor('the lines', () => canary.logs.lines.filter((l) => l.msg === 'Predict').length === 2);
      const rec = (t: typeof stable, id: string) => {
        const r = asPredictionRecord(t.logs.lines.find((l) => l.requestId === id));
        if (!r) throw new Error(`no prediction record ${id}`);
        return r;
      };
      const tokens = [rec(stable, 's-1'), rec(canary, 'c-1'), rec(canary, 'c-2')].map((r) =>
        userOfOutput(r, 0),
      );
      expect(new Set(tokens).size).to.equal(1);
      expect(tokens[0]).to.equal(new UserIds('pseudonym', key).forLog('user-42'));
      expect(tokens[0]).to.not.equal(new UserIds('pseudonym', DEV_PSEUDONYM_KEY).forLog('user-42'));
      const all = JSON.stringify([...stable.logs.lines, ...canary.logs.lines]);
      expect(all).to.not.include('user-42');
    } finally {
      await Promise.all([stable.stop(), canary.stop()]);
    }
  });

  it('logs raw ids only when LOG_USER_IDS=raw, and warns when the pseudonym key is the development one', async () => {
    const t = await startApp({ LOG_USER_IDS: 'raw' });
    const d = await startApp({});
    try {
      await predict(
        t.client,
        { requestId: 'raw-1', instances: [{ ...SAMPLE_RECORD }] },
        metadataOf({ [USER_ID_HEADER]: 'user-7' }),
      );
      await waitFor('the line', () => t.logs.lines.some((l) => l.requestId === 'raw-1'));
      expect(asPredictionRecord(t.logs.lines.find((l) => l.requestId === 'raw-1'))?.user).to.equal('user-7');
      expect(t.logs.lines.some((l) => /LOG_PSEUDONYM_KEY/.test(String(l.msg)))).to.equal(false);
      expect(
        d.logs.lines.some((l) => l.level === 'warn' && /LOG_PSEUDONYM_KEY is unset/.test(String(l.msg))),
      ).to.equal(true);
    } finally {
      await Promise.all([t.stop(), d.stop()]);
    }
  });

  it('pseudonyms are HMAC-SHA256(key, user) in base64url, for every key length and user', () => {
    const keys = ['', 'k', DEV_PSEUDONYM_KEY, 'x'.repeat(64), 'y'.repeat(65), 'clé-ünï'];
    const users = ['42', '102079311', 'user 7 ~!', 'ü-not-ascii', 'z'.repeat(256), 'z'.repeat(257), ''];
    for (const key of keys) {
      const ids = new UserIds('pseudonym', key);
      for (const user of users) {
        const expected = `p_${createHmac('sha256', key).update(user).digest('base64url').slice(0, 22)}`;
        expect(ids.forLog(user), `key ${key.length} chars, user ${user.slice(0, 12)}`).to.equal(expected);
        // The scratch buffers are reused: a shorter user after a longer one must not see its tail.
        expect(ids.forLog('1')).to.equal(
          `p_${createHmac('sha256', key).update('1').digest('base64url').slice(0, 22)}`,
        );
      }
    }
  });
});
