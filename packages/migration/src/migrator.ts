import type { Backend } from "@r3map/core";
import { R3mapError } from "@r3map/core";
import type { MountCore } from "@r3map/mount";
import { type Finalized, Leecher, type LeecherOptions } from "./leecher.js";
import { Seeder, type SeederOptions } from "./seeder.js";

/** What a leech started by a Migrator gives: the mount at once, then its two steps. */
export interface Leech {
  leecher: Leecher;
  /** The last round: the application may resume here once it resolves. */
  finalize(): Promise<Finalized & { seed: (options?: SeederOptions) => Promise<Seeder> }>;
}

/**
 * The original r3map's Migrator: one object per host that either seeds its
 * resource or leeches one from another host — never both at once — and, once
 * a leech is complete, can seed what it received (chains A → B → C).
 *
 *     const migrator = new Migrator();
 *     const { leecher, finalize } = await migrator.leech(uri, { as: "file" });
 *     const { seed } = await finalize();     // the application resumes on leecher.path
 *     const seeder = await seed();           // once every chunk is here, serve it on
 */
export class Migrator {
  #role: "seeding" | "leeching" | undefined;

  /** Seeds `resource` (see `Seeder.start`). */
  async seed(resource: MountCore | Backend, options: SeederOptions = {}): Promise<Seeder> {
    this.#take("seeding");
    try {
      return await Seeder.start(resource, options);
    } catch (error) {
      this.#role = undefined;
      throw error;
    }
  }

  /** Leeches from the seeder at `seederUri` (see `Leecher.open`). */
  async leech(seederUri: string, options: LeecherOptions): Promise<Leech> {
    this.#take("leeching");
    let leecher: Leecher;
    try {
      leecher = await Leecher.open(seederUri, options);
    } catch (error) {
      this.#role = undefined;
      throw error;
    }
    return {
      leecher,
      finalize: async () => {
        const finalized = await leecher.finalize();
        return {
          ...finalized,
          // Waits until every chunk is here and the old seeder let go, then seeds the same mount.
          seed: async (seederOptions: SeederOptions = {}) => {
            const owned = await leecher.release();
            this.#role = undefined;
            return this.seed(owned, seederOptions);
          },
        };
      },
    };
  }

  #take(role: "seeding" | "leeching"): void {
    if (this.#role !== undefined) {
      throw new R3mapError(
        "ERR_BUSY",
        `this migrator is already ${this.#role}: a migrator either seeds or leeches (a completed leech may seed)`,
      );
    }
    this.#role = role;
  }
}
