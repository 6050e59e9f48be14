// The generated descriptors and message types, for users who build their own
// clients or servers on the same services.
export * as migrationV1 from "./gen/migration/v1/seeder_pb.js";
export * as mountV1 from "./gen/mount/v1/backend_pb.js";
export * as r3mapV1 from "./gen/r3map/v1/r3map_pb.js";
