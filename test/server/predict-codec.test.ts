import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { expect } from 'chai';
import { PredictRequest, PredictResponse } from '../../server/generated/inference/v1/inference.js';
import { decodePredictRequest, encodePredictResponse } from '../../server/predict-codec.js';
import { Rng } from '../helpers/record-corpus.js';

/**
 * The hand-written Predict codec against the generated one, which is the
 * reference: every random request must decode to a deep-equal value (or fail
 * with the same message), and every random response must encode to the same
 * bytes. Mutated bytes (flips, cuts, inserted garbage, wrong wire types, zero
 * and end-group tags, deep nesting) are where a fused decoder would drift.
 */

const KEYS = [
  'age',
  'city',
  'income',
  '',
  'x',
  '__proto__',
  'constructor',
  '0',
  '12',
  'ключ',
  'a'.repeat(40),
  'b'.repeat(64), // the longest key the cache keeps
  'c'.repeat(65),
];
const STRINGS = ['', 'Beijing', 'a', 'ü€𝄞', '\u0000', 'x'.repeat(200), '\ud800'];
const NUMBERS = [0, -0, 1, -1, 0.5, 1e300, -1e-300, Number.MAX_SAFE_INTEGER, Number.NaN, Infinity];

function randomValue(rng: Rng, depth: number): unknown {
  const kind = rng.int(0, depth > 3 ? 3 : 5);
  switch (kind) {
    case 0:
      return null;
    case 1:
      return rng.chance(0.5) ? rng.pick(NUMBERS) : (rng.next() - 0.5) * 1e6;
    case 2:
      return rng.pick(STRINGS);
    case 3:
      return rng.chance(0.5);
    case 4:
      return randomObject(rng, depth + 1);
    default:
      return Array.from({ length: rng.int(0, 4) }, () => randomValue(rng, depth + 1));
  }
}

function randomObject(rng: Rng, depth: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (let i = rng.int(0, 6); i > 0; i--) {
    const key = rng.pick(KEYS);
    if (key === '__proto__') continue; // a JS literal cannot hold it; the raw-bytes cases below can
    out[key] = randomValue(rng, depth);
  }
  return out;
}

function randomRequest(rng: Rng): PredictRequest {
  return {
    model: rng.pick(['', 'conversion', 'm'.repeat(130)]),
    version: rng.pick(['', '20261124T041754Z']),
    requestId: rng.pick(['', 'req-1', 'ü']),
    instances: Array.from({ length: rng.int(0, 5) }, () => randomObject(rng, 0)),
  };
}

/** The generated decoder's result, or its error message. */
function reference(bytes: Uint8Array): { value?: PredictRequest; error?: string } {
  try {
    return { value: PredictRequest.decode(bytes) };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

function fused(bytes: Uint8Array): { value?: PredictRequest; error?: string } {
  try {
    return { value: decodePredictRequest(bytes) };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

/** Deep equality that also tells -0 from 0, NaN from NaN-free, undefined items from missing ones, and checks prototypes. */
function same(a: unknown, b: unknown): boolean {
  if (typeof a === 'number' && typeof b === 'number') return Object.is(a, b);
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return a === b;
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false;
  if (Array.isArray(a)) {
    const bb = b as unknown[];
    return a.length === bb.length && a.every((x, i) => i in bb === i in a && same(x, bb[i]));
  }
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.join('\u0001') !== kb.join('\u0001')) return false;
  return ka.every((k) => same((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

function mutate(rng: Rng, bytes: Uint8Array): Uint8Array {
  const out = Array.from(bytes);
  for (let n = rng.int(1, 4); n > 0; n--) {
    const at = rng.int(0, Math.max(0, out.length - 1));
    switch (rng.int(0, 4)) {
      case 0:
        if (out.length > 0) out[at] = (out[at] as number) ^ (1 << rng.int(0, 7));
        break;
      case 1:
        out.length = rng.int(0, out.length);
        break;
      case 2:
        out.splice(at, 0, ...Array.from({ length: rng.int(1, 6) }, () => rng.int(0, 255)));
        break;
      case 3:
        // a tag with each wire type, a zero tag or an end-group tag
        out.splice(at, 0, rng.pick([0, 4, 8, 9, 10, 11, 12, 13, 14, 15, 17, 18, 26, 32, 34, 42, 50]));
        break;
      default:
        if (out.length > 0) out[at] = rng.int(0, 255);
    }
  }
  return Uint8Array.from(out);
}

/** A Struct with one `key` → struct value, nested `levels` deep, written by hand. */
function nestedStruct(levels: number): Uint8Array {
  let inner = new Uint8Array(0);
  for (let i = 0; i < levels; i++) {
    const value = new BinaryWriter().uint32(42).bytes(inner).finish(); // Value.struct_value
    const entry = new BinaryWriter().uint32(10).string('k').uint32(18).bytes(value).finish();
    inner = new BinaryWriter().uint32(10).bytes(entry).finish(); // Struct.fields
  }
  return new BinaryWriter().uint32(34).bytes(inner).finish(); // PredictRequest.instances
}

function expectSameDecode(bytes: Uint8Array, what: string): void {
  const want = reference(bytes);
  const got = fused(bytes);
  if (want.error !== undefined || got.error !== undefined) {
    expect(got.error, `${what}: error`).to.equal(want.error);
    return;
  }
  expect(
    same(got.value, want.value),
    `${what}: ${JSON.stringify(got.value)} vs ${JSON.stringify(want.value)}`,
  ).to.equal(true);
}

describe('Predict codec (hand-written, against the generated one)', () => {
  it('decodes 3,000 random requests exactly as ts-proto does', () => {
    const rng = new Rng(20261201);
    for (let i = 0; i < 3000; i++) {
      const bytes = PredictRequest.encode(randomRequest(rng)).finish();
      expectSameDecode(bytes, `request ${i}`);
    }
  });

  it('decodes 20,000 mutated requests as ts-proto does: the same value or the same error', () => {
    const rng = new Rng(7);
    let errors = 0;
    for (let i = 0; i < 20_000; i++) {
      const bytes = mutate(rng, PredictRequest.encode(randomRequest(rng)).finish());
      if (reference(bytes).error !== undefined) errors++;
      expectSameDecode(bytes, `mutant ${i}`);
    }
    // Both outcomes must be well represented for the comparison to mean anything.
    expect(errors).to.be.within(1000, 19_000);
  });

  it('returns the right key whatever the key cache holds: 20,000 distinct keys, twice, sharing its 1,024 slots', () => {
    const rng = new Rng(5);
    const keys = Array.from({ length: 20_000 }, (_, i) =>
      rng.chance(0.5)
        ? `k${i}`
        : String.fromCharCode(...Array.from({ length: rng.int(1, 12) }, () => rng.int(32, 126))),
    );
    const instances = [];
    for (let i = 0; i < keys.length; i += 50) {
      instances.push(Object.fromEntries(keys.slice(i, i + 50).map((k, j) => [k, j])));
    }
    const bytes = PredictRequest.encode({ model: 'm', version: '', requestId: '', instances }).finish();
    expectSameDecode(bytes, 'first pass');
    expectSameDecode(bytes, 'second pass, from the cache');
  });

  it('keeps the same recursion limit: 32 nested structs decode, 33 fail with the same error', () => {
    // Each level is a Struct, an entry and a Value: three messages of ts-proto's 100.
    const ok = nestedStruct(32);
    const deep = nestedStruct(33);
    expect(reference(ok).error).to.equal(undefined);
    expectSameDecode(ok, '32 levels');
    expect(fused(deep).error).to.equal('protobuf decode recursion limit exceeded');
    expectSameDecode(deep, '33 levels');
  });

  it('leaves a `__proto__` key out and never changes an instance prototype, as ts-proto', () => {
    const value = new BinaryWriter().uint32(42).bytes(new Uint8Array(0)).finish();
    const polluting = new BinaryWriter().uint32(10).string('__proto__').uint32(18).bytes(value).finish();
    const plain = new BinaryWriter()
      .uint32(10)
      .string('age')
      .uint32(18)
      .bytes(new BinaryWriter().uint32(17).double(3).finish())
      .finish();
    const struct = new BinaryWriter().uint32(10).bytes(polluting).uint32(10).bytes(plain).finish();
    const bytes = new BinaryWriter().uint32(34).bytes(struct).finish();
    const got = decodePredictRequest(bytes).instances[0] as Record<string, unknown>;
    expect(Object.getPrototypeOf(got)).to.equal(Object.prototype);
    expect(Object.keys(got)).to.deep.equal(['age']);
    expectSameDecode(bytes, '__proto__');
  });

  it('applies ts-proto’s priority when one Value sets several kinds (string, number, bool, struct, list, null)', () => {
    const kinds = new BinaryWriter()
      .uint32(8)
      .int32(0)
      .uint32(50)
      .bytes(new Uint8Array(0))
      .uint32(32)
      .bool(true);
    const v = kinds.uint32(17).double(2).finish();
    const entry = new BinaryWriter().uint32(10).string('a').uint32(18).bytes(v).finish();
    const bytes = new BinaryWriter()
      .uint32(34)
      .bytes(new BinaryWriter().uint32(10).bytes(entry).finish())
      .finish();
    expect(decodePredictRequest(bytes).instances).to.deep.equal([{ a: 2 }]);
    expectSameDecode(bytes, 'several kinds');
  });

  it('refuses what the generated encoder refuses (a label or action that is no int32), with its message', () => {
    for (const bad of [1.5, -0.5, 2 ** 31, -(2 ** 31) - 1, Number.NaN, Infinity, undefined, null]) {
      for (const field of ['label', 'action'] as const) {
        const message = {
          model: 'm',
          version: '',
          requestId: 'r',
          arm: 'stable',
          predictions: [{ score: 0.5, label: 1, group: 'g', action: 1, [field]: bad }],
        } as unknown as PredictResponse;
        let want: string | undefined;
        try {
          PredictResponse.encode(message);
        } catch (err) {
          want = (err as Error).message;
        }
        // null and undefined fail ts-proto's own `!== 0` test the same way (they are not 0).
        expect(want, `ts-proto on ${field}=${bad}`).to.match(/^invalid int32: /);
        expect(() => encodePredictResponse(message), `${field}=${bad}`).to.throw(want);
      }
    }
  });

  it('encodes 3,000 random responses to the generated encoder’s bytes', () => {
    const rng = new Rng(99);
    const ints = [0, 1, -1, 127, 128, 300, 2 ** 31 - 1, -(2 ** 31), -5];
    for (let i = 0; i < 3000; i++) {
      const message: PredictResponse = {
        model: rng.pick(['', 'conversion', 'ü€𝄞', '\ud800x', 'm'.repeat(200)]),
        version: rng.pick(['', '20261124T041754Z']),
        requestId: rng.pick(['', 'req-1', 'r'.repeat(129)]),
        arm: rng.pick(['', 'stable', 'canary']),
        predictions: Array.from({ length: rng.int(0, 40) }, () => ({
          score: rng.pick([0, -0, 1, 0.123456789, Number.NaN, -2.5, 1e-320]),
          label: rng.pick(ints),
          group: rng.pick(['', 'baseline', 'experiment', 'control', 'canary_negative']),
          action: rng.pick(ints),
        })),
      };
      const want = Buffer.from(PredictResponse.encode(message).finish());
      const got = encodePredictResponse(message);
      expect(got.equals(want), `response ${i}: ${got.toString('hex')} vs ${want.toString('hex')}`).to.equal(
        true,
      );
    }
  });
});
