import type { ClientReadableStream } from '@grpc/grpc-js';
import {
  type HealthCheckResponse,
  HealthCheckResponse_ServingStatus,
  HealthClient,
} from '../../server/generated/grpc/health/v1/health.js';

export { HealthCheckResponse_ServingStatus, HealthClient };

/** Opens a Health.Watch stream and reports each status; errors end the stream quietly. */
export function watchHealth(
  client: HealthClient,
  service: string,
  onStatus: (s: HealthCheckResponse_ServingStatus) => void,
): ClientReadableStream<HealthCheckResponse> {
  const stream = client.watch({ service });
  stream.on('data', (r: HealthCheckResponse) => onStatus(r.status));
  stream.on('error', () => undefined);
  return stream;
}
