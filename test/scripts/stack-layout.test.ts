import { join } from 'node:path';
import { expect } from 'chai';
import { LOCAL_BOOTSTRAP } from '../../scripts/lib/envoy/config.js';
import { PROJECT_ROOT } from '../../scripts/lib/paths.js';
import { READY_LINE, readyBanner } from '../../scripts/lib/stack/banner.js';
import { MAX_PORT_OFFSET, stackLayout, stackPorts } from '../../scripts/lib/stack/layout.js';
import { terminalLine } from '../../scripts/lib/stack/server-log.js';
import { parseStackArgs } from '../../scripts/ops/stack.js';
import { USER_ID_HEADER } from '../../server/headers.js';

describe('the local stack: layout, banner, terminal lines (scripts/lib/stack/)', () => {
  it('runs the committed bootstrap from the repository root by default', () => {
    const l = stackLayout({ portOffset: 0 });
    expect(l.rendered).to.equal(undefined);
    expect(l.envoyConfig).to.equal(join(PROJECT_ROOT, 'envoy', 'envoy.yaml'));
    expect(l.bootstrap).to.equal(LOCAL_BOOTSTRAP);
    expect(l.servers.stable.logDir).to.equal(join(PROJECT_ROOT, 'logs', 'stable'));
    expect(stackPorts(l).map((p) => p.port)).to.deep.equal([8080, 8081, 9901, 50051, 9464, 50052, 9465]);
  });

  it('moves every port by the offset and keeps its state in the state directory', () => {
    const l = stackLayout({ portOffset: 100, stateDir: '/tmp/s' });
    expect(stackPorts(l)).to.deep.equal([
      { port: 8180, what: 'Envoy gRPC listener' },
      { port: 8181, what: 'Envoy QA listener' },
      { port: 10001, what: 'Envoy admin (read-only view)' },
      { port: 50151, what: 'stable server gRPC' },
      { port: 9564, what: 'stable server metrics' },
      { port: 50152, what: 'canary server gRPC' },
      { port: 9565, what: 'canary server metrics' },
    ]);
    expect(l.routesPath).to.equal('/tmp/s/routes/routes.yaml');
    expect(l.bootstrap.accessLog).to.equal('/tmp/s/logs/envoy/access.log');
    expect(l.servers.canary.logDir).to.equal('/tmp/s/logs/canary');
    expect(l.rendered).to.include('port_value: 8180');
  });

  it('takes --port-offset up to the highest that fits, and names a bad one', () => {
    expect(parseStackArgs(['--port-offset', String(MAX_PORT_OFFSET)]).portOffset).to.equal(65535 - 50052);
    expect(() => parseStackArgs(['--port-offset', String(MAX_PORT_OFFSET + 1)])).to.throw(
      /--port-offset must be an integer from 0 to 15483/,
    );
  });

  it('prints the endpoints with the options a shifted stack needs, ending with the ready line', () => {
    const l = stackLayout({ portOffset: 100, stateDir: '/tmp/s' });
    const text = readyBanner(l, { stable: '20260101T000000Z', canary: '20260102T000000Z' }, 1.25);
    expect(text).to.include('[stack] ready in 1.3 s');
    expect(text).to.include('stable server    127.0.0.1:50151  conversion 20260101T000000Z');
    expect(text).to.include(`-H '${USER_ID_HEADER}: 42'`);
    expect(text).to.include(
      'npm run weights -- 25 --admin 127.0.0.1:10001 --routes /tmp/s/routes/routes.yaml ' +
        '--stable-metrics 127.0.0.1:9564 --canary-metrics 127.0.0.1:9565',
    );
    expect(text).to.include('npm run ab-report -- --logs /tmp/s/logs');
    expect(text.trimEnd().split('\n').at(-1)).to.equal(READY_LINE);
  });

  it('shows lifecycle and warning lines of a server, never a Predict line', () => {
    expect(
      terminalLine('canary', { level: 'info', msg: 'server started', time: 1, pid: 2, grpcPort: 5 }),
    ).to.equal('[canary] server started {"grpcPort":5}');
    expect(terminalLine('stable', { level: 'warn', msg: 'slow', pid: 2 })).to.equal('[stable] warn: slow');
    expect(terminalLine('stable', { level: 'info', msg: 'Predict', requestId: 'r' })).to.equal(undefined);
  });
});
