import type { Server, ServerWritableStream, UntypedServiceImplementation } from '@grpc/grpc-js';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';

/** The service names load balancers probe: the server as a whole, and each API. */
export const HEALTH_SERVICES = [
  '',
  'inference.v1.InferenceService',
  'inference.GRPCInferenceService',
] as const;

/**
 * `grpc.health.v1.Health` (Check, Watch, List), from the grpc-health-check
 * package. Starts NOT_SERVING; the app flips it to SERVING once every model has
 * a version loaded, and back to NOT_SERVING when shutdown begins.
 *
 * Open Watch streams would hold `tryShutdown` open until the grace period ran
 * out, so they are tracked and ended (status OK) by `closeWatchers()` once the
 * drain is over. The health protocol tells clients to re-watch after any
 * status, which then reaches another replica.
 */
export class Health {
  private readonly impl = new HealthImplementation(
    Object.fromEntries(HEALTH_SERVICES.map((s) => [s, 'NOT_SERVING' as ServingStatus])),
  );
  private current: ServingStatus = 'NOT_SERVING';
  private readonly watchers = new Set<ServerWritableStream<unknown, unknown>>();
  private closed = false;

  addTo(server: Server): void {
    this.impl.addToServer({
      addService: (service, implementation: UntypedServiceImplementation) => {
        const watch = implementation.watch as (call: ServerWritableStream<unknown, unknown>) => void;
        server.addService(service, {
          ...implementation,
          watch: (call: ServerWritableStream<unknown, unknown>) => {
            if (this.closed) {
              call.end();
              return;
            }
            this.watchers.add(call);
            call.on('cancelled', () => this.watchers.delete(call));
            watch(call);
          },
        });
      },
    });
  }

  get status(): ServingStatus {
    return this.current;
  }

  set(status: ServingStatus): void {
    if (status === this.current || this.closed) return;
    this.current = status;
    for (const s of HEALTH_SERVICES) this.impl.setStatus(s, status);
  }

  /** Ends every open Watch stream; later status changes are ignored. */
  closeWatchers(): void {
    this.closed = true;
    for (const call of this.watchers) call.end();
    this.watchers.clear();
  }
}
