import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import type { Server } from '@grpc/grpc-js';
import type { PackageDefinition } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';

/**
 * The FileDescriptorSet `buf build` writes next to the generated stubs
 * (scripts/dev/generate.mjs): inference.v1, grpc.health.v1 and the well-known types
 * they import, byte-for-byte as protoc would describe them. dist/server/ and
 * server/ both sit two levels below the project root.
 */
export const DESCRIPTOR_SET = fileURLToPath(
  new URL('../../server/generated/descriptors.binpb', import.meta.url),
);

/** Splits a serialized FileDescriptorSet (`repeated FileDescriptorProto file = 1`). */
export function splitDescriptorSet(bytes: Uint8Array): Uint8Array[] {
  const reader = new BinaryReader(bytes);
  const files: Uint8Array[] = [];
  while (reader.pos < reader.len) {
    const [field, wire] = reader.tag();
    if (field === 1 && wire === WireType.LengthDelimited) files.push(reader.bytes());
    else reader.skip(wire);
  }
  return files;
}

/**
 * Server reflection (v1 and v1alpha), so grpcurl and ghz work without the
 * .proto files. @grpc/reflection indexes the `fileDescriptorProtos` of the
 * package definition it is given; it is handed buf's exact descriptors rather
 * than proto-loader's, whose re-serialisation drops the well-known types'
 * files and misnames map entries (grpcurl then fails to resolve Struct and
 * grpc.health.v1.HealthListResponse).
 */
export function addReflection(server: Server): void {
  const fileDescriptorProtos = splitDescriptorSet(readFileSync(DESCRIPTOR_SET)).map((b) => Buffer.from(b));
  const definition = {
    descriptors: { format: 'descriptor', fileDescriptorProtos },
  } as unknown as PackageDefinition;
  new ReflectionService(definition).addToServer(server);
}
