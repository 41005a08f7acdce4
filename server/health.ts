import type { Server } from '@grpc/grpc-js';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';

/** The service names load balancers probe: the server as a whole, and the API. */
export const HEALTH_SERVICES = ['', 'inference.v1.InferenceService'] as const;

/**
 * `grpc.health.v1.Health` (Check and Watch), from the grpc-health-check
 * package. Starts NOT_SERVING; the app flips it to SERVING once every model has
 * a version loaded, and back to NOT_SERVING when shutdown begins.
 */
export class Health {
  private readonly impl = new HealthImplementation(
    Object.fromEntries(HEALTH_SERVICES.map((s) => [s, 'NOT_SERVING' as ServingStatus])),
  );
  private current: ServingStatus = 'NOT_SERVING';

  addTo(server: Server): void {
    this.impl.addToServer(server);
  }

  get status(): ServingStatus {
    return this.current;
  }

  set(status: ServingStatus): void {
    if (status === this.current) return;
    this.current = status;
    for (const s of HEALTH_SERVICES) this.impl.setStatus(s, status);
  }
}
