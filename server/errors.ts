import { type Metadata, status } from '@grpc/grpc-js';

/**
 * The catalogue of domain errors. Each carries the gRPC status it maps to and a
 * message that is safe to show the caller. Anything thrown that is not a
 * `ServingError` becomes INTERNAL with a generic message at the boundary
 * (`toServiceError`), and its cause is logged there with the request id.
 *
 * Code choices follow https://grpc.github.io/grpc/core/md_doc_statuscodes.html:
 * a caller fixing its request is INVALID_ARGUMENT, a missing entity NOT_FOUND,
 * a limit RESOURCE_EXHAUSTED, a server that may succeed on retry UNAVAILABLE.
 */
export class ServingError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
    this.name = 'ServingError';
  }
}

/** Unknown model or version. The message lists what exists. */
export function notFound(message: string): ServingError {
  return new ServingError(status.NOT_FOUND, message);
}

/** The request itself is wrong; the message names the instance and field. */
export function invalidArgument(message: string): ServingError {
  return new ServingError(status.INVALID_ARGUMENT, message);
}

/** A configured limit was hit (in-flight requests, batch queue). */
export function resourceExhausted(message: string): ServingError {
  return new ServingError(status.RESOURCE_EXHAUSTED, message);
}

/** No model loaded yet, or the server is draining: retry elsewhere or later. */
export function unavailable(message: string): ServingError {
  return new ServingError(status.UNAVAILABLE, message);
}

/** An RPC this server declares or accepts but does not implement (Triton's extensions). */
export function unimplemented(message: string): ServingError {
  return new ServingError(status.UNIMPLEMENTED, message);
}

/** The caller cancelled the call; recorded, never sent (the caller is gone). */
export function cancelled(): ServingError {
  return new ServingError(status.CANCELLED, 'the caller cancelled the call');
}

/** The caller's deadline passed before the answer was ready. */
export function deadlineExceeded(): ServingError {
  return new ServingError(status.DEADLINE_EXCEEDED, "the caller's deadline passed");
}

/** An error that came from validating one instance's field. */
export class FieldError extends Error {
  constructor(
    readonly field: string,
    readonly reason: string,
  ) {
    super(`field "${field}": ${reason}`);
    this.name = 'FieldError';
  }
}

/** The gRPC-shaped error handed to a grpc-js callback. */
export interface ServiceErrorShape {
  code: status;
  details: string;
  metadata?: Metadata;
}

/** Generic text for unexpected failures: the cause stays in the server log. */
export const INTERNAL_MESSAGE = 'internal error; the server logged the cause with the request id';

/**
 * Maps anything thrown by a handler to the status returned to the caller.
 * `internal` is true when the error was unexpected and must be logged.
 */
export function toServiceError(err: unknown): { error: ServiceErrorShape; internal: boolean } {
  if (err instanceof ServingError)
    return { error: { code: err.code, details: err.message }, internal: false };
  return { error: { code: status.INTERNAL, details: INTERNAL_MESSAGE }, internal: true };
}

/** The canonical upper-case name of a status code, for logs and metric labels. */
export function statusName(code: status): string {
  return status[code] ?? String(code);
}
