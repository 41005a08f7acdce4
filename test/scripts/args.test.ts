import { expect } from 'chai';
import {
  durationOption,
  durationText,
  intOption,
  numberOption,
  parseCommandLine,
  parseDuration,
} from '../../scripts/lib/args.js';
import { UsageError } from '../../scripts/lib/cli.js';

describe('command-line arguments (scripts/lib/args.ts)', () => {
  const options = { rate: { type: 'string' }, strict: { type: 'boolean' } } as const;

  it('knows -h/--help on every command, and the options given', () => {
    expect(parseCommandLine(['-h'], options).values.help).to.equal(true);
    expect(parseCommandLine(['--rate', '5', '--strict'], options).values).to.deep.equal({
      rate: '5',
      strict: true,
    });
    expect(parseCommandLine(['a', 'b'], options, true).positionals).to.deep.equal(['a', 'b']);
  });

  it('names an unknown option, a missing value or a stray argument in one sentence', () => {
    for (const [argv, message] of [
      [['--bogus'], "Unknown option '--bogus'."],
      [['--rate'], "Option '--rate <value>' argument missing."],
      [['stray'], "Unexpected argument 'stray'."],
    ] as const) {
      expect(() => parseCommandLine(argv, options), argv.join(' '))
        .to.throw(UsageError)
        .with.property('message', message);
    }
  });

  it('checks integers, numbers and durations against their range', () => {
    expect(intOption(undefined, '--n', 1, 5)).to.equal(undefined);
    expect(intOption('5', '--n', 1, 5)).to.equal(5);
    for (const bad of ['0', '6', '1.5', 'x', '']) {
      expect(() => intOption(bad, '--n', 1, 5), bad).to.throw(
        UsageError,
        /^--n must be an integer from 1 to 5/,
      );
    }
    expect(numberOption('0.5', '--share', 0, 1)).to.equal(0.5);
    expect(() => numberOption('0', '--p99', 0, 10, true)).to.throw(/--p99 must be a number greater than 0/);
    expect(() => numberOption(' ', '--share', 0, 1)).to.throw(UsageError);
    expect(parseDuration('1.5s', '--d')).to.equal(1500);
    expect(parseDuration('2m', '--d')).to.equal(120_000);
    expect(parseDuration('36h', '--d')).to.equal(129_600_000);
    expect(parseDuration('7d', '--d')).to.equal(604_800_000);
    expect(() => parseDuration('10', '--d')).to.throw(UsageError, /--d must be a duration like 500ms/);
    expect(durationOption('30s', '--d', 100, 3_600_000)).to.equal(30_000);
    expect(() => durationOption('2h', '--d', 100, 3_600_000)).to.throw(
      UsageError,
      '--d must be from 100ms to 1h, got "2h".',
    );
    expect([1, 1500, 2000, 90_000, 120_000, 7_200_000, 604_800_000].map(durationText)).to.deep.equal([
      '1ms',
      '1500ms',
      '2s',
      '90s',
      '2m',
      '2h',
      '7d',
    ]);
  });
});
