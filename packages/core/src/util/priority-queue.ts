/**
 * A max-heap of chunk indexes whose priorities can change while queued.
 * Equal priorities come out in ascending chunk order, so the default (all
 * equal) is a sequential sweep.
 */
export class ChunkPriorityQueue {
  readonly #heap: number[] = [];
  /** Position in `#heap` per queued chunk. */
  readonly #position = new Map<number, number>();
  readonly #priority = new Map<number, number>();

  get size(): number {
    return this.#heap.length;
  }

  has(chunk: number): boolean {
    return this.#position.has(chunk);
  }

  /** Adds `chunk`, or changes its priority if it is already queued. */
  push(chunk: number, priority: number): void {
    const at = this.#position.get(chunk);
    this.#priority.set(chunk, priority);
    if (at === undefined) {
      this.#heap.push(chunk);
      this.#position.set(chunk, this.#heap.length - 1);
      this.#up(this.#heap.length - 1);
    } else {
      this.#up(at);
      this.#down(this.#position.get(chunk)!);
    }
  }

  /** Removes and returns the chunk with the highest priority. */
  pop(): number | undefined {
    const top = this.#heap[0];
    if (top === undefined) return undefined;
    const last = this.#heap.pop()!;
    this.#position.delete(top);
    this.#priority.delete(top);
    if (this.#heap.length > 0) {
      this.#heap[0] = last;
      this.#position.set(last, 0);
      this.#down(0);
    }
    return top;
  }

  /** The highest priority in the queue, or -Infinity when empty. */
  peekPriority(): number {
    const top = this.#heap[0];
    return top === undefined ? Number.NEGATIVE_INFINITY : this.#priority.get(top)!;
  }

  #before(a: number, b: number): boolean {
    const pa = this.#priority.get(a)!;
    const pb = this.#priority.get(b)!;
    return pa > pb || (pa === pb && a < b);
  }

  #swap(i: number, j: number): void {
    const a = this.#heap[i]!;
    const b = this.#heap[j]!;
    this.#heap[i] = b;
    this.#heap[j] = a;
    this.#position.set(b, i);
    this.#position.set(a, j);
  }

  #up(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.#before(this.#heap[i]!, this.#heap[parent]!)) return;
      this.#swap(i, parent);
      i = parent;
    }
  }

  #down(i: number): void {
    for (;;) {
      const left = 2 * i + 1;
      const right = left + 1;
      let best = i;
      if (left < this.#heap.length && this.#before(this.#heap[left]!, this.#heap[best]!)) best = left;
      if (right < this.#heap.length && this.#before(this.#heap[right]!, this.#heap[best]!)) best = right;
      if (best === i) return;
      this.#swap(i, best);
      i = best;
    }
  }
}
