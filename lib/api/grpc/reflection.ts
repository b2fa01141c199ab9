/**
 * gRPC server reflection (grpc.reflection.v1 and v1alpha) for the engine
 * service, with @grpc/reflection: grpcurl and friends can list and describe
 * it without the proto file. The package definition is made from the
 * embedded proto through @grpc/proto-loader, as a file named engine.proto.
 */
import type { Server } from "@grpc/grpc-js";
import { fromJSON } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import protobuf from "protobufjs";
import { ENGINE_PROTO } from "./proto.ts";

export function addReflection(server: Server): void {
  const root = protobuf.parse(ENGINE_PROTO, { keepCase: true }).root;
  const pkg = fromJSON(root.toJSON(), { keepCase: true });
  new ReflectionService(pkg).addToServer(server);
}
