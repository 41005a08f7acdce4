import { expect } from 'chai';
import { categorize, componentTimes, selfTimes } from '../../scripts/bench/profile.js';

const f = (functionName: string, url = '') => ({ functionName, url });

describe('bench-profile: charging samples to components', () => {
  it('charges a sample to the first component found from the sampled frame up', () => {
    // A native write called by sonic-boom, called by pino, called by the unary adapter: logging.
    expect(
      categorize([
        f('writeString'),
        f('actualWrite', 'file:///p/node_modules/sonic-boom/index.js'),
        f('write', 'file:///p/node_modules/pino/lib/proto.js'),
        f('finish', 'file:///p/dist/server/unary-handler.js'),
        f('onStreamRead', 'node:internal/stream_base_commons'),
      ]),
    ).to.equal('logging (pino, sonic-boom)');
    expect(
      categorize([
        f('run', 'file:///p/node_modules/onnxruntime-node/dist/backend.js'),
        f('x', 'file:///p/dist/server/app.js'),
      ]),
    ).to.equal('ONNX Runtime (run + runner)');
    expect(categorize([f('decode', 'file:///p/dist/server/generated/google/protobuf/struct.js')])).to.equal(
      'protobuf (ts-proto, Struct)',
    );
    // The hand-written codec is protobuf work, the hand-written prediction line logging.
    expect(categorize([f('entry', 'file:///p/dist/server/predict-codec.js')])).to.equal(
      'protobuf (ts-proto, Struct)',
    );
    expect(categorize([f('serialize', 'file:///p/dist/server/prediction-line.js')])).to.equal(
      'logging (pino, sonic-boom)',
    );
    expect(categorize([f('fill', 'file:///p/dist/server/preprocess.js')])).to.equal('preprocessing');
    expect(categorize([f('predict', 'file:///p/dist/server/predict-service.js')])).to.equal(
      'server handler (adapter, service)',
    );
    expect(
      categorize([f('sendMessage', 'file:///p/node_modules/@grpc/grpc-js/build/src/server.js')]),
    ).to.equal('grpc-js');
    expect(categorize([f('respond', 'node:internal/http2/core')])).to.equal('node http2, net, streams');
  });

  it('names V8’s pseudo-frames and leaves the rest as other JavaScript', () => {
    expect(categorize([f('(garbage collector)')])).to.equal('garbage collector');
    expect(categorize([f('(program)')])).to.equal('native, unattributed (V8 "program")');
    expect(categorize([f('(idle)')])).to.equal('idle');
    expect(categorize([f('processTicksAndRejections', 'node:internal/process/task_queues')])).to.equal(
      'other JavaScript (event loop, timers, promises)',
    );
  });

  it('adds the time of samples inside the window, by component, without idle', () => {
    const profile = {
      nodes: [
        { id: 1, callFrame: f('(root)'), children: [2, 3, 4] },
        { id: 2, callFrame: f('(idle)') },
        { id: 3, callFrame: f('write', 'file:///p/node_modules/pino/lib/proto.js'), children: [5] },
        { id: 4, callFrame: f('(garbage collector)') },
        { id: 5, callFrame: f('writeString') },
      ],
      startTime: 1000,
      // Sample times: 1010, 1030, 1060, 1100, 1150.
      samples: [5, 2, 4, 3, 5],
      timeDeltas: [10, 20, 30, 40, 50],
    };
    const all = componentTimes(profile, 0, 10_000);
    expect(Object.fromEntries(all)).to.deep.equal({
      'logging (pino, sonic-boom)': 100,
      'garbage collector': 30,
    });
    // Only the samples at 1030..1100.
    expect(Object.fromEntries(componentTimes(profile, 1030, 1100))).to.deep.equal({
      'garbage collector': 30,
      'logging (pino, sonic-boom)': 40,
    });
  });

  it('adds self time per sampled function, named with its file and line, without idle (--top)', () => {
    const profile = {
      nodes: [
        { id: 1, callFrame: f('(root)'), children: [2, 3] },
        { id: 2, callFrame: f('(idle)') },
        {
          id: 3,
          callFrame: { functionName: 'entry', url: 'file:///w/dist/server/predict-codec.js', lineNumber: 49 },
          children: [4],
        },
        {
          id: 4,
          callFrame: { functionName: '', url: 'file:///w/node_modules/pino/lib/proto.js', lineNumber: 0 },
        },
      ],
      startTime: 0,
      // Sample times: 10, 30, 60, 100.
      samples: [3, 2, 4, 3],
      timeDeltas: [10, 20, 30, 40],
    };
    expect(Object.fromEntries(selfTimes(profile, 0, 1000))).to.deep.equal({
      'entry server/predict-codec.js:50': 50,
      '(anonymous) pino/lib/proto.js:1': 30,
    });
    expect(Object.fromEntries(selfTimes(profile, 30, 60))).to.deep.equal({
      '(anonymous) pino/lib/proto.js:1': 30,
    });
  });
});
