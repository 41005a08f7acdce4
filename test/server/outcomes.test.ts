import { type ServiceError, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { asOutcomeRecord, UserIds } from '../../server/call-log.js';
import { DEV_PSEUDONYM_KEY } from '../../server/config.js';
import type { Outcome, RecordOutcomesResponse } from '../../server/generated/inference/v1/inference.js';
import {
  expectGrpcError,
  predict,
  SAMPLE_RECORD,
  startApp,
  type TestApp,
  waitFor,
} from '../helpers/server.js';

const NOW = Date.parse('2026-12-01T12:00:00Z');

function record(t: TestApp, outcomes: Partial<Outcome>[]): Promise<RecordOutcomesResponse> {
  const full: Outcome[] = outcomes.map((o) => ({
    requestId: '',
    instance: 0,
    userId: '',
    model: 'conversion',
    metric: 'converted',
    value: 1,
    occurredAt: new Date(NOW - 60_000),
    ...o,
  }));
  return new Promise((resolve, reject) =>
    t.client.recordOutcomes({ outcomes: full }, (err: ServiceError | null, res) =>
      err ? reject(err) : resolve(res as RecordOutcomesResponse),
    ),
  );
}

describe('RecordOutcomes: business outcomes in, logged and counted', function () {
  this.timeout(30_000);
  let t: TestApp;
  before(async () => {
    t = await startApp({}, () => NOW);
  });
  after(async () => t.stop());

  it('records outcomes that follow a prediction or a user: one log line, pseudonymised, counted by metric', async () => {
    const p = await predict(t.client, {
      requestId: 'pred-1',
      instances: [{ ...SAMPLE_RECORD }, { ...SAMPLE_RECORD }],
    });
    expect(p.requestId).to.equal('pred-1');
    const res = await record(t, [
      { requestId: 'pred-1', instance: 1 },
      { userId: 'user-9', metric: 'revenue', value: 12.5 },
    ]);
    expect(res.recorded).to.equal(2);
    await waitFor('the outcome line', () => t.logs.lines.some((l) => l.msg === 'RecordOutcomes'));
    const line = t.logs.lines.find((l) => l.msg === 'RecordOutcomes');
    const rec = asOutcomeRecord(line);
    expect(rec, JSON.stringify(line)).to.not.equal(undefined);
    expect(rec).to.include({ method: 'RecordOutcomes', code: 'OK', arm: 'stable', event: 'outcome' });
    expect(rec?.outcomes).to.deep.equal([
      {
        requestId: 'pred-1',
        instance: 1,
        model: 'conversion',
        metric: 'converted',
        value: 1,
        at: '2026-12-01T11:59:00.000Z',
      },
      {
        user: new UserIds('pseudonym', DEV_PSEUDONYM_KEY).forLog('user-9'),
        model: 'conversion',
        metric: 'revenue',
        value: 12.5,
        at: '2026-12-01T11:59:00.000Z',
      },
    ]);
    expect(JSON.stringify(line)).to.not.include('user-9');
    const m = await t.registry.getSingleMetric('inference_outcomes_total')?.get();
    const value = (metric: string) =>
      m?.values.find(
        (v) => v.labels.metric === metric && v.labels.arm === 'stable' && v.labels.model === 'conversion',
      )?.value;
    expect(value('converted')).to.equal(1);
    expect(value('revenue')).to.equal(1);
  });

  // One row per bad input: the status, and the message naming the outcome index and field.
  const bad: [string, Partial<Outcome>[], status, RegExp][] = [
    ['no outcomes', [], status.INVALID_ARGUMENT, /^outcomes is empty/],
    [
      'neither requestId nor userId',
      [{}],
      status.INVALID_ARGUMENT,
      /^outcomes\[0\]\.requestId or userId is required/,
    ],
    [
      'a malformed requestId',
      [{ requestId: 'has space' }],
      status.INVALID_ARGUMENT,
      /^outcomes\[0\]\.requestId must be/,
    ],
    [
      'an instance without a requestId',
      [{ userId: 'u', instance: 3 }],
      status.INVALID_ARGUMENT,
      /^outcomes\[0\]\.instance needs the requestId/,
    ],
    [
      'a negative instance',
      [{ requestId: 'r', instance: -1 }],
      status.INVALID_ARGUMENT,
      /^outcomes\[0\]\.instance must be the index/,
    ],
    ['a non-ASCII userId', [{ userId: 'ü' }], status.INVALID_ARGUMENT, /^outcomes\[0\]\.userId must be/],
    ['no model', [{ userId: 'u', model: '' }], status.INVALID_ARGUMENT, /^outcomes\[0\]\.model must name/],
    [
      'an unknown model',
      [{ userId: 'u', model: 'nope' }],
      status.NOT_FOUND,
      /^outcomes\[0\]\.model names no model/,
    ],
    [
      'a bad metric name',
      [{ userId: 'u', metric: 'Converted!' }],
      status.INVALID_ARGUMENT,
      /^outcomes\[0\]\.metric must be/,
    ],
    [
      'a NaN value',
      [{ userId: 'u', value: Number.NaN }],
      status.INVALID_ARGUMENT,
      /^outcomes\[0\]\.value must be a finite number/,
    ],
    [
      'no time',
      [{ userId: 'u', occurredAt: undefined }],
      status.INVALID_ARGUMENT,
      /^outcomes\[0\]\.occurredAt is required/,
    ],
    [
      'a future time',
      [{ userId: 'u', occurredAt: new Date(NOW + 3_600_000) }],
      status.INVALID_ARGUMENT,
      /^outcomes\[0\]\.occurredAt is in the future/,
    ],
    [
      'an ancient time',
      [{ userId: 'u', occurredAt: new Date('2020-01-01T00:00:00Z') }],
      status.INVALID_ARGUMENT,
      /^outcomes\[0\]\.occurredAt is more than 400 days ago/,
    ],
    [
      'the second of two is bad',
      [{ userId: 'u' }, { userId: 'u', metric: '' }],
      status.INVALID_ARGUMENT,
      /^outcomes\[1\]\.metric/,
    ],
  ];
  for (const [what, outcomes, code, message] of bad) {
    it(`refuses ${what}: ${status[code]}, recording nothing`, async () => {
      const before = (await t.registry.getSingleMetric('inference_outcomes_total')?.get())?.values.reduce(
        (s, v) => s + v.value,
        0,
      );
      const err = await expectGrpcError(record(t, outcomes));
      expect(err.code).to.equal(code);
      expect(err.details).to.match(message);
      const after = (await t.registry.getSingleMetric('inference_outcomes_total')?.get())?.values.reduce(
        (s, v) => s + v.value,
        0,
      );
      expect(after).to.equal(before);
    });
  }

  it('refuses more outcomes than MAX_OUTCOMES_PER_REQUEST', async () => {
    const small = await startApp({ MAX_OUTCOMES_PER_REQUEST: '2' }, () => NOW);
    try {
      const err = await expectGrpcError(record(small, [{ userId: 'a' }, { userId: 'b' }, { userId: 'c' }]));
      expect(err.code).to.equal(status.INVALID_ARGUMENT);
      expect(err.details).to.equal('outcomes has 3 records; the limit is 2 per request');
    } finally {
      await small.stop();
    }
  });
});
