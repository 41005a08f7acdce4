/** Unit tests of the error catalogue and its one mapping to gRPC statuses (server/errors.ts). */
import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import {
  cancelled,
  deadlineExceeded,
  FieldError,
  INTERNAL_MESSAGE,
  invalidArgument,
  notFound,
  resourceExhausted,
  ServingError,
  statusName,
  toServiceError,
  unavailable,
} from '../../server/errors.js';

describe('toServiceError', () => {
  const catalogue: [string, ServingError, status][] = [
    ['notFound', notFound('unknown model "m"; models: conversion'), status.NOT_FOUND],
    ['invalidArgument', invalidArgument('instances[0].x is required'), status.INVALID_ARGUMENT],
    ['resourceExhausted', resourceExhausted('too many requests in flight'), status.RESOURCE_EXHAUSTED],
    ['unavailable', unavailable('no loaded version; retry'), status.UNAVAILABLE],
    ['cancelled', cancelled(), status.CANCELLED],
    ['deadlineExceeded', deadlineExceeded(), status.DEADLINE_EXCEEDED],
  ];
  for (const [name, err, code] of catalogue) {
    it(`keeps the code and client-safe message of ${name}() (${status[code]}), not internal`, () => {
      expect(err).to.be.instanceOf(ServingError);
      expect(toServiceError(err)).to.deep.equal({ error: { code, details: err.message }, internal: false });
    });
  }

  it('keeps the code of a subclass of ServingError', () => {
    class Draining extends ServingError {}
    const err = new Draining(status.UNAVAILABLE, 'draining');
    expect(toServiceError(err)).to.deep.equal({
      error: { code: status.UNAVAILABLE, details: 'draining' },
      internal: false,
    });
  });

  const unexpected: [string, unknown][] = [
    ['a plain Error', new Error('ENOENT: /srv/models/secret-path')],
    ['a TypeError', new TypeError("Cannot read properties of undefined (reading 'run')")],
    // Only the catalogue is trusted: a code-carrying lookalike (a grpc-js ServiceError
    // from some other call, a Node errno error) must not choose the caller's status.
    ['an object shaped like a ServingError', { code: status.NOT_FOUND, message: 'looks safe' }],
    ['an Error with a gRPC code property', Object.assign(new Error('upstream said'), { code: 5 })],
    // A field error is the preprocessor's; the service turns it into INVALID_ARGUMENT with the index.
    ['a FieldError that escaped the service', new FieldError('x', 'is required but missing')],
    ['a string', 'thrown text'],
    ['undefined', undefined],
    ['null', null],
  ];
  for (const [what, err] of unexpected) {
    it(`maps ${what} to INTERNAL with the generic message, marked internal`, () => {
      expect(toServiceError(err)).to.deep.equal({
        error: { code: status.INTERNAL, details: INTERNAL_MESSAGE },
        internal: true,
      });
    });
  }

  it('says nothing of the cause in the generic message', () => {
    expect(INTERNAL_MESSAGE).to.equal('internal error; the server logged the cause with the request id');
  });
});

describe('statusName', () => {
  it('names every gRPC status code in upper case, as the metrics and logs label them', () => {
    expect(
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16].map((c) => statusName(c as status)),
    ).to.deep.equal([
      'OK',
      'CANCELLED',
      'UNKNOWN',
      'INVALID_ARGUMENT',
      'DEADLINE_EXCEEDED',
      'NOT_FOUND',
      'ALREADY_EXISTS',
      'PERMISSION_DENIED',
      'RESOURCE_EXHAUSTED',
      'FAILED_PRECONDITION',
      'ABORTED',
      'OUT_OF_RANGE',
      'UNIMPLEMENTED',
      'INTERNAL',
      'UNAVAILABLE',
      'DATA_LOSS',
      'UNAUTHENTICATED',
    ]);
  });

  it('falls back to the number for a code outside the enum', () => {
    expect(statusName(99 as status)).to.equal('99');
  });
});

describe('FieldError', () => {
  it('keeps the field and the reason apart, and names both in its message', () => {
    const e = new FieldError('birthday', 'must be an ISO 8601 date');
    expect([e.field, e.reason, e.message, e.name]).to.deep.equal([
      'birthday',
      'must be an ISO 8601 date',
      'field "birthday": must be an ISO 8601 date',
      'FieldError',
    ]);
  });
});
