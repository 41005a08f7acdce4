import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { FieldError } from '../../server/errors.js';
import { type FieldSpec, parseManifest } from '../../server/model-manifest.js';
import { fnv1a32, Preprocessor, parseIsoDate } from '../../server/preprocess.js';
import { DEMO_MODELS, DEMO_VERSIONS, SAMPLE_RECORD as SEED } from '../helpers/server.js';

function field(spec: Partial<FieldSpec> & Pick<FieldSpec, 'name' | 'type'>): FieldSpec {
  return { required: true, default: undefined, transform: undefined, range: undefined, ...spec };
}

function row(p: Preprocessor, record: Record<string, unknown>, now = 0): number[] {
  const out = new Float32Array(p.width);
  p.fill(record, now, out, 0);
  return [...out];
}

describe('preprocess', () => {
  it('fnv1a32 matches the published FNV-1a test vectors', () => {
    expect(fnv1a32('')).to.equal(0x811c9dc5);
    expect(fnv1a32('a')).to.equal(0xe40c292c);
    expect(fnv1a32('foobar')).to.equal(0xbf9cf968);
    // Non-ASCII text is hashed over its UTF-8 bytes, like ASCII's.
    const viaBytes = (t: string) =>
      [...Buffer.from(t, 'utf8')].reduce((h, b) => Math.imul(h ^ b, 0x01000193) >>> 0, 0x811c9dc5);
    expect(fnv1a32('TECNO-BB4k')).to.equal(viaBytes('TECNO-BB4k'));
    expect(fnv1a32('华为 Mate 60')).to.equal(viaBytes('华为 Mate 60'));
  });

  describe('parseIsoDate', () => {
    it('accepts the seed format with a +0000 zone', () => {
      expect(parseIsoDate('1995-04-29T00:00:00.000+0000')).to.equal(Date.UTC(1995, 3, 29));
    });
    it('applies zones, fractions and defaults', () => {
      expect(parseIsoDate('2020-11-02T02:51:19Z')).to.equal(Date.UTC(2020, 10, 2, 2, 51, 19));
      expect(parseIsoDate('2020-11-02T02:51:19.123456789+01:30')).to.equal(
        Date.UTC(2020, 10, 2, 2, 51, 19, 123) - 90 * 60_000,
      );
      expect(parseIsoDate('2020-11-02 02:51')).to.equal(Date.UTC(2020, 10, 2, 2, 51));
      expect(parseIsoDate('2020-11-02')).to.equal(Date.UTC(2020, 10, 2));
    });
    it('counts years 0000-0099 literally, in the proleptic Gregorian calendar', () => {
      // Date.UTC maps years 0-99 to 1900-1999 (1900 is not a leap year, 0000 is).
      expect(parseIsoDate('0000-02-29')).to.equal(new Date('0000-02-29T00:00:00Z').getTime());
      expect(parseIsoDate('0000-01-01T00:00+23:59')).to.equal(Date.parse('-000001-12-31T00:01:00Z'));
      expect(parseIsoDate('0050-06-15T12:00:00Z')).to.equal(Date.parse('0050-06-15T12:00:00Z'));
      expect(parseIsoDate('9999-12-31T23:59:59.999-23:59')).to.equal(
        Date.parse('+010000-01-01T23:58:59.999Z'),
      );
    });
    it('truncates a fraction of 1 to 9 digits to milliseconds', () => {
      const base = Date.UTC(2020, 10, 2, 2, 51, 19);
      expect(parseIsoDate('2020-11-02T02:51:19.9')).to.equal(base + 900);
      expect(parseIsoDate('2020-11-02T02:51:19.98')).to.equal(base + 980);
      expect(parseIsoDate('2020-11-02T02:51:19.987654321')).to.equal(base + 987);
    });
    for (const bad of [
      '2020-13-01',
      '2021-02-29',
      '0100-02-29',
      '2020-11-02T24:00',
      'yesterday',
      '',
      '2020-11-02T02:51:19+2500',
      '1995-04-29+05:30',
      '1995-04-29-0800',
      '1995-04-29Z',
      '1995-04-29T00:00:00.Z',
      '1995-04-29T00:00:00.0000000000Z',
      '1995-04-29T00:00.5',
      '1995-04-29T00:00:00+05',
      '1995-04-29T00:00:00+05:3',
      '1995-04-29T00:00:00+05:30:00',
      '1995-04-29t00:00',
      '1995-04-29T00:00:00z',
      '1995-04-29T00:00\n',
      '١٩٩٥-04-29',
      '+1995-04-29',
    ]) {
      it(`rejects "${bad}"`, () => expect(parseIsoDate(bad)).to.equal(undefined));
    }
  });

  it('builds columns for every transform kind, in field order', () => {
    const p = new Preprocessor({
      fields: [
        field({ name: 'x', type: 'number', transform: { kind: 'numeric' } }),
        field({ name: 'c', type: 'number', transform: { kind: 'vocabulary', values: ['1', '2'] } }),
        field({ name: 'd', type: 'string', transform: { kind: 'hash', buckets: 4 } }),
        field({ name: 'b', type: 'string', transform: { kind: 'age', unit: 'days' } }),
        field({ name: 's', type: 'string', transform: { kind: 'screen' } }),
        field({ name: 'id', type: 'number', required: false }),
      ],
    });
    expect(p.width).to.equal(1 + 3 + 4 + 1 + 2);
    const now = Date.UTC(2020, 0, 11);
    const hashCol = fnv1a32('abc') % 4;
    const expected = [2.5, 0, 1, 0, 0, 0, 0, 0, 10, 720, 1440];
    expected[4 + hashCol] = 1;
    expect(row(p, { x: 2.5, c: 2, d: 'abc', b: '2020-01-01', s: '720*1440', id: 7 }, now)).to.deep.equal(
      expected,
    );
  });

  it('puts unknown categories in the last (unknown) bucket', () => {
    const p = new Preprocessor({
      fields: [field({ name: 'c', type: 'string', transform: { kind: 'vocabulary', values: ['a', 'b'] } })],
    });
    expect(row(p, { c: 'zzz' })).to.deep.equal([0, 0, 1]);
  });

  it('uses the default of a missing optional field', () => {
    const p = new Preprocessor({
      fields: [
        field({ name: 's', type: 'string', required: false, default: '0*0', transform: { kind: 'screen' } }),
      ],
    });
    expect(row(p, {})).to.deep.equal([0, 0]);
  });

  const numeric = new Preprocessor({
    fields: [field({ name: 'x', type: 'number', transform: { kind: 'numeric' } })],
  });
  const cases: [string, Preprocessor, Record<string, unknown>, RegExp][] = [
    ['a missing required field', numeric, {}, /is required but missing/],
    ['a string where a number belongs', numeric, { x: '1' }, /must be a finite number, got a string/],
    ['NaN', numeric, { x: Number.NaN }, /got NaN/],
    ['Infinity', numeric, { x: Number.POSITIVE_INFINITY }, /got Infinity/],
    ['null', numeric, { x: null }, /got null/],
    ['a number beyond float32', numeric, { x: 1e39 }, /float32/],
    ['a list', numeric, { x: [1] }, /got a list/],
    [
      'an unparsable date',
      new Preprocessor({
        fields: [field({ name: 'b', type: 'string', transform: { kind: 'age', unit: 'years' } })],
      }),
      { b: '29/04/1995' },
      /must be an ISO 8601 date/,
    ],
    [
      'a malformed screen size',
      new Preprocessor({ fields: [field({ name: 's', type: 'string', transform: { kind: 'screen' } })] }),
      { s: '720x1440' },
      /must look like "720\*1440"/,
    ],
    [
      'a fractional category',
      new Preprocessor({
        fields: [field({ name: 'c', type: 'number', transform: { kind: 'vocabulary', values: ['1'] } })],
      }),
      { c: 1.5 },
      /must be an integer/,
    ],
  ];
  for (const [what, p, record, message] of cases) {
    it(`rejects ${what}, naming the field`, () => {
      const err = (() => {
        try {
          row(p, record);
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(err).to.be.instanceOf(FieldError);
      // The one field of the case's record (the missing one of the empty record is x).
      expect((err as FieldError).field).to.equal(Object.keys(record)[0] ?? 'x');
      expect((err as FieldError).reason).to.match(message);
    });
  }

  it('reads screen sizes of 1-6 ASCII digits a side, leading zeros included', () => {
    const p = new Preprocessor({
      fields: [field({ name: 's', type: 'string', transform: { kind: 'screen' } })],
    });
    expect(row(p, { s: '999999*0720' })).to.deep.equal([999999, 720]);
    for (const bad of ['1000000*1', '1*0000000', '720*1440*2', '*1', '1*', '٧٢٠*1440', '720 *1440', '+1*1']) {
      expect(() => row(p, { s: bad }), bad).to.throw(FieldError);
    }
  });

  it('keys numbers only when they are integers float64 holds exactly', () => {
    const p = new Preprocessor({
      fields: [
        field({
          name: 'c',
          type: 'number',
          transform: { kind: 'vocabulary', values: ['0', '9007199254740991'] },
        }),
      ],
    });
    expect(row(p, { c: -0 })).to.deep.equal([1, 0, 0]);
    expect(row(p, { c: 2 ** 53 - 1 })).to.deep.equal([0, 1, 0]);
    for (const bad of [2 ** 53, -(2 ** 53), 1e21, 1e300, 0.5]) {
      expect(() => row(p, { c: bad }), String(bad)).to.throw(FieldError, /integer within/);
    }
  });

  it('hashes a lone surrogate as U+FFFD, as the wire would carry it', () => {
    expect(fnv1a32('\ud83d')).to.equal(fnv1a32('\ufffd'));
    expect(fnv1a32('a\ud800b')).to.equal(fnv1a32('a\ufffdb'));
  });

  describe('ranges', () => {
    const p = new Preprocessor({
      fields: [
        field({ name: 'x', type: 'number', transform: { kind: 'numeric' }, range: { min: -1, max: 1 } }),
        field({
          name: 'b',
          type: 'string',
          transform: { kind: 'age', unit: 'days' },
          range: { min: 0, max: Number.POSITIVE_INFINITY },
        }),
        field({
          name: 's',
          type: 'string',
          transform: { kind: 'screen' },
          range: { min: Number.NEGATIVE_INFINITY, max: 100 },
        }),
      ],
    });
    const now = Date.UTC(2026, 10, 20);
    const ok = { x: 1, b: '2026-11-20', s: '100*0' };
    it('accept the bounds themselves', () => expect(row(p, ok, now)).to.deep.equal([1, 0, 100, 0]));
    for (const [name, value] of [
      ['x', 1.0000001],
      ['x', -2],
      ['b', '2026-11-20T00:00:00.001Z'],
      ['s', '0*101'],
    ] as const) {
      it(`refuse ${name} = ${value}, naming the field`, () => {
        expect(() => row(p, { ...ok, [name]: value }, now))
          .to.throw(FieldError, /outside the manifest's range/)
          .with.property('field', name);
      });
    }
    it('refuse a createTime in year 9999 with the demo manifest', () => {
      const dir = join(DEMO_MODELS, 'conversion', DEMO_VERSIONS[0] as string);
      const json = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')) as {
        name: string;
        version: string;
      };
      const demo = new Preprocessor(parseManifest(json, json));
      const record = { ...SEED, createTime: '9999-01-01T00:00:00.000+0000' };
      expect(() => row(demo, record, now))
        .to.throw(FieldError)
        .with.property('field', 'createTime');
      expect(row(demo, SEED, now)).to.have.length(demo.width);
    });
  });

  it('refuses, when built, a default that its own field would refuse', () => {
    const build = (spec: Partial<FieldSpec>) => () =>
      new Preprocessor({
        fields: [
          field({ name: 'f', type: 'number', required: false, transform: { kind: 'numeric' }, ...spec }),
        ],
      });
    expect(build({ default: 0 })).not.to.throw();
    expect(build({ default: 5, range: { min: 0, max: 1 } })).to.throw(FieldError, /default is refused/);
    expect(build({ default: 1e39 })).to.throw(FieldError, /default is refused/);
    expect(build({ type: 'string', default: '1*', transform: { kind: 'screen' } })).to.throw(FieldError);
    // An age's range depends on the request time: only the date itself is checked.
    expect(
      build({
        type: 'string',
        default: '1995-04-29',
        transform: { kind: 'age', unit: 'days' },
        range: { min: 0, max: 1 },
      }),
    ).not.to.throw();
  });

  describe('golden vectors of every demo version (inputs to 1e-5)', () => {
    for (const version of DEMO_VERSIONS) {
      it(version, () => {
        const dir = join(DEMO_MODELS, 'conversion', version);
        const manifest = parseManifest(JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')), {
          name: 'conversion',
          version,
        });
        const golden = JSON.parse(readFileSync(join(dir, 'golden.json'), 'utf8')) as {
          referenceTime: string;
          cases: { id: string; record: Record<string, unknown>; inputs: number[] }[];
        };
        const p = new Preprocessor(manifest);
        const now = Date.parse(golden.referenceTime);
        expect(golden.cases.length).to.be.greaterThan(10);
        for (const c of golden.cases) {
          const got = row(p, c.record, now);
          expect(got.length, c.id).to.equal(c.inputs.length);
          got.forEach((v, j) => {
            expect(
              Math.abs(v - (c.inputs[j] as number)),
              `${c.id} column ${manifest.featureNames[j]}`,
            ).to.be.at.most(1e-5);
          });
        }
      });
    }
  });
});
