import { BinaryReader, INT32_MAX, INT32_MIN } from '@bufbuild/protobuf/wire';
import {
  InferenceServiceService,
  type Prediction,
  type PredictRequest,
  type PredictResponse,
} from './generated/inference/v1/inference.js';

/**
 * Predict's wire codec: the generated ts-proto functions' exact results, at a
 * fraction of their cost.
 *
 * Decoding: ts-proto decodes each `google.protobuf.Struct` into message
 * objects (a `Struct`, an entry per field, a six-slot `Value` per value) and
 * then unwraps them into the plain object the handler reads; the fused
 * decoder here builds the plain object directly from the same
 * `BinaryReader`, following the generated code's control flow step for step:
 * the same recursion limit (100 nested messages, counted the same way), the
 * same handling of unknown fields, wrong wire types, zero tags and end-group
 * tags, the same errors, last-wins for repeated scalars and duplicate keys,
 * the same `Value.unwrap` priority when a value sets several kinds, and the
 * same treatment of a `__proto__` key (left out: ts-proto's unwrap copies own
 * keys only).
 *
 * Encoding: the response is sized first and written into one buffer, where
 * the generated encoder forks a writer per prediction and copies the result.
 *
 * Both are checked byte for byte and value for value against the generated
 * code on random and mutated messages (test/server/predict-codec.test.ts).
 */

/** ts-proto's limit and message, so a deep request fails the same way either way. */
const RECURSION_LIMIT = 100;
const RECURSION_MESSAGE = 'protobuf decode recursion limit exceeded';

type Json = string | number | boolean | null | JsonObject | Json[];
interface JsonObject {
  [key: string]: Json;
}

/**
 * The Struct keys seen lately, by a hash of their bytes: the same few keys
 * arrive in every request, and a key string made afresh each time must also
 * be looked up in V8's string table when it becomes a property name (a cache
 * miss or two per key under load). A hit returns the string made before, so
 * neither happens. Only ASCII keys up to 64 bytes are kept; a slot is
 * overwritten by the next key that hashes to it, so the cache never grows.
 */
const KEY_SLOTS = 1024;
const keyCache: (string | undefined)[] = new Array(KEY_SLOTS).fill(undefined);

/** A reader that keeps its bytes within reach (BinaryReader's own are private). */
class Reader extends BinaryReader {
  constructor(readonly data: Uint8Array) {
    super(data);
  }
}

/** `reader.string()` for a Struct key: the same string (or the same error), from the cache when it holds it. */
function key(reader: Reader): string {
  const start = reader.pos;
  const len = reader.uint32();
  const from = reader.pos;
  const to = from + len;
  const buf = reader.data;
  if (len > 64 || to > reader.len) {
    reader.pos = start;
    return reader.string();
  }
  let h = len;
  for (let i = from; i < to; i++) {
    const b = buf[i] as number;
    if (b > 0x7f) {
      reader.pos = start;
      return reader.string();
    }
    h = (Math.imul(h, 31) + b) | 0;
  }
  reader.pos = to;
  const slot = h & (KEY_SLOTS - 1);
  const cached = keyCache[slot];
  if (cached !== undefined && cached.length === len) {
    let i = 0;
    while (i < len && cached.charCodeAt(i) === buf[from + i]) i++;
    if (i === len) return cached;
  }
  const s = String.fromCharCode.apply(String, buf.subarray(from, to) as unknown as number[]);
  keyCache[slot] = s;
  return s;
}

function enter(depth: number): void {
  if (depth >= RECURSION_LIMIT) throw new Error(RECURSION_MESSAGE);
}

/** `Struct.unwrap(Struct.decode(reader, length))`, at `depth` nested messages. */
function struct(reader: Reader, length: number, depth: number): JsonObject {
  enter(depth);
  const end = reader.pos + length;
  const out: JsonObject = {};
  while (reader.pos < end) {
    const tag = reader.uint32();
    if (tag === 10) {
      entry(reader, reader.uint32(), depth + 1, out);
      continue;
    }
    if ((tag & 7) === 4 || tag === 0) break;
    reader.skip(tag & 7);
  }
  return out;
}

/** One `Struct_FieldsEntry`, stored into `into` as the generated decoder and unwrap would. */
function entry(reader: Reader, length: number, depth: number, into: JsonObject): void {
  enter(depth);
  const end = reader.pos + length;
  let name = '';
  let v: Json | undefined;
  while (reader.pos < end) {
    const tag = reader.uint32();
    if (tag === 10) {
      name = key(reader);
      continue;
    }
    if (tag === 18) {
      v = value(reader, reader.uint32(), depth + 1);
      continue;
    }
    if ((tag & 7) === 4 || tag === 0) break;
    reader.skip(tag & 7);
  }
  // ts-proto assigns `fields[key]` on a plain object (a `__proto__` key sets its
  // prototype, or nothing) and unwrap copies own keys: such a key never survives.
  if (v !== undefined && name !== '__proto__') into[name] = v;
}

/** `Value.unwrap(Value.decode(reader, length))`: its kinds in unwrap's priority. */
function value(reader: Reader, length: number, depth: number): Json | undefined {
  enter(depth);
  const end = reader.pos + length;
  let isNull = false;
  let num: number | undefined;
  let str: string | undefined;
  let bool: boolean | undefined;
  let obj: JsonObject | undefined;
  let list: Json[] | undefined;
  while (reader.pos < end) {
    const tag = reader.uint32();
    switch (tag) {
      case 8:
        reader.int32();
        isNull = true;
        continue;
      case 17:
        num = reader.double();
        continue;
      case 26:
        str = reader.string();
        continue;
      case 32:
        bool = reader.bool();
        continue;
      case 42:
        obj = struct(reader, reader.uint32(), depth + 1);
        continue;
      case 50:
        list = listValue(reader, reader.uint32(), depth + 1);
        continue;
    }
    if ((tag & 7) === 4 || tag === 0) break;
    reader.skip(tag & 7);
  }
  if (str !== undefined) return str;
  if (num !== undefined) return num;
  if (bool !== undefined) return bool;
  if (obj !== undefined) return obj;
  if (list !== undefined) return list;
  return isNull ? null : undefined;
}

/** `ListValue.unwrap(ListValue.decode(reader, length))`; an unset value stays an `undefined` item, as there. */
function listValue(reader: Reader, length: number, depth: number): Json[] {
  enter(depth);
  const end = reader.pos + length;
  const out: Json[] = [];
  while (reader.pos < end) {
    const tag = reader.uint32();
    if (tag === 10) {
      out.push(value(reader, reader.uint32(), depth + 1) as Json);
      continue;
    }
    if ((tag & 7) === 4 || tag === 0) break;
    reader.skip(tag & 7);
  }
  return out;
}

/** `PredictRequest.decode(bytes)`, the same result (or the same error), without the intermediate messages. */
export function decodePredictRequest(bytes: Uint8Array): PredictRequest {
  const reader = new Reader(bytes);
  const message: PredictRequest = { model: '', version: '', requestId: '', instances: [] };
  const end = reader.len;
  while (reader.pos < end) {
    const tag = reader.uint32();
    switch (tag) {
      case 10:
        message.model = reader.string();
        continue;
      case 18:
        message.version = reader.string();
        continue;
      case 26:
        message.requestId = reader.string();
        continue;
      case 34:
        message.instances.push(struct(reader, reader.uint32(), 1));
        continue;
    }
    if ((tag & 7) === 4 || tag === 0) break;
    reader.skip(tag & 7);
  }
  return message;
}

function varintSize(v: number): number {
  let n = 1;
  while (v > 0x7f) {
    v >>>= 7;
    n++;
  }
  return n;
}

/** The generated encoder's check (`@bufbuild/protobuf`'s `assertInt32`): the same refusals, the same messages. */
function assertInt32(v: unknown): void {
  if (typeof v !== 'number') throw new Error(`invalid int32: ${typeof v}`);
  if (!Number.isInteger(v) || v > INT32_MAX || v < INT32_MIN) throw new Error(`invalid int32: ${v}`);
}

/** Bytes of an `int32` varint (checked first): negative values are sign-extended to ten bytes, as protobuf does. */
function int32Size(v: number): number {
  assertInt32(v);
  return v < 0 ? 10 : varintSize(v);
}

function writeVarint(buf: Buffer, pos: number, v: number): number {
  while (v > 0x7f) {
    buf[pos++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buf[pos++] = v;
  return pos;
}

function writeInt32(buf: Buffer, pos: number, v: number): number {
  if (v >= 0) return writeVarint(buf, pos, v);
  // Two's complement over 64 bits: the low 32 bits, then 0xff…01 for the sign.
  let lo = v >>> 0;
  for (let i = 0; i < 4; i++) {
    buf[pos++] = (lo & 0x7f) | 0x80;
    lo >>>= 7;
  }
  buf[pos++] = (lo & 0x0f) | 0x70 | 0x80;
  for (let i = 0; i < 4; i++) buf[pos++] = 0xff;
  buf[pos++] = 0x01;
  return pos;
}

/** A string field's size (tag, length, bytes), 0 when it is empty and so left out. */
function stringFieldSize(s: string): number {
  if (s === '') return 0;
  const n = Buffer.byteLength(s);
  return 1 + varintSize(n) + n;
}

function writeString(buf: Buffer, pos: number, tag: number, s: string): number {
  if (s === '') return pos;
  buf[pos++] = tag;
  const n = Buffer.byteLength(s);
  pos = writeVarint(buf, pos, n);
  return pos + buf.write(s, pos, n, 'utf8');
}

function predictionSize(p: Prediction): number {
  return (
    (p.score !== 0 ? 9 : 0) +
    (p.label !== 0 ? 1 + int32Size(p.label) : 0) +
    stringFieldSize(p.group) +
    (p.action !== 0 ? 1 + int32Size(p.action) : 0)
  );
}

/** `Buffer.from(PredictResponse.encode(message).finish())`, byte for byte, sized once and written once. */
export function encodePredictResponse(message: PredictResponse): Buffer {
  const { predictions } = message;
  const sizes = new Array<number>(predictions.length);
  let size =
    stringFieldSize(message.model) +
    stringFieldSize(message.version) +
    stringFieldSize(message.requestId) +
    stringFieldSize(message.arm);
  for (let i = 0; i < predictions.length; i++) {
    const s = predictionSize(predictions[i] as Prediction);
    sizes[i] = s;
    size += 1 + varintSize(s) + s;
  }
  const buf = Buffer.allocUnsafe(size);
  let pos = writeString(buf, 0, 10, message.model);
  pos = writeString(buf, pos, 18, message.version);
  pos = writeString(buf, pos, 26, message.requestId);
  pos = writeString(buf, pos, 34, message.arm);
  for (let i = 0; i < predictions.length; i++) {
    const p = predictions[i] as Prediction;
    buf[pos++] = 42;
    pos = writeVarint(buf, pos, sizes[i] as number);
    if (p.score !== 0) {
      buf[pos++] = 9;
      pos = buf.writeDoubleLE(p.score, pos);
    }
    if (p.label !== 0) {
      buf[pos++] = 16;
      pos = writeInt32(buf, pos, p.label);
    }
    pos = writeString(buf, pos, 26, p.group);
    if (p.action !== 0) {
      buf[pos++] = 32;
      pos = writeInt32(buf, pos, p.action);
    }
  }
  return buf;
}

/** The generated service definition with Predict's codec swapped for the one above. */
export const InferenceServiceDefinition: typeof InferenceServiceService = {
  ...InferenceServiceService,
  predict: {
    ...InferenceServiceService.predict,
    requestDeserialize: (bytes: Buffer): PredictRequest => decodePredictRequest(bytes),
    responseSerialize: (message: PredictResponse): Buffer => encodePredictResponse(message),
  },
};
