/**
 * What the workers were told about each transfer, by its id (a client-generated sequence number), in a byte per
 * transfer; and the reconciliation of that record with the transfer log read back from the database.
 */
import { Cause, Exit, Option } from "effect"

export const Status = {
  pending: 1,
  committed: 2,
  /** A typed failure: the transfer must not have been applied. */
  failed: 3,
  /** `CommitOutcomeUnknown`: either outcome, all or nothing. */
  unknown: 4,
  /** Interrupted by the soak before it ended: either outcome, all or nothing. */
  interrupted: 5,
  /** A defect (`Effect.die`): either outcome, all or nothing; reported. */
  defect: 6
} as const

export type Status = typeof Status[keyof typeof Status]

/** The error's tag, with the driver's code for a plain `SqlError`. */
export const errorName = (error: unknown): string => {
  const tag = (error as { readonly _tag?: unknown } | undefined)?._tag
  if (typeof tag !== "string") return "unknown error"
  if (tag !== "SqlError") return tag
  const cause = (error as { readonly cause?: { readonly code?: unknown; readonly errno?: unknown } }).cause
  const code = cause?.code ?? cause?.errno
  return code === undefined ? "SqlError" : `SqlError(${String(code)})`
}

export class Ledger {
  private status = new Uint8Array(1 << 16)
  private reason = new Uint16Array(1 << 16)
  private readonly reasons: Array<string> = [""]
  private readonly reasonIndex = new Map<string, number>()
  /** The last id handed out (ids are 1, 2, 3…). */
  last = 0
  /** The first defects seen, in full. */
  readonly defects: Array<string> = []

  /** A new transfer id, pending. */
  next(): number {
    const id = ++this.last
    if (id >= this.status.length) {
      const status = new Uint8Array(this.status.length * 2)
      status.set(this.status)
      this.status = status
      const reason = new Uint16Array(this.reason.length * 2)
      reason.set(this.reason)
      this.reason = reason
    }
    this.status[id] = Status.pending
    return id
  }

  statusOf(id: number): number {
    return id <= this.last ? this.status[id]! : 0
  }

  reasonOf(id: number): string {
    return this.reasons[this.reason[id]!]!
  }

  /** Records how the transfer ended, as its worker saw it. */
  settle(id: number, exit: Exit.Exit<unknown, unknown>): Status {
    const [status, reason] = this.classify(exit)
    this.status[id] = status
    let index = this.reasonIndex.get(reason)
    if (index === undefined) {
      index = this.reasons.push(reason) - 1
      this.reasonIndex.set(reason, index)
    }
    this.reason[id] = index
    return status
  }

  private classify(exit: Exit.Exit<unknown, unknown>): readonly [Status, string] {
    if (Exit.isSuccess(exit)) return [Status.committed, "committed"]
    const failure = Cause.failureOption(exit.cause)
    if (Option.isSome(failure)) {
      const name = errorName(failure.value)
      return [name === "CommitOutcomeUnknown" ? Status.unknown : Status.failed, name]
    }
    if (Cause.isInterruptedOnly(exit.cause)) return [Status.interrupted, "interrupted"]
    if (this.defects.length < 5) this.defects.push(Cause.pretty(exit.cause))
    const defect = Cause.squash(exit.cause)
    return [Status.defect, `defect: ${String((defect as Error)?.message ?? defect).slice(0, 80)}`]
  }
}

/** How the transfers that ended one way are found in the log. */
export interface Resolution {
  readonly total: number
  /** Applied (their log row exists). */
  readonly applied: number
  /** Not applied. */
  readonly notApplied: number
}

export interface Reconciliation {
  readonly committed: Resolution
  /** Per failure reason (error tag, `CommitOutcomeUnknown`, `interrupted`, `defect: …`). */
  readonly outcomesByError: Readonly<Record<string, Resolution>>
  /** Reported committed, no log row. */
  readonly lost: number
  /** Reported failed with a typed error other than `CommitOutcomeUnknown`, yet applied. */
  readonly phantom: number
  /** Log rows with an id that no worker handed out, or whose transfer never ended. */
  readonly unexpectedLogRows: number
  readonly logRows: number
}

/** Compares the ledger with the ids of the log (`inLog[id]` is 1 when the row exists). */
export const reconcile = (ledger: Ledger, inLog: Uint8Array, logRows: number): Reconciliation => {
  const byReason = new Map<string, { total: number; applied: number }>()
  let committed = 0
  let committedApplied = 0
  let lost = 0
  let phantom = 0
  let unexpected = 0
  for (let id = 1; id < inLog.length; id++) {
    const applied = inLog[id] === 1
    const status = ledger.statusOf(id)
    if (status === 0 || status === Status.pending) {
      if (applied) unexpected++
      continue
    }
    if (status === Status.committed) {
      committed++
      if (applied) committedApplied++
      else lost++
      continue
    }
    const reason = ledger.reasonOf(id)
    const entry = byReason.get(reason) ?? { total: 0, applied: 0 }
    entry.total++
    if (applied) entry.applied++
    byReason.set(reason, entry)
    if (status === Status.failed && applied) phantom++
  }
  return {
    committed: { total: committed, applied: committedApplied, notApplied: committed - committedApplied },
    outcomesByError: Object.fromEntries(
      [...byReason].sort(([a], [b]) => a.localeCompare(b)).map((
        [reason, { applied, total }]
      ) => [reason, { total, applied, notApplied: total - applied }])
    ),
    lost,
    phantom,
    unexpectedLogRows: unexpected,
    logRows
  }
}
