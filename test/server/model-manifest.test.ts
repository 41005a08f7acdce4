import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { ManifestError, parseManifest } from '../../server/model-manifest.js';
import { DEMO_MODELS, NEWER } from '../helpers/server.js';

/** The newest demo manifest, as committed: every error case below bends one entry of it. */
function demo(): Record<string, unknown> & { fields: Record<string, unknown>[] } {
  return JSON.parse(readFileSync(join(DEMO_MODELS, 'conversion', NEWER, 'model.json'), 'utf8'));
}

const EXPECT = { name: 'conversion', version: NEWER };

/** The demo manifest with fields[i] changed by `edit` (a key set to undefined is removed). */
function withField(i: number, edit: Record<string, unknown>): unknown {
  const m = demo();
  const f = { ...m.fields[i], ...edit };
  for (const [k, v] of Object.entries(edit)) if (v === undefined) delete f[k];
  m.fields[i] = f;
  return m;
}

// Field positions in the demo manifest.
const USER_ID = 0;
const BIRTHDAY = 1;
const APP_ID = 3;
const SCREEN = 10;

describe('parseManifest', () => {
  it('accepts the committed demo manifest and reads its ranges', () => {
    const m = parseManifest(demo(), EXPECT);
    const byName = new Map(m.fields.map((f) => [f.name, f]));
    expect(byName.get('birthday')?.range).to.deep.equal({ min: 0, max: 120 });
    expect(byName.get('screenSize')?.range).to.deep.equal({ min: 0, max: 20000 });
    expect(byName.get('appId')?.range).to.equal(undefined);
  });

  it('takes a range open on one side as unbounded there', () => {
    const m = parseManifest(withField(BIRTHDAY, { range: { max: 150 } }), EXPECT);
    expect(m.fields[BIRTHDAY]?.range).to.deep.equal({ min: Number.NEGATIVE_INFINITY, max: 150 });
  });

  const cases: [string, unknown, RegExp][] = [
    [
      'min above max',
      withField(BIRTHDAY, { range: { min: 2, max: 1 } }),
      /fields\[1\]\.range\.min must not exceed/,
    ],
    ['an empty range', withField(BIRTHDAY, { range: {} }), /fields\[1\]\.range must have min and\/or max/],
    ['an unknown range key', withField(BIRTHDAY, { range: { min: 0, step: 1 } }), /and nothing else/],
    [
      'a string bound',
      withField(BIRTHDAY, { range: { min: '0' } }),
      /fields\[1\]\.range\.min must be a finite/,
    ],
    [
      'a boolean bound',
      withField(BIRTHDAY, { range: { max: true } }),
      /fields\[1\]\.range\.max must be a finite/,
    ],
    ['a null range', withField(BIRTHDAY, { range: null }), /fields\[1\]\.range must be an object/],
    ['a list as range', withField(BIRTHDAY, { range: [0, 1] }), /fields\[1\]\.range must be an object/],
    [
      'a range on a vocabulary',
      withField(APP_ID, { range: { min: 0 } }),
      /fields\[3\]\.range is only allowed on/,
    ],
    [
      'a range on a field without transform',
      withField(USER_ID, { range: { min: 0 } }),
      /fields\[0\]\.range is only/,
    ],
    [
      'a repeated vocabulary value',
      withField(APP_ID, { transform: { kind: 'vocabulary', values: ['1', '2', '1'] } }),
      /fields\[3\]\.transform\.values must not repeat/,
    ],
    [
      'an inherited field name',
      withField(USER_ID, { name: 'constructor' }),
      /every JavaScript object inherits/,
    ],
    [
      '__proto__ as a field name',
      withField(USER_ID, { name: '__proto__' }),
      /every JavaScript object inherits/,
    ],
    [
      'a non-boolean required',
      withField(BIRTHDAY, { required: 1 }),
      /fields\[1\]\.required must be true or false/,
    ],
    [
      'a default of the wrong type',
      withField(SCREEN, { default: 0 }),
      /fields\[10\]\.default must be a string/,
    ],
    [
      'a wrongly typed default without transform',
      withField(USER_ID, { default: '0' }),
      /fields\[0\]\.default/,
    ],
    [
      'an optional field with a transform and no default',
      withField(SCREEN, { default: undefined }),
      /fields\[10\]\.default must be a string for an optional field/,
    ],
  ];
  for (const [what, json, message] of cases) {
    it(`refuses ${what}, naming the entry`, () => {
      expect(() => parseManifest(json, EXPECT))
        .to.throw(ManifestError)
        .with.property('message')
        .that.matches(message);
    });
  }
});
