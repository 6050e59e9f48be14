#!/usr/bin/env node
import { Command } from "commander";
import { demo } from "./commands/demo.js";

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
  .option("--pull-workers <n>", "background pull workers", "8")
  .action(demo);

await program.parseAsync();
