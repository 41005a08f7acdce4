/**
 * A seeded fuzz of the whole stack: thousands of mutated gRPC requests (bodies,
 * framing, metadata, methods), sent straight to a server and through Envoy.
 * It fails on any INTERNAL status, any stream answered without a gRPC status
 * (a reset), any call that hangs, and any process that dies. The seed is fixed
 * so a failure reproduces; FUZZ_SEED and FUZZ_CALLS change it.
 */
import { expect } from 'chai';
import { mulberry32 } from '../../scripts/lib/random.js';
import {
  GetModelMetadataRequest,
  ListModelsRequest,
  PredictRequest,
  RecordOutcomesRequest,
} from '../../server/generated/inference/v1/inference.js';
import { type AbStack, startAbStack } from '../helpers/envoy.js';
import { frame, RawClient, type RawRequest, type RawResult } from '../helpers/raw-grpc.js';
import { SAMPLE_RECORD } from '../helpers/server.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20261201);
const CALLS_PER_TARGET = Number(process.env.FUZZ_CALLS ?? 3000);

interface Rng {
  float(): number;
  int(n: number): number;
  pick<T>(xs: readonly T[]): T;
  chance(p: number): boolean;
}

function rngOf(seed: number): Rng {
  const next = mulberry32(seed);
  return {
    float: next,
    int: (n) => Math.floor(next() * n),
    pick: (xs) => xs[Math.floor(next() * xs.length)] as never,
    chance: (p) => next() < p,
  };
}

const SERVICE = '/inference.v1.InferenceService/';

/** A valid body for each method, to mutate from. */
function validBodies(): Record<string, Buffer[]> {
  const predict = (instances: Record<string, unknown>[], extra: Partial<PredictRequest> = {}) =>
    Buffer.from(
      PredictRequest.encode({
        model: 'conversion',
        version: '',
        requestId: '',
        instances,
        ...extra,
      }).finish(),
    );
  return {
    [`${SERVICE}Predict`]: [
      predict([{ ...SAMPLE_RECORD }]),
      predict([{ ...SAMPLE_RECORD }, { ...SAMPLE_RECORD, userId: 7, channel: 3 }], { requestId: 'fuzz-1' }),
      predict(
        Array.from({ length: 8 }, (_, i) => ({ ...SAMPLE_RECORD, userId: i, screenSize: '1080*1920' })),
      ),
      predict([{ ...SAMPLE_RECORD, nested: { a: [1, 2, { b: 'c' }] }, flag: true, none: null }]),
    ],
    [`${SERVICE}ListModels`]: [Buffer.from(ListModelsRequest.encode({}).finish())],
    [`${SERVICE}GetModelMetadata`]: [
      Buffer.from(GetModelMetadataRequest.encode({ model: 'conversion', version: '' }).finish()),
    ],
    [`${SERVICE}RecordOutcomes`]: [
      Buffer.from(
        RecordOutcomesRequest.encode({
          outcomes: [
            {
              requestId: 'r-1',
              instance: 0,
              userId: 'u-1',
              model: 'conversion',
              metric: 'converted',
              value: 1,
              occurredAt: undefined,
            },
          ],
        }).finish(),
      ),
    ],
    '/grpc.health.v1.Health/Check': [
      Buffer.from([0x0a, 0x00]),
      Buffer.from('\x0a\x1einference.v1.InferenceService', 'latin1'),
    ],
    '/grpc.health.v1.Health/List': [Buffer.alloc(0)],
    '/inference.v1.InferenceService/NoSuchMethod': [Buffer.alloc(0)],
  };
}

function mutateBytes(r: Rng, input: Buffer): Buffer {
  let b = Buffer.from(input);
  const n = 1 + r.int(3);
  for (let k = 0; k < n; k++) {
    switch (r.int(7)) {
      case 0: // flip a bit
        if (b.length > 0) {
          const i = r.int(b.length);
          b[i] = (b[i] as number) ^ (1 << r.int(8));
        }
        break;
      case 1: // replace a byte
        if (b.length > 0) b[r.int(b.length)] = r.int(256);
        break;
      case 2: // truncate
        b = b.subarray(0, r.int(b.length + 1));
        break;
      case 3: // insert random bytes
        {
          const at = r.int(b.length + 1);
          const ins = Buffer.from(Array.from({ length: 1 + r.int(8) }, () => r.int(256)));
          b = Buffer.concat([b.subarray(0, at), ins, b.subarray(at)]);
        }
        break;
      case 4: // duplicate a segment
        {
          const at = r.int(b.length + 1);
          const len = r.int(Math.min(64, b.length - at) + 1);
          b = Buffer.concat([b.subarray(0, at + len), b.subarray(at, at + len), b.subarray(at + len)]);
        }
        break;
      case 5: // a huge varint where a length or tag was
        {
          const at = r.int(b.length + 1);
          b = Buffer.concat([b.subarray(0, at), Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]), b.subarray(at)]);
        }
        break;
      default: {
        // deep nesting: a run of Struct/Value/ListValue starts
        const at = r.int(b.length + 1);
        const depth = 10 + r.int(200);
        const nest = Buffer.alloc(depth * 2);
        for (let i = 0; i < depth; i++) {
          nest[i * 2] = r.pick([0x0a, 0x12, 0x32, 0x2a]);
          nest[i * 2 + 1] = 0x7f;
        }
        b = Buffer.concat([b.subarray(0, at), nest, b.subarray(at)]);
      }
    }
  }
  return b;
}

const TIMEOUTS = [
  '1S',
  '500m',
  '30S',
  '5M',
  '100000u',
  'abc',
  '',
  '10',
  '-1m',
  '1.5S',
  '999999999m',
  '2H',
  '0m',
];
const USERS = [
  '42',
  'user-7',
  'x'.repeat(128),
  'x'.repeat(129),
  'caf\xe9',
  '',
  ' spaced ',
  'tab\tin',
  '~!@#$%^&*()',
];
const REQUEST_IDS = ['req-1', 'r'.repeat(128), 'r'.repeat(129), 'with space', 'caf\xe9', ''];
const GROUPS = ['stable', 'canary', 'both', '', 'CANARY'];

/** One mutated request, from the seeded stream. */
function mutated(r: Rng, bodies: Record<string, Buffer[]>): RawRequest {
  const path = r.pick(Object.keys(bodies));
  const base = r.pick(bodies[path] as Buffer[]);
  const body = r.chance(0.8) ? mutateBytes(r, base) : base;
  const headers: Record<string, string> = {};
  if (r.chance(0.3)) headers['grpc-timeout'] = r.pick(TIMEOUTS);
  if (r.chance(0.5)) headers['x-user-id'] = r.pick(USERS);
  if (r.chance(0.3)) headers['x-request-id'] = r.pick(REQUEST_IDS);
  if (r.chance(0.1)) headers['x-ab-group'] = r.pick(GROUPS);
  if (r.chance(0.05)) headers['grpc-encoding'] = r.pick(['gzip', 'identity', 'br', 'deflate']);
  if (r.chance(0.05))
    headers['content-type'] = r.pick([
      'application/grpc+proto',
      'application/grpc+json',
      'application/grpc;x',
    ]);
  // Framing: mostly right; sometimes a wrong length, a compressed flag, or two messages.
  let framed = frame(body);
  const f = r.int(20);
  if (f === 0)
    framed.writeUInt32BE(body.length + 1 + r.int(100), 1); // announces more than is sent
  else if (f === 1)
    framed.writeUInt32BE(Math.max(0, body.length - 1 - r.int(4)), 1); // less: trailing bytes
  else if (f === 2)
    framed = frame(body, true); // compressed flag, identity or garbage encoding
  else if (f === 3)
    framed = Buffer.concat([framed, frame(body)]); // a second message on a unary call
  else if (f === 4) framed = framed.subarray(0, r.int(5)); // a cut prefix
  return { path, body: framed, framed: false, headers, timeoutMs: 5000 };
}

interface Bad {
  readonly target: string;
  readonly index: number;
  readonly request: RawRequest;
  readonly result: RawResult;
}

/** Runs the seeded stream against one target, `concurrency` at a time, on a few connections. */
async function fuzz(target: string, authority: string, seed: number, n: number, concurrency = 16) {
  const r = rngOf(seed);
  const bodies = validBodies();
  const requests = Array.from({ length: n }, () => mutated(r, bodies));
  const bad: Bad[] = [];
  const codes: Record<string, number> = {};
  let client = new RawClient(authority);
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        const index = next++;
        const request = requests[index] as RawRequest;
        if (client.session.destroyed || client.session.closed) client = new RawClient(authority);
        const result = await client.call(request);
        const key =
          result.grpcStatus !== undefined
            ? String(result.grpcStatus)
            : `http ${result.httpStatus} rst ${result.rstCode}`;
        codes[key] = (codes[key] ?? 0) + 1;
        const unanswered =
          result.grpcStatus === undefined && (result.httpStatus === undefined || result.httpStatus === 200);
        if (result.grpcStatus === 13 || result.timedOut || unanswered)
          bad.push({ target, index, request, result });
      }
    }),
  );
  client.close();
  return { bad, codes };
}

describe(`fuzz: ${2 * CALLS_PER_TARGET} mutated requests, direct and through Envoy (seed ${SEED})`, function () {
  this.timeout(120_000);
  let stack: AbStack;
  before(async () => {
    stack = await startAbStack();
  });
  after(async () => stack?.stop());

  it('never answers INTERNAL, never resets or hangs a call, and nothing crashes', async () => {
    const t0 = Date.now();
    const [direct, envoy] = await Promise.all([
      fuzz('direct', `127.0.0.1:${stack.stable.grpcPort}`, SEED, CALLS_PER_TARGET),
      fuzz('envoy', `127.0.0.1:${stack.port}`, SEED + 1, CALLS_PER_TARGET),
    ]);
    const ms = Date.now() - t0;
    console.log(
      `      (${2 * CALLS_PER_TARGET} calls in ${(ms / 1000).toFixed(1)} s; direct ${JSON.stringify(direct.codes)}; envoy ${JSON.stringify(envoy.codes)})`,
    );
    const bad = [...direct.bad, ...envoy.bad];
    const show = bad.slice(0, 5).map((b) => ({
      target: b.target,
      index: b.index,
      path: b.request.path,
      headers: b.request.headers,
      body: b.request.body.toString('base64').slice(0, 120),
      result: b.result,
    }));
    expect(show, `${bad.length} bad results; replay with FUZZ_SEED=${SEED}`).to.deep.equal([]);
    // Nothing died, and everything still serves.
    for (const p of [stack.stable.proc, stack.canary.proc, stack.envoy.proc])
      expect(p.exitCode).to.equal(null);
    const raw = new RawClient(`127.0.0.1:${stack.port}`);
    try {
      const ok = await raw.call({
        path: `${SERVICE}Predict`,
        body: (validBodies()[`${SERVICE}Predict`] as Buffer[])[0] as Buffer,
      });
      expect(ok.grpcStatus).to.equal(0);
      const health = await raw.call({ path: '/grpc.health.v1.Health/Check', body: Buffer.alloc(0) });
      expect(health.grpcStatus).to.equal(0);
    } finally {
      raw.close();
    }
  });
});
