/**
 * The container HEALTHCHECK: asks the server's own gRPC health service, the
 * one Envoy probes, whether `inference.v1.InferenceService` is SERVING.
 * Exit 0 when it is, 1 otherwise (not ready, draining, or no answer).
 *
 *   node dist/scripts/ops/healthcheck.js        # 127.0.0.1:$GRPC_PORT (default 50051)
 *
 * Env: GRPC_PORT, HEALTHCHECK_SERVICE (default inference.v1.InferenceService),
 * HEALTHCHECK_TIMEOUT_MS (default 2000).
 */
import { credentials, Metadata } from '@grpc/grpc-js';
import {
  HealthCheckResponse_ServingStatus,
  HealthClient,
  healthCheckResponse_ServingStatusToJSON,
} from '../../server/generated/grpc/health/v1/health.js';
import { runIfMain } from '../lib/cli.js';

/** Resolves with the exit status: 0 SERVING, 1 anything else. */
function main(): Promise<number> {
  const port = process.env.GRPC_PORT ?? '50051';
  const service = process.env.HEALTHCHECK_SERVICE ?? 'inference.v1.InferenceService';
  const timeoutMs = Number(process.env.HEALTHCHECK_TIMEOUT_MS ?? 2000);
  const client = new HealthClient(`127.0.0.1:${port}`, credentials.createInsecure());
  return new Promise((resolve) => {
    client.check({ service }, new Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
      client.close();
      if (err) {
        process.stderr.write(`unhealthy: ${service} on 127.0.0.1:${port}: ${err.details || err.message}\n`);
        resolve(1);
        return;
      }
      if (res.status !== HealthCheckResponse_ServingStatus.SERVING) {
        process.stderr.write(
          `unhealthy: ${service} is ${healthCheckResponse_ServingStatusToJSON(res.status)}\n`,
        );
        resolve(1);
        return;
      }
      resolve(0);
    });
  });
}

runIfMain(import.meta.url, 'healthcheck', main);
