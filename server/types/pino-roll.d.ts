// pino-roll ships no type declarations; this covers the options the server uses
// (see node_modules/pino-roll/README.md, "Options").
declare module 'pino-roll' {
  import type SonicBoom from 'sonic-boom';

  interface PinoRollOptions {
    file: string | (() => string);
    size?: number | string;
    frequency?: 'daily' | 'hourly' | number;
    extension?: string;
    symlink?: boolean;
    limit?: { count?: number; removeOtherLogFiles?: boolean };
    dateFormat?: string;
    mkdir?: boolean;
    /** Passed on to SonicBoom: bytes buffered before further writes are dropped (a `drop` event). */
    maxLength?: number;
  }

  export default function roll(options: PinoRollOptions): Promise<SonicBoom>;
}
