#!/usr/bin/env node
import { Command, Option } from "commander";
import { demo } from "./commands/demo.js";
import { mount } from "./commands/mount.js";
import { serve } from "./commands/serve.js";
import { collect } from "./options.js";

const program = new Command()
  .name("r3map")
  .description(
    "Use a remote resource as local memory, a file or a block device, and migrate it between hosts.",
  );

program
  .command("demo")
  .description(
    "mount a memory backend served over NBD as a file and as a slice; read, write, verify, and print how fast",
  )
  .option("--size <bytes>", "resource size", "256MiB")
  .option("--chunk-size <bytes>", "chunk size", "1MiB")
  .option("--pull-workers <n>", "background pull workers", "32")
  .action(demo);

program
  .command("serve")
  .description(
    "serve a backend (memory:?size=1GiB, file:///disk.img, dir:///chunks?size=…) over NBD and/or Connect",
  )
  .argument("<backend>", "backend URI")
  .option(
    "--nbd <address>",
    "NBD listen address (host:port or a socket path); the default when --connect is absent",
  )
  .option("--export <name>", "NBD export name", "default")
  .option("--connect <address>", "Connect/gRPC listen address (host:port)")
  .option("--token <token>", "bearer token Connect clients must send (repeatable)", collect)
  .option("--scheme <package>", "extra package registering backend URI schemes (repeatable)", collect)
  .option("--json", "print the endpoints as JSON on stdout")
  .action((uri, options) => serve(uri, { ...options, schemes: options.scheme }));

program
  .command("mount")
  .description(
    "mount a remote (nbd://…, r3map+h2c://…, redis://…) as a file or a block device until SIGINT/SIGTERM",
  )
  .argument("<remote>", "remote backend URI")
  .addOption(new Option("--as <frontend>", "what to mount it as").choices(["file", "path"]).default("file"))
  .option("--managed", "keep a local cache, pull in the background, push writes back")
  .option("--local <uri>", "managed: local cache URI (default: memory of the remote's size)")
  .option("--chunk-size <bytes>", "chunk size", "1MiB")
  .option("--pull-workers <n>", "managed: background pull workers; 0 pulls only on demand", "32")
  .option("--push-interval <ms>", "managed: milliseconds between background pushes", "5000")
  .option("--mount-point <dir>", "an empty directory for the FUSE mount (default: a temporary one)")
  .option("--scheme <package>", "extra package registering backend URI schemes (repeatable)", collect)
  .option("--json", "print the mounted path as JSON on stdout")
  .action(mount);

await program.parseAsync();
