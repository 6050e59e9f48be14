import { afterEach, describe, expect, it } from "vitest";
import { Gate } from "./gate.js";
import { SEED_VARIABLE, seededRandom, testRandom } from "./random.js";
import { nextTurn, retryUntil, settlesThisTurn, waitFor } from "./wait.js";

describe("waitFor", () => {
  it("returns the condition's first truthy value", async () => {
    let calls = 0;
    expect(await waitFor(() => ++calls >= 3 && calls)).toBe(3);
  });

  it("fails at the deadline with what it waited for, and at once when the condition throws", async () => {
    await expect(waitFor(() => false, { timeoutMs: 20, message: "the moon" })).rejects.toThrow(
      /timed out after 20 ms waiting for the moon/,
    );
    await expect(
      waitFor(() => {
        throw new Error("server exited");
      }),
    ).rejects.toThrow(/server exited/);
  });
});

describe("retryUntil", () => {
  it("retries until the operation succeeds, and rethrows the last error at the deadline", async () => {
    let attempts = 0;
    expect(
      await retryUntil(
        async () => {
          if (++attempts < 3) throw new Error(`attempt ${attempts}`);
          return attempts;
        },
        { intervalMs: 1 },
      ),
    ).toBe(3);
    await expect(
      retryUntil(
        async () => {
          throw new Error("still down");
        },
        { timeoutMs: 10, intervalMs: 1 },
      ),
    ).rejects.toThrow(/still down/);
    await expect(
      retryUntil(
        async () => {
          throw new Error("fatal");
        },
        { retryIf: () => false },
      ),
    ).rejects.toThrow(/fatal/);
  });
});

describe("settlesThisTurn", () => {
  it("tells a chain of promises from one that waits", async () => {
    expect(await settlesThisTurn(Promise.resolve().then(() => Promise.resolve()))).toBe(true);
    expect(await settlesThisTurn(new Promise(() => {}))).toBe(false);
  });
});

describe("Gate", () => {
  it("holds callers while closed, lets a counted number pass, and releases all when opened", async () => {
    const gate = new Gate();
    await gate.pass(); // open when created
    gate.close();
    const order: number[] = [];
    const passes = [1, 2, 3].map((n) => gate.pass().then(() => order.push(n)));
    await nextTurn();
    expect(gate.waiting).toBe(3);
    gate.allow(1);
    await nextTurn();
    expect(order).toEqual([1]);
    expect(gate.waiting).toBe(2);
    gate.open();
    await Promise.all(passes);
    expect(order).toEqual([1, 2, 3]);
    expect(gate.passed).toBe(4);
    gate.allow(1);
    await gate.pass();
    expect(await settlesThisTurn(gate.pass())).toBe(false);
  });
});

describe("seeded randomness", () => {
  const saved = process.env[SEED_VARIABLE];
  afterEach(() => {
    if (saved === undefined) delete process.env[SEED_VARIABLE];
    else process.env[SEED_VARIABLE] = saved;
  });

  it("replays the same sequence from the same seed", () => {
    const [a, b] = [seededRandom(42), seededRandom(42)];
    expect([a.next(), a.below(1000), a.bytes(16)]).toEqual([b.next(), b.below(1000), b.bytes(16)]);
    expect(seededRandom(43).bytes(16)).not.toEqual(seededRandom(42).bytes(16));
  });

  it(`takes the seed from ${SEED_VARIABLE} to replay a failure`, () => {
    process.env[SEED_VARIABLE] = "1234";
    expect(testRandom().seed).toBe(1234);
    process.env[SEED_VARIABLE] = "soon";
    expect(() => testRandom()).toThrow(/non-negative integer/);
  });
});
