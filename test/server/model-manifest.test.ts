import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { ManifestError, parseManifest } from '../../server/model-manifest.js';
import { DEMO_MODELS, NEWER } from '../helpers/server.js';

/** The newest demo manifest, as committed: every error case below bends one entry of it. */
function demo(): Record<string, unknown> & { fields: Record<string, unknown>[]; featureNames: string[] } {
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

/** The demo manifest after `edit` (a top-level or nested change). */
function edited(edit: (m: Record<string, unknown> & { fields: Record<string, unknown>[] }) => void): unknown {
  const m = demo();
  edit(m);
  return m;
}

const HASH = 11;

describe('parseManifest: every other ManifestError, each naming its entry', () => {
  // Each message is matched whole, so a case reaching a different check fails.
  const cases: [string, unknown, RegExp][] = [
    ['a manifest that is not an object (null)', null, /^manifest must be an object$/],
    ['a manifest that is a list', [demo()], /^manifest must be an object$/],
    ['schemaVersion 2', edited((m) => (m.schemaVersion = 2)), /^schemaVersion must be 1$/],
    ['schemaVersion "1"', edited((m) => (m.schemaVersion = '1')), /^schemaVersion must be 1$/],
    ['a missing name', edited((m) => delete m.name), /^name must be a non-empty string$/],
    ['an empty version', edited((m) => (m.version = '')), /^version must be a non-empty string$/],
    [
      'a name that is not the directory',
      edited((m) => (m.name = 'other')),
      /^name "other" does not match directory "conversion"$/,
    ],
    [
      'a version that is not the directory',
      edited((m) => (m.version = '20200101T000000Z')),
      new RegExp(`^version "20200101T000000Z" does not match directory "${NEWER}"$`),
    ],
    ['a numeric sha256', edited((m) => (m.sha256 = 7)), /^sha256 must be a non-empty string$/],
    ['a short sha256', edited((m) => (m.sha256 = 'abc123')), /^sha256 must be 64 hex digits$/],
    [
      'a sha256 with a non-hex digit',
      edited((m) => (m.sha256 = `${'0'.repeat(63)}g`)),
      /^sha256 must be 64 hex digits$/,
    ],
    ['a string threshold', edited((m) => (m.threshold = '0.5')), /^threshold must be a finite number$/],
    ['a threshold above 1', edited((m) => (m.threshold = 1.01)), /^threshold must be within \[0, 1\]$/],
    ['a negative threshold', edited((m) => (m.threshold = -0.01)), /^threshold must be within \[0, 1\]$/],
    ['a missing onnx block', edited((m) => delete m.onnx), /^onnx must be an object$/],
    [
      'a non-numeric positiveIndex',
      edited((m) => ((m.onnx as Record<string, unknown>).positiveIndex = 'one')),
      /^onnx\.positiveIndex must be a finite number$/,
    ],
    [
      'a negative positiveIndex',
      edited((m) => ((m.onnx as Record<string, unknown>).positiveIndex = -1)),
      /^onnx\.positiveIndex must be ≥ 0$/,
    ],
    [
      'a fractional positiveIndex',
      edited((m) => ((m.onnx as Record<string, unknown>).positiveIndex = 0.5)),
      /^onnx\.positiveIndex must be ≥ 0$/,
    ],
    [
      'a missing onnx input name',
      edited((m) => delete (m.onnx as Record<string, unknown>).input),
      /^onnx\.input must be a non-empty string$/,
    ],
    [
      'a missing onnx output name',
      edited((m) => delete (m.onnx as Record<string, unknown>).output),
      /^onnx\.output must be a non-empty string$/,
    ],
    ['no fields', edited((m) => (m.fields = [])), /^fields must be a non-empty list$/],
    [
      'fields that are not a list',
      edited((m) => (m.fields = {} as never)),
      /^fields must be a non-empty list$/,
    ],
    [
      'a field that is not an object',
      edited((m) => (m.fields[2] = 'createTime' as never)),
      /^fields\[2\] must be an object$/,
    ],
    [
      'a field without a name',
      withField(BIRTHDAY, { name: '' }),
      /^fields\[1\]\.name must be a non-empty string$/,
    ],
    [
      'an unknown field type',
      withField(BIRTHDAY, { type: 'date' }),
      /^fields\[1\]\.type must be number or string$/,
    ],
    [
      'a transform that is not an object',
      withField(BIRTHDAY, { transform: 'age' }),
      /^fields\[1\]\.transform must be an object$/,
    ],
    [
      'an unknown transform kind',
      withField(BIRTHDAY, { transform: { kind: 'embedding' } }),
      /^fields\[1\]\.transform\.kind "embedding" is not a known transform$/,
    ],
    [
      'a numeric transform on a string field',
      withField(BIRTHDAY, { transform: { kind: 'numeric' }, range: undefined }),
      /^fields\[1\]\.transform: numeric needs a number field$/,
    ],
    [
      'an age transform on a number field',
      withField(APP_ID, { transform: { kind: 'age', unit: 'years' } }),
      /^fields\[3\]\.transform: age needs a string field$/,
    ],
    [
      'a screen transform on a number field',
      withField(APP_ID, { transform: { kind: 'screen' } }),
      /^fields\[3\]\.transform: screen needs a string field$/,
    ],
    [
      'an age in months',
      withField(BIRTHDAY, { transform: { kind: 'age', unit: 'months' } }),
      /^fields\[1\]\.transform\.unit must be years or days$/,
    ],
    [
      'an empty vocabulary',
      withField(APP_ID, { transform: { kind: 'vocabulary', values: [] } }),
      /^fields\[3\]\.transform\.values must be a non-empty list of strings$/,
    ],
    [
      'a vocabulary of numbers',
      withField(APP_ID, { transform: { kind: 'vocabulary', values: [1, 2] } }),
      /^fields\[3\]\.transform\.values must be a non-empty list of strings$/,
    ],
    [
      'a vocabulary that is not a list',
      withField(APP_ID, { transform: { kind: 'vocabulary', values: '1,2' } }),
      /^fields\[3\]\.transform\.values must be a non-empty list of strings$/,
    ],
    [
      'hash buckets that are not a number',
      withField(HASH, { transform: { kind: 'hash', buckets: '16' } }),
      /^fields\[11\]\.transform\.buckets must be a finite number$/,
    ],
    [
      'zero hash buckets',
      withField(HASH, { transform: { kind: 'hash', buckets: 0 } }),
      /^fields\[11\]\.transform\.buckets must be 1\.\.1e6$/,
    ],
    [
      'fractional hash buckets',
      withField(HASH, { transform: { kind: 'hash', buckets: 2.5 } }),
      /^fields\[11\]\.transform\.buckets must be 1\.\.1e6$/,
    ],
    [
      'more than a million hash buckets',
      withField(HASH, { transform: { kind: 'hash', buckets: 1_000_001 } }),
      /^fields\[11\]\.transform\.buckets must be 1\.\.1e6$/,
    ],
    [
      'a NaN default on a number field',
      withField(USER_ID, { required: false, default: Number.NaN }),
      /^fields\[0\]\.default must be a finite number$/,
    ],
    [
      'a field declared twice',
      edited((m) => m.fields.push({ ...m.fields[USER_ID] })),
      /^field "userId" is declared twice$/,
    ],
    [
      'no field with a transform',
      edited((m) => {
        m.fields = [m.fields[USER_ID] as Record<string, unknown>];
        m.featureNames = [];
      }),
      /^no field has a transform, so the model would get no inputs$/,
    ],
    [
      'one feature name too few',
      edited((m) => (m.featureNames as string[]).pop()),
      new RegExp(
        `^featureNames has ${demo().featureNames.length - 1} entries but the fields produce ${demo().featureNames.length} columns$`,
      ),
    ],
    [
      'no featureNames',
      edited((m) => delete m.featureNames),
      new RegExp(`^featureNames has 0 entries but the fields produce ${demo().featureNames.length} columns$`),
    ],
    [
      'an empty feature name',
      edited((m) => ((m.featureNames as string[])[4] = '')),
      /^featureNames\[4\] must be a non-empty string$/,
    ],
    ['metrics that are not an object', edited((m) => (m.metrics = [0.7])), /^metrics must be an object$/],
  ];
  for (const [what, json, message] of cases) {
    it(`refuses ${what}`, () => {
      expect(() => parseManifest(json, EXPECT))
        .to.throw(ManifestError)
        .with.property('message')
        .that.matches(message);
    });
  }

  it('ignores non-finite metrics and defaults the optional descriptive fields', () => {
    const m = parseManifest(
      edited((x) => {
        x.metrics = { auc: 0.75, broken: 'n/a', inf: null };
        delete x.family;
        delete x.trainedAt;
        (x.onnx as Record<string, unknown>).positiveIndex = undefined;
        x.sha256 = String(x.sha256).toUpperCase();
      }),
      EXPECT,
    );
    expect(m.metrics).to.deep.equal({ auc: 0.75 });
    expect([m.family, m.trainedAt, m.onnx.positiveIndex]).to.deep.equal(['unknown', '', 1]);
    expect(m.sha256).to.equal(demo().sha256);
    expect(Object.isFrozen(m) && Object.isFrozen(m.fields) && Object.isFrozen(m.onnx)).to.equal(true);
  });
});
