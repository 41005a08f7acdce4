/**
 * The peers of `npm run bench -- --peers`, from venv to bench target: each
 * peer's venv is made ready (scripts/lib/bench/peers/venvs.ts), the peers are
 * started on loopback serving the version the bench pins, checked against
 * this server on the same records (scripts/lib/bench/peers/score-agreement.ts),
 * and only those that agree become targets, driven by the same ghz with the
 * same records and users as this server's rows, through their own contract
 * (a protoset built from their compiled descriptors). A peer that cannot
 * start or disagrees is reported with the reason and stopped; the rest of the
 * run goes on.
 */
import { join } from 'node:path';
import { USER_ID_HEADER } from '../../../../server/headers.js';
import { SEED_RECORD, USER_ID_BASE } from '../../load/payload.js';
import { MODEL_INFER_CALL } from '../../load/run.js';
import { MODELS_DIR } from '../../paths.js';
import { type GhzContract, ghzPhase, USERS } from '../measure.js';
import { type BenchContext, MODEL, type Target } from '../targets.js';
import { KSERVE } from './kserve.js';
import { MLSERVER } from './mlserver.js';
import { type PeerSpec, type PeerWire, type RunningPeer, requestJson, startPeer } from './peer.js';
import {
  type Agreement,
  agreementRecords,
  agreementText,
  scoreAgreement,
  servedVersion,
} from './score-agreement.js';
import { TRITON } from './triton.js';
import { ensurePeerVenv, type PeerVenv } from './venvs.js';

/** Every peer, in the report's order. */
export const PEERS: readonly PeerSpec[] = [TRITON, KSERVE, MLSERVER];

/** What became of one peer. */
export interface PeerOutcome {
  readonly spec: PeerSpec;
  /** Set when it was checked and agrees: the target to time. */
  readonly target?: Target;
  readonly agreement?: Agreement;
  /** Why it is not timed (did not install or start, or disagrees). */
  readonly problem?: string;
}

/**
 * ghz's requests for a peer: the same `USERS` records as this server's rows
 * (the seed's record, user `USER_ID_BASE + i`, and the matching `x-user-id`),
 * as ModelInfer requests on the peer's wire, in proto JSON.
 */
export function peerRequests(model: string, wire: PeerWire, users = USERS): GhzContract['request'] {
  const requests = Array.from({ length: users }, (_, i) =>
    requestJson(model, { ...SEED_RECORD, userId: USER_ID_BASE + i }, wire),
  );
  return {
    data: JSON.stringify(requests),
    metadata: { [USER_ID_HEADER]: `{{add ${USER_ID_BASE} (mod .RequestNumber ${users})}}` },
  };
}

function peerTarget(ctx: BenchContext, peer: RunningPeer, protoset: string): Target {
  const contract: GhzContract = {
    call: MODEL_INFER_CALL,
    protoset,
    request: peerRequests(MODEL, peer.spec.wire),
  };
  return {
    name: peer.spec.key,
    watch: peer.watch,
    run: (load, label = peer.spec.key) =>
      ghzPhase({
        target: label,
        host: peer.host,
        model: MODEL,
        contract,
        load,
        workDir: ctx.workDir,
        progress: ctx.progress,
        watch: peer.watch,
        signal: ctx.signal,
      }),
  };
}

/**
 * One peer: started with `venv` serving `version`, checked against
 * `referenceHost`, and its target when it agrees; otherwise it is stopped and
 * the outcome says why.
 */
export async function bringUpPeer(
  ctx: BenchContext,
  spec: PeerSpec,
  venv: PeerVenv | Error,
  referenceHost: string,
  version: string,
): Promise<PeerOutcome> {
  const versionDir = join(MODELS_DIR, MODEL, version);
  let peer: RunningPeer | undefined;
  try {
    if (venv instanceof Error) throw new Error(`its venv could not be made: ${venv.message}`);
    ctx.progress(`[bench] starting ${spec.label}`);
    peer = await startPeer(ctx.procs, spec, { venv, versionDir, model: MODEL, workDir: ctx.workDir });
    const agreement = await scoreAgreement({
      reference: referenceHost,
      peer: peer.host,
      peerWire: spec.wire,
      model: MODEL,
      records: agreementRecords(versionDir),
    });
    ctx.progress(`[bench] ${spec.key}: ${agreementText(agreement)}`);
    if (!agreement.agrees) {
      await ctx.procs.stop(`peer ${spec.key}`);
      return { spec, agreement, problem: agreementText(agreement) };
    }
    return { spec, agreement, target: peerTarget(ctx, peer, venv.protoset) };
  } catch (err) {
    if (peer) await ctx.procs.stop(`peer ${spec.key}`);
    const problem = `did not start: ${(err as Error).message.split('\n').slice(0, 6).join(' | ')}`;
    ctx.progress(`[bench] ${spec.key} ${problem}`);
    return { spec, problem };
  }
}

/**
 * Every peer, made ready, started with the version `referenceHost` (this
 * server) serves and checked against it. Venvs are installed one at a time (pip
 * output stays readable), then the peers start side by side.
 */
export async function startPeers(ctx: BenchContext, referenceHost: string): Promise<PeerOutcome[]> {
  // The weights this server actually serves (its labels may overrule the bench's pin).
  let version: string;
  try {
    version = await servedVersion(
      referenceHost,
      MODEL,
      (agreementRecords(join(MODELS_DIR, MODEL, ctx.version))[0] ?? { record: SEED_RECORD }).record,
    );
  } catch (err) {
    const problem = `not started: this server did not say which version it serves (${(err as Error).message})`;
    return PEERS.map((spec) => ({ spec, problem }));
  }
  ctx.progress(`[bench] peers: this server answers ${MODEL}@${version}; every peer loads that version`);
  const venvs: (PeerVenv | Error)[] = [];
  for (const spec of PEERS)
    venvs.push(await ensurePeerVenv(spec, ctx.progress).catch((err: unknown) => err as Error));
  return Promise.all(
    PEERS.map((spec, i) => bringUpPeer(ctx, spec, venvs[i] as PeerVenv | Error, referenceHost, version)),
  );
}
