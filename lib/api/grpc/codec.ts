/**
 * The engine service's methods as @grpc/grpc-js takes them, with protobufjs
 * encoding each message from the embedded proto (what @grpc/proto-loader
 * does, without its file loading). Shared by the server and the tests' client.
 */
import protobuf from "protobufjs";
import type { ServiceDefinition } from "@grpc/grpc-js";
import { ENGINE_PROTO } from "./proto.ts";

export const SERVICE = "vllm.grpc.engine.VllmEngine";

/** Decoded messages: plain objects, defaults filled, oneofs named, 64-bit numbers as numbers. */
const TO_OBJECT: protobuf.IConversionOptions = { defaults: true, oneofs: true, longs: Number };

/** The service definition, keyed by method name as in the proto (Generate, Embed, …). */
export function engineService(): ServiceDefinition {
  const root = protobuf.parse(ENGINE_PROTO, { keepCase: true }).root;
  const service = root.lookupService(SERVICE);
  const def: Record<string, unknown> = {};
  for (const m of service.methodsArray) {
    m.resolve();
    const req = m.resolvedRequestType!;
    const res = m.resolvedResponseType!;
    def[m.name] = {
      path: `/${SERVICE}/${m.name}`,
      requestStream: m.requestStream === true,
      responseStream: m.responseStream === true,
      requestSerialize: (o: object) => req.encode(req.fromObject(o)).finish(),
      requestDeserialize: (b: Uint8Array) => req.toObject(req.decode(b), TO_OBJECT),
      responseSerialize: (o: object) => res.encode(res.fromObject(o)).finish(),
      responseDeserialize: (b: Uint8Array) => res.toObject(res.decode(b), TO_OBJECT),
      originalName: m.name,
    };
  }
  return def as unknown as ServiceDefinition;
}
