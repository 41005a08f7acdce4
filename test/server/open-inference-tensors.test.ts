import { Metadata } from '@grpc/grpc-js';
import { expect } from 'chai';
import { ServingError } from '../../server/errors.js';
import type { ModelInferRequest } from '../../server/generated/inference/oip/open_inference_grpc.js';
import type { FieldSpec } from '../../server/model-manifest.js';
import {
  encodeOutputs,
  inputDatatype,
  OUTPUTS,
  rawStrings,
  recordsFromTensors,
  validateModelInfer,
} from '../../server/open-inference-tensors.js';

/** The tensor codec on its own: pure functions of requests, manifests and scored rows. */

const field = (name: string, type: 'number' | 'string', o: Partial<FieldSpec> = {}): FieldSpec => ({
  name,
  type,
  required: false,
  default: undefined,
  transform: undefined,
  range: undefined,
  ...o,
});

const FIELDS: FieldSpec[] = [
  field('amount', 'number', { transform: { kind: 'numeric' } }),
  field('appId', 'number', { required: true, transform: { kind: 'vocabulary', values: ['1'] } }),
  field('birthday', 'string', { transform: { kind: 'age', unit: 'years' } }),
];

function request(o: Partial<ModelInferRequest>): ModelInferRequest {
  return {
    modelName: 'm',
    modelVersion: '',
    id: '',
    parameters: {},
    inputs: [],
    outputs: [],
    rawInputContents: [],
    ...o,
  };
}

const tensor = (name: string, datatype: string, n: number) => ({
  name,
  datatype,
  shape: [n],
  parameters: {},
  contents: undefined,
});

/** `bytes` copied to offset `at` of a fresh buffer, returned as a slice there (as the decoder hands them out). */
function at(offset: number, bytes: Buffer): Buffer {
  const whole = Buffer.alloc(offset + bytes.length);
  bytes.copy(whole, offset);
  return whole.subarray(offset);
}

describe('Open Inference Protocol tensors (server/open-inference-tensors.ts)', () => {
  it('advertises FP64 for numeric fields, INT64 for other numbers, BYTES for strings', () => {
    expect(FIELDS.map(inputDatatype)).to.deep.equal(['FP64', 'INT64', 'BYTES']);
  });

  it('reads raw elements little-endian from a slice at any byte offset (no aligned typed-array view)', () => {
    const fp64 = Buffer.alloc(16);
    fp64.writeDoubleLE(1.5, 0);
    fp64.writeDoubleLE(-2.25, 8);
    const int64 = Buffer.alloc(16);
    int64.writeBigInt64LE(1n, 0);
    int64.writeBigInt64LE(-1n, 8);
    const bytes = Buffer.from([
      10,
      0,
      0,
      0,
      ...Buffer.from('1995-04-29'),
      4,
      0,
      0,
      0,
      ...Buffer.from('2000'),
    ]);
    const raw = [at(1, fp64), at(3, int64), at(5, bytes)];
    // The case that matters: a Float64Array over such a slice throws (and a copy would be needed).
    expect(() => new Float64Array(raw[0]?.buffer as ArrayBuffer, raw[0]?.byteOffset, 2)).to.throw(RangeError);
    const req = validateModelInfer(
      request({
        inputs: [tensor('amount', 'FP64', 2), tensor('appId', 'INT64', 2), tensor('birthday', 'BYTES', 2)],
        rawInputContents: raw,
      }),
      new Metadata(),
      256,
    );
    expect(recordsFromTensors(req, FIELDS, 'm@v')).to.deep.equal([
      { amount: 1.5, appId: 1, birthday: '1995-04-29' },
      { amount: -2.25, appId: -1, birthday: '2000' },
    ]);
  });

  it('turns an INT64 into the float64 Number(bigint) gives, beyond 2^53 too', () => {
    const values = [2n ** 53n + 1n, -(2n ** 62n) - 12345n, 2n ** 63n - 1n, -(2n ** 63n), 123456789012n];
    const raw = Buffer.alloc(8 * values.length);
    values.forEach((v, i) => {
      raw.writeBigInt64LE(v, 8 * i);
    });
    const req = validateModelInfer(
      request({ inputs: [tensor('appId', 'INT64', values.length)], rawInputContents: [raw] }),
      new Metadata(),
      256,
    );
    expect(recordsFromTensors(req, FIELDS, 'm@v').map((r) => r.appId)).to.deep.equal(values.map(Number));
  });

  it('decodes BYTES as UTF-8 like the protobuf decoder (invalid sequences → U+FFFD), with exact framing', () => {
    const good = Buffer.from([2, 0, 0, 0, 0xc3, 0xa9, 1, 0, 0, 0, 0xff]);
    expect(rawStrings('x', good, 2)).to.deep.equal(['é', '\ufffd']);
    expect(() => rawStrings('x', good, 3)).to.throw(ServingError, /ends after 2 elements/);
    expect(() => rawStrings('x', good, 1)).to.throw(ServingError, /has 5 bytes after the last element/);
    expect(() => rawStrings('x', Buffer.from([9, 0, 0, 0, 1]), 1)).to.throw(
      ServingError,
      /row 0: its length prefix says 9 bytes but only 1 remain/,
    );
    // A prefix near 2^32 cannot wrap around the bounds check.
    expect(() => rawStrings('x', Buffer.from([0xff, 0xff, 0xff, 0xff, 1]), 1)).to.throw(
      ServingError,
      /says 4294967295 bytes/,
    );
  });

  it('fields without an input are missing (their defaults apply); the first required one missing is named', () => {
    const ok = validateModelInfer(
      request({ inputs: [tensor('appId', 'INT32', 1)], rawInputContents: [Buffer.from([1, 0, 0, 0])] }),
      new Metadata(),
      256,
    );
    expect(recordsFromTensors(ok, FIELDS, 'm@v')).to.deep.equal([{ appId: 1 }]);
    const none = validateModelInfer(
      request({ inputs: [tensor('amount', 'FP32', 1)], rawInputContents: [Buffer.alloc(4)] }),
      new Metadata(),
      256,
    );
    expect(() => recordsFromTensors(none, FIELDS, 'm@v')).to.throw(ServingError, /^input appId is required/);
  });

  it('encodes every output raw, little-endian, in the order asked; all four by default', () => {
    const scored = [
      { score: 0.25, label: 1 as const, group: 'experiment' as const, action: 1 as const },
      { score: 0.5, label: 0 as const, group: 'canary_negative' as const, action: 0 as const },
    ];
    const all = encodeOutputs(
      scored,
      OUTPUTS.map((o) => o.name),
    );
    expect(all.outputs.map((o) => [o.name, o.datatype, o.shape])).to.deep.equal([
      ['score', 'FP32', [2]],
      ['label', 'INT64', [2]],
      ['group', 'BYTES', [2]],
      ['action', 'INT64', [2]],
    ]);
    expect(all.raw[0]?.toString('hex')).to.equal('0000803e0000003f');
    expect(all.raw[1]?.toString('hex')).to.equal('01000000000000000000000000000000');
    expect(all.raw[2]).to.deep.equal(
      Buffer.concat([
        Buffer.from([10, 0, 0, 0]),
        Buffer.from('experiment'),
        Buffer.from([15, 0, 0, 0]),
        Buffer.from('canary_negative'),
      ]),
    );
    const some = encodeOutputs(scored, ['action', 'score']);
    expect(some.outputs.map((o) => o.name)).to.deep.equal(['action', 'score']);
    expect(some.raw[1]).to.deep.equal(all.raw[0]);
  });
});
