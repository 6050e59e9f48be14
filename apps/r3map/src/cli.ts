#!/usr/bin/env node
import { addExamples, createProgram, packageVersion, runCli } from "@r3map/cli-kit";
import { demoCommand } from "./commands/demo.js";
import { infoCommand } from "./commands/info.js";
import { migrateCommand } from "./commands/migrate.js";
import { mountCommand } from "./commands/mount.js";
import { recoverCommand } from "./commands/recover.js";
import { serveCommand } from "./commands/serve.js";
import { syncCommand } from "./commands/sync.js";

const program = createProgram({
  name: "r3map",
  description:
    "Use a remote resource as local memory, a file or a block device, and migrate it between hosts.",
  version: packageVersion(import.meta.url),
});
serveCommand(program);
mountCommand(program);
recoverCommand(program);
syncCommand(program);
infoCommand(program);
migrateCommand(program);
demoCommand(program);
program.addHelpText(
  "after",
  "\nExit status: 0 done; 1 failure (I/O, or a bug: rerun with --debug); 2 bad usage; 3 remote unreachable or too slow;\n4 remote error; 5 not possible here (privilege, kernel feature, read-only); 6 no space; 7 busy;\n8 writes saved to a recovery file, not pushed; 9 writes lost; 128+N forced exit by signal N.",
);
addExamples(program, [
  { what: "Print the version", line: "r3map --version" },
  { what: "Show the options and examples of serve", line: "r3map serve --help" },
]);

await runCli(program);
