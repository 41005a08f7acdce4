/**
 * The metadata (HTTP/2 header) names that cross a process boundary: read or
 * written by the server, matched or hashed by Envoy's routes
 * (scripts/lib/envoy/config.ts), sent by the load generators and QA. Defined
 * once here and imported everywhere, so a rename cannot leave one side behind.
 * gRPC metadata keys are lower case.
 */

/** The user the A/B split is sticky on: Envoy hashes it (stage 1), the canary hashes it (stage 2). */
export const USER_ID_HEADER = 'x-user-id';

/** A caller's request id; echoed in the `x-request-id` trailer on errors. */
export const REQUEST_ID_HEADER = 'x-request-id';

/** QA override of the stage-1 split (`stable` or `canary`), matched by Envoy before the hash. */
export const AB_OVERRIDE_HEADER = 'x-ab-group';

/** The arm that answered, added to every response by Envoy from the endpoint's metadata. */
export const AB_ARM_HEADER = 'x-ab-arm';
