/**
 * The Open Inference Protocol behind the real Envoy: tritonclient and the
 * KServe SDK, pointed at Envoy with `x-user-id` headers, land on the same arm
 * as Predict for the same user (the sticky 90/10 split covers every gRPC path)
 * and get the same stage-2 group and action.
 */
import { expect } from 'chai';
import { type AbStack, call, demoVersions, qaRecords, startAbStack } from '../helpers/envoy.js';
import { type ClientInfer, resultValue, runClient } from '../helpers/open-inference.js';

describe('Open Inference Protocol through Envoy (tritonclient, KServe SDK)', function () {
  this.timeout(120_000);
  let stack: AbStack;
  const { older, newer } = demoVersions();
  // The canary's positive QA record: on the canary it is a positive, so experiment/control both occur.
  const record = qaRecords(newer).positive;
  const users = Array.from({ length: 100 }, (_, i) => `oip-user-${i}`);

  before(async () => {
    stack = await startAbStack();
  });
  after(async () => stack?.stop());

  it('tritonclient: each user gets the arm, version, group and action Predict gives that user', async () => {
    const target = `127.0.0.1:${stack.port}`;
    const results = await runClient('triton', target, [
      { op: 'live' },
      { op: 'ready' },
      { op: 'model_ready', model: 'conversion' },
      ...users.map((u) => ({
        op: 'infer',
        model: 'conversion',
        records: [record],
        headers: { 'x-user-id': u },
      })),
    ]);
    expect(results.slice(0, 3).map((r) => resultValue(r))).to.deep.equal([true, true, true]);
    const arms = new Map<string, number>();
    const groups = new Set<string>();
    for (const [k, u] of users.entries()) {
      const r = resultValue<ClientInfer>(results[3 + k]);
      const p = await call(stack.client, { user: u, instances: [record] });
      expect(p.error, u).to.equal(undefined);
      const arm = r.parameters.arm as string;
      expect(arm, u).to.equal(p.response?.arm);
      expect(r.model_version).to.equal(arm === 'canary' ? newer : older);
      expect(r.model_version).to.equal(p.response?.version);
      const want = p.response?.predictions[0];
      expect(
        [r.outputs.score?.[0], r.outputs.label?.[0], r.outputs.group?.[0], r.outputs.action?.[0]],
        u,
      ).to.deep.equal([want?.score, want?.label, want?.group, want?.action]);
      arms.set(arm, (arms.get(arm) ?? 0) + 1);
      groups.add(String(r.outputs.group?.[0]));
    }
    // Fixed users, Envoy's fixed hash: both arms occur, and on the canary both stage-2 groups.
    expect([...arms.keys()].sort()).to.deep.equal(['canary', 'stable']);
    expect(groups).to.include.members(['experiment', 'control']);
    // Envoy routed ModelInfer by its own path through the split (access log).
    const infers = stack
      .accessLog()
      .filter(
        (e) => (e as unknown as { method: string }).method === '/inference.GRPCInferenceService/ModelInfer',
      );
    expect(infers.length).to.be.at.least(users.length);
    expect(new Set(infers.map((e) => e.cluster))).to.deep.equal(new Set(['stable', 'canary_with_fallback']));
  });

  it('tritonclient: the x-ab-group QA override (QA listener) picks the arm for ModelInfer too', async () => {
    const results = await runClient('triton', `127.0.0.1:${stack.qaPort}`, [
      {
        op: 'infer',
        model: 'conversion',
        records: [record],
        headers: { 'x-user-id': 'u-1', 'x-ab-group': 'canary' },
      },
      {
        op: 'infer',
        model: 'conversion',
        records: [record],
        headers: { 'x-user-id': 'u-1', 'x-ab-group': 'stable' },
      },
    ]);
    expect(results.map((r) => resultValue<ClientInfer>(r).parameters.arm)).to.deep.equal([
      'canary',
      'stable',
    ]);
  });

  it('KServe SDK: the same users get the same arm and group as Predict', async () => {
    const some = users.slice(0, 20);
    const results = await runClient(
      'kserve',
      `127.0.0.1:${stack.port}`,
      some.map((u) => ({
        op: 'infer',
        model: 'conversion',
        records: [record],
        headers: { 'x-user-id': u },
        date_inputs: ['birthday', 'createTime'],
      })),
    );
    for (const [k, u] of some.entries()) {
      const r = resultValue<ClientInfer>(results[k]);
      const p = await call(stack.client, { user: u, instances: [record] });
      expect([r.parameters.arm, r.outputs.group?.[0], r.outputs.action?.[0]], u).to.deep.equal([
        p.response?.arm,
        p.response?.predictions[0]?.group,
        p.response?.predictions[0]?.action,
      ]);
    }
  });
});
