import { describe, expect, it } from "vitest";
import { R3mapError } from "../errors.js";
import { nextTurn } from "../testing/index.js";
import { withRetry } from "./retry.js";

const failing = (failures: number) => {
  let calls = 0;
  const operation = async () => {
    calls++;
    if (calls <= failures) throw new R3mapError("ERR_REMOTE_FAILED", `failure ${calls}`);
    return calls;
  };
  return { operation, calls: () => calls };
};

describe("withRetry", () => {
  it("retries until the operation succeeds within the attempts", async () => {
    const { operation, calls } = failing(2);
    expect(await withRetry(operation, { attempts: 3, backoffMs: 1 })).toBe(3);
    expect(calls()).toBe(3);
  });

  it("throws the last error once the attempts are spent", async () => {
    const { operation, calls } = failing(5);
    await expect(withRetry(operation, { attempts: 2, backoffMs: 1 })).rejects.toThrow(/failure 2/);
    expect(calls()).toBe(2);
  });

  it("stops retrying once the signal is aborted", async () => {
    const controller = new AbortController();
    controller.abort();
    const { operation, calls } = failing(5);
    await expect(withRetry(operation, { attempts: 5, backoffMs: 1 }, controller.signal)).rejects.toThrow(
      /failure 1/,
    );
    expect(calls()).toBe(1);
    const waiting = new AbortController();
    const during = failing(5);
    const retried = withRetry(during.operation, { attempts: 5, backoffMs: 60_000 }, waiting.signal);
    await nextTurn(); // the first attempt failed: the first backoff has begun
    waiting.abort();
    await expect(retried).rejects.toMatchObject({ code: "ERR_ABORTED" });
    expect(during.calls()).toBe(1);
  });
});
