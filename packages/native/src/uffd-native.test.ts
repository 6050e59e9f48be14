import { R3mapError } from "@r3map/core";
import { describe, expect, it } from "vitest";
import { nativeError } from "./uffd-native.js";

function addonError(message: string, fields: Record<string, string>): Error {
  return Object.assign(new Error(message), fields);
}

describe("nativeError", () => {
  it("keeps an r3map code the addon chose", () => {
    const error = nativeError(addonError("no userfaultfd", { code: "ERR_PERMISSION", errno: "EACCES" }));
    expect(error).toBeInstanceOf(R3mapError);
    expect(error).toMatchObject({ code: "ERR_PERMISSION", errno: "EACCES", message: "no userfaultfd" });
  });

  it("maps an errno name to a code, keeping the errno", () => {
    expect(nativeError(addonError("mmap: denied", { errno: "EACCES" }))).toMatchObject({
      code: "ERR_PERMISSION",
      errno: "EACCES",
    });
    expect(nativeError(addonError("mlock", { errno: "ENOMEM" }))).toMatchObject({ code: "ERR_NO_SPACE" });
    expect(nativeError(addonError("odd", { errno: "EXDEV" }))).toMatchObject({
      code: "ERR_IO",
      errno: "EXDEV",
    });
  });

  it("leaves other errors alone", () => {
    const plain = new TypeError("not ours");
    expect(nativeError(plain)).toBe(plain);
    const ours = new R3mapError("ERR_CLOSED", "closed");
    expect(nativeError(ours)).toBe(ours);
  });
});
