/**
 * The manager's registry of the outermost transactions running now: a list threaded through its entries, oldest
 * first.
 *
 * Not a `Map`: a map that gains and loses one entry per transaction reallocates its table as it grows and shrinks,
 * and the manager's map is old, so each new table outlived a scavenge (measured by `bench/profile.ts --survivors`:
 * 140 to 240 bytes per transaction promoted to the old generation). Linking an entry allocates nothing (see
 * `linkedList.ts`).
 */
import type { ActiveTransaction } from "../TransactionManager.js"
import { LinkedList } from "./linkedList.js"

/**
 * @internal
 * An entry of the registry: made with `new`, not as an object literal, which V8 may allocate in the old generation
 * (see `TransactionRoot`).
 */
export class ActiveEntry implements ActiveTransaction {
  depth = 0
  flagged = false
  /** @internal The neighbours in the registry's list. */
  previous: ActiveEntry | undefined = undefined
  /** @internal */
  next: ActiveEntry | undefined = undefined
  constructor(
    readonly id: string,
    readonly name: string,
    readonly startedAt: Date,
    readonly attempt: number,
    readonly connectionId: number | undefined
  ) {}
}

/** @internal What a registry entry tells, as a plain object of its own (the list's links left out). */
export const copyOf = (entry: ActiveTransaction): ActiveTransaction => ({
  id: entry.id,
  name: entry.name,
  depth: entry.depth,
  startedAt: entry.startedAt,
  attempt: entry.attempt,
  connectionId: entry.connectionId,
  flagged: entry.flagged
})

/** @internal The registry of active transactions, oldest first (in the order they were added). */
export class ActiveRegistry extends LinkedList<ActiveEntry> {}
