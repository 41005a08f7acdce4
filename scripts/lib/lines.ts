/**
 * Line-wise reading of a child's output: the one splitter behind the server
 * launcher, Envoy's log and the local stack's terminal.
 */
import { StringDecoder } from 'node:string_decoder';

/**
 * A splitter fed with chunks as they arrive, which hands out every complete
 * line (without its `\n`, and without a `\r` before it). UTF-8 characters cut
 * between two chunks are decoded whole.
 */
export class LineSplitter {
  private readonly decoder = new StringDecoder('utf8');
  private rest = '';

  constructor(private readonly onLine: (line: string) => void) {}

  push(chunk: Buffer | string): void {
    this.rest += typeof chunk === 'string' ? chunk : this.decoder.write(chunk);
    let nl = this.rest.indexOf('\n');
    while (nl >= 0) {
      const line = this.rest.slice(0, nl);
      this.rest = this.rest.slice(nl + 1);
      this.onLine(line.endsWith('\r') ? line.slice(0, -1) : line);
      nl = this.rest.indexOf('\n');
    }
  }

  /** The last line, when the output did not end with a newline. */
  end(): void {
    const last = this.rest + this.decoder.end();
    this.rest = '';
    if (last !== '') this.onLine(last);
  }
}

/** Calls `onLine` with each line `stream` delivers, the unterminated last one included. */
export function onLines(
  stream: NodeJS.ReadableStream | null | undefined,
  onLine: (line: string) => void,
): void {
  if (!stream) return;
  const splitter = new LineSplitter(onLine);
  stream.on('data', (d: Buffer | string) => splitter.push(d));
  stream.on('end', () => splitter.end());
}
