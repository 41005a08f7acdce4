/**
 * Every command, started as a person starts it (`npm run <name> -- --help`,
 * `node scripts/dev/<tool>.mjs --help`), prints its usage to stdout, writes
 * nothing to stderr and exits 0, without doing its work; a bad option is one
 * sentence on stderr naming it, and exit status 2.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { type CliRun, runCli } from '../helpers/cli.js';
import { ROOT } from '../helpers/server.js';

/** The npm scripts that are commands with options. */
const NPM_COMMANDS = [
  'start',
  'loadtest',
  'soak',
  'bench',
  'bench:server',
  'bench:breakdown',
  'bench:families',
  'bench:event-loop',
  'bench:profile',
  'bench:compare',
  'publish-model',
  'qa',
  'envoy-config',
  'train',
  'rollout',
  'weights',
  'chaos',
  'ab-report',
  'simulate-outcomes',
  'bench:ab-report',
  'serve',
];

/** Commands not checked yet: move a name to NPM_COMMANDS once it prints its usage for --help. */
const NOT_YET: Readonly<Record<string, string>> = {};

/**
 * Commands whose --help is right but whose bad-option message is not one
 * sentence yet: they print node's parseArgs message with its second sentence
 * ("To specify a positional argument…"). Parsing through scripts/lib/args.ts
 * (`parseCommandLine`) fixes it; then remove the name.
 */
const BAD_OPTION_NOT_YET: Readonly<Record<string, string>> = {};

/** What a command's --help must still say (features whose options or rows are easy to lose in a merge). */
const MUST_MENTION: Readonly<Record<string, readonly RegExp[]>> = {
  loadtest: [/--protocol P\s+predict \(default\) or oip/, /GRPCInferenceService\/ModelInfer/],
  bench: [/ModelInfer/, /raw_input_contents/, /typed contents/],
};

/** npm scripts that take no options of their own, or are covered as dev tools below. */
const NOT_COMMANDS = [
  'bootstrap',
  'generate',
  'build',
  'lint',
  'format',
  'test',
  'test:server',
  'test:deploy',
];

/** Tools that hand every argument to another program, which reports a bad one its own way. */
const BAD_OPTION_PASS_THROUGH: Readonly<Record<string, string>> = {
  train: "argparse prints train.py's usage before its error",
  pytest: 'pytest reports its own usage errors (exit 4)',
};

/** The dev tools, run as `node scripts/dev/<name>.mjs`. */
const DEV_TOOLS = ['bootstrap', 'build', 'generate', 'pytest', 'run'];

const npmRun = (name: string, args: readonly string[]): Promise<CliRun> =>
  runCli('npm', ['run', name, '--', ...args], { cwd: ROOT, name: `npm run ${name}`, timeoutMs: 60_000 });
const npmRunSilent = (name: string, args: readonly string[]): Promise<CliRun> =>
  runCli('npm', ['run', '--silent', name, '--', ...args], {
    cwd: ROOT,
    name: `npm run ${name}`,
    timeoutMs: 60_000,
  });
const devTool = (name: string, args: readonly string[]): Promise<CliRun> =>
  runCli(process.execPath, [join(ROOT, 'scripts', 'dev', `${name}.mjs`), ...args], {
    cwd: ROOT,
    name,
    timeoutMs: 60_000,
  });

function expectUsage(run: CliRun, what: string): void {
  expect(run.stderr, `${what}: stderr`).to.equal('');
  expect(run.code, `${what}: exit status; stdout: ${run.stdout}`).to.equal(0);
  expect(run.stdout, `${what}: a usage line on stdout`).to.match(/^usage: /im);
  expect(run.stdout, what).to.not.match(/unknown option/i);
}

function expectBadOption(run: CliRun, name: string, what: string): void {
  expect(run.code, `${what}: exit status; stderr: ${run.stderr}`).to.equal(2);
  expect(run.stdout, `${what}: stdout`).to.equal('');
  const lines = run.stderr.trimEnd().split('\n');
  expect(lines[0], `${what}: the first line names the command and the option`).to.match(
    new RegExp(`^${name}: .*--no-such-option`),
  );
  // One sentence and where the usage is: no usage dump, no stack trace.
  expect(lines[0], `${what}: one sentence`).to.not.match(/\.\s+[A-Z]/);
  expect(lines, `${what}: stderr`).to.have.length.at.most(2);
}

describe('every command: --help and bad options', function () {
  // Each case is one child process that only parses its arguments (~0.5 s);
  // a command that started its work instead would run past this.
  this.timeout(60_000);

  it('covers every npm script and every dev tool', () => {
    const scripts = Object.keys(
      (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> })
        .scripts,
    );
    const known = [...NPM_COMMANDS, ...Object.keys(NOT_YET), ...NOT_COMMANDS];
    expect(
      scripts.filter((s) => !known.includes(s)),
      'scripts no list here names',
    ).to.deep.equal([]);
    expect(
      known.filter((s) => !scripts.includes(s)),
      'names no script has',
    ).to.deep.equal([]);
    const tools = readdirSync(join(ROOT, 'scripts', 'dev'))
      .filter((f) => f.endsWith('.mjs'))
      .map((f) => f.replace(/\.mjs$/, ''))
      .sort();
    expect(tools).to.deep.equal([...DEV_TOOLS].sort());
  });

  for (const name of NPM_COMMANDS) {
    it(`npm run ${name} -- --help`, async () => {
      const run = await npmRun(name, ['--help']);
      expectUsage(run, `npm run ${name} -- --help`);
      for (const re of MUST_MENTION[name] ?? []) expect(run.stdout, `npm run ${name} -- --help`).to.match(re);
    });
    if (!(name in BAD_OPTION_PASS_THROUGH) && !(name in BAD_OPTION_NOT_YET)) {
      it(`npm run ${name} -- --no-such-option`, async () => {
        expectBadOption(await npmRunSilent(name, ['--no-such-option']), name, `npm run ${name}`);
      });
    }
  }

  for (const name of DEV_TOOLS) {
    it(`node scripts/dev/${name}.mjs --help`, async () => {
      expectUsage(await devTool(name, ['--help']), `${name}.mjs --help`);
    });
    if (!(name in BAD_OPTION_PASS_THROUGH)) {
      it(`node scripts/dev/${name}.mjs --no-such-option`, async () => {
        expectBadOption(await devTool(name, ['--no-such-option']), name, `${name}.mjs`);
      });
    }
  }
});
