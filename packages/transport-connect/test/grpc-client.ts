import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const protoDir = fileURLToPath(new URL("../proto", import.meta.url));

/** A plain @grpc/grpc-js client built from the .proto files, as a third party would write it. */
export function loadGrpcServices() {
  const definition = protoLoader.loadSync(["mount/v1/backend.proto", "migration/v1/seeder.proto"], {
    includeDirs: [protoDir],
    keepCase: true,
    longs: Number,
    defaults: true,
  });
  const root = grpc.loadPackageDefinition(definition) as unknown as {
    com: {
      pojtinger: {
        felicitas: {
          r3map: {
            mount: { v1: { Backend: grpc.ServiceClientConstructor } };
            migration: { v1: { Seeder: grpc.ServiceClientConstructor } };
          };
        };
      };
    };
  };
  return {
    Backend: root.com.pojtinger.felicitas.r3map.mount.v1.Backend,
    Seeder: root.com.pojtinger.felicitas.r3map.migration.v1.Seeder,
  };
}

export type GrpcError = grpc.ServiceError;

/** Calls one unary method and resolves with the reply or rejects with the gRPC ServiceError. */
export function unary<T>(
  client: grpc.Client,
  method: string,
  request: object,
  metadata = new grpc.Metadata(),
  deadlineMs = 10_000,
): Promise<T> {
  return new Promise((resolve, reject) => {
    type UnaryMethod = (
      request: object,
      metadata: grpc.Metadata,
      options: grpc.CallOptions,
      callback: (error: grpc.ServiceError | null, reply: T) => void,
    ) => void;
    const fn = (client as unknown as Record<string, UnaryMethod>)[method]!.bind(client);
    fn(
      request,
      metadata,
      { deadline: Date.now() + deadlineMs },
      (error: grpc.ServiceError | null, reply: T) => (error ? reject(error) : resolve(reply)),
    );
  });
}

export function bearer(token: string): grpc.Metadata {
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${token}`);
  return metadata;
}

/** Rejects with the error a call fails with; fails the test when it succeeds. */
export async function failure(promise: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await promise;
  } catch (error) {
    return error as grpc.ServiceError;
  }
  throw new Error("expected the call to fail");
}

export { grpc };
