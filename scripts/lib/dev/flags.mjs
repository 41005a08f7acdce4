// The command line of the dev tools (bootstrap, build, generate): a few
// boolean flags, `-h/--help` printing the usage to stdout, and any other
// argument named on stderr with exit status 2, as the compiled commands do
// (scripts/lib/cli.ts).

/**
 * The flags of `argv` that are in `known`, as a Set; or, when there is
 * nothing to run, the exit status after printing: 0 for --help (usage on
 * stdout), 2 for an unknown argument (one line on stderr).
 */
export function flagsOrExit(name, usage, known, argv = process.argv.slice(2)) {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(usage.endsWith('\n') ? usage : `${usage}\n`);
    return 0;
  }
  const unknown = argv.find((a) => !known.includes(a));
  if (unknown !== undefined) {
    process.stderr.write(`${name}: unknown option ${unknown}.\nSee: node scripts/dev/${name}.mjs --help\n`);
    return 2;
  }
  return new Set(argv);
}
