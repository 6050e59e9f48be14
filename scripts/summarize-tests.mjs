// Prints the closing line of a test run from vitest's JSON report:
// "N passed, N failed[, N skipped]". Exits non-zero when the report is missing.
import { readFileSync } from "node:fs";

const file = process.argv[2];
// Failed whole-tree checks run before vitest (lint, types), counted as failed tests.
const checksFailed = Number(process.argv[3] ?? 0);
let report;
try {
  report = JSON.parse(readFileSync(file, "utf8"));
} catch (error) {
  console.log(`no test report at ${file}: ${error.message}`);
  console.log("0 passed, 1 failed");
  process.exit(1);
}
const passed = report.numPassedTests ?? 0;
// A test file that fails to load counts as a failure even though it ran no test.
const failedSuites = (report.testResults ?? []).filter(
  (r) => r.status === "failed" && (r.assertionResults ?? []).length === 0,
).length;
const failed = (report.numFailedTests ?? 0) + failedSuites + checksFailed;
const skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);
