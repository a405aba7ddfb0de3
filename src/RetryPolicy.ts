/**
 * Retrying whole transactions on deadlocks, serialization failures, lock timeouts and lost connections, with an
 * Effect `Schedule`: exponential backoff with jitter by default.
 *
 * @since 0.1.0
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { dual } from "effect/Function"
import * as GlobalValue from "effect/GlobalValue"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as ScheduleIntervals from "effect/ScheduleIntervals"
import { currentRetryAttempt, type RetryAttempt, TransactionTag } from "./internal/context.js"
import * as Metrics from "./internal/metrics.js"
import * as TransactionError from "./TransactionError.js"
import * as TransactionManager from "./TransactionManager.js"

const IdempotentTypeId: unique symbol = Symbol.for("effect-sql-tx/RetryPolicy/Idempotent")

/**
 * A retry policy: any `Schedule` whose input is the error. A policy marked {@link idempotent} also retries
 * `CommitOutcomeUnknown`, and attempts in which a transaction already committed.
 *
 * @since 0.1.0
 * @category models
 */
export type RetryPolicy<Out = unknown, R = never> = Schedule.Schedule<Out, unknown, R>

/**
 * The options of {@link exponential}.
 *
 * @since 0.1.0
 * @category models
 */
export interface ExponentialOptions {
  /** The first delay. Default 10 ms. */
  readonly base?: Duration.DurationInput | undefined
  /** Each delay is the previous one times this. Default 2. */
  readonly factor?: number | undefined
  /** The most retries (the effect runs at most `times + 1` times). Default 5. */
  readonly times?: number | undefined
  /** No delay is longer than this. Default 1 second. */
  readonly maxDelay?: Duration.DurationInput | undefined
  /** Multiply each delay by a random factor between 0.8 and 1.2. Default `true`. */
  readonly jitter?: boolean | undefined
  /**
   * The transaction may safely run twice: also retry `CommitOutcomeUnknown` (the connection failed during
   * COMMIT, which may have committed). Default `false`.
   */
  readonly idempotent?: boolean | undefined
}

const InvalidTypeId: unique symbol = Symbol.for("effect-sql-tx/RetryPolicy/Invalid")

const invalid = (option: string, value: unknown, reason: string) =>
  new TransactionError.InvalidTransactionOptions({ option: `RetryPolicy.${option}`, value, reason })

/**
 * A policy made from invalid options: `withRetry` fails with its error before running the effect. Used anywhere
 * else, it never retries.
 */
const invalidPolicy = (error: TransactionError.InvalidTransactionOptions): RetryPolicy<unknown> =>
  Object.assign(Object.create(Schedule.stop) as RetryPolicy<unknown>, { [InvalidTypeId]: error })

/** The error of a policy made from invalid options (also when marked idempotent afterwards). */
const invalidOf = (policy: RetryPolicy<unknown, unknown>): TransactionError.InvalidTransactionOptions | undefined =>
  (policy as { readonly [InvalidTypeId]?: TransactionError.InvalidTransactionOptions })[InvalidTypeId]

const positive = (
  option: string,
  input: Duration.DurationInput
): Either.Either<Duration.Duration, TransactionError.InvalidTransactionOptions> => {
  const decoded = Duration.decodeUnknown(input)
  if (
    Option.isNone(decoded) || (typeof input === "number" && !(input > 0)) || !Duration.isFinite(decoded.value) ||
    Duration.toMillis(decoded.value) <= 0
  ) {
    return Either.left(invalid(option, input, "expected a positive, finite duration"))
  }
  return Either.right(decoded.value)
}

/**
 * Marks a policy as safe for idempotent transactions: `withRetry` then also retries `CommitOutcomeUnknown`, and
 * re-runs an attempt in which a transaction already committed.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { SqlClient } from "@effect/sql"
 * import { RetryPolicy, Transaction, withRetry } from "effect-sql-tx"
 *
 * // Setting a value (not adding to it): running it twice leaves the same row, so a COMMIT whose outcome is
 * // unknown may be run again.
 * const setPrice = Effect.flatMap(SqlClient.SqlClient, (sql) => sql`UPDATE prices SET amount = 10 WHERE id = 1`).pipe(
 *   Transaction.atomic({ name: "set-price" })
 * )
 *
 * const program = setPrice.pipe(withRetry(RetryPolicy.idempotent(RetryPolicy.defaultPolicy)))
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const idempotent = <Out, R>(policy: RetryPolicy<Out, R>): RetryPolicy<Out, R> =>
  Object.assign(Object.create(policy) as RetryPolicy<Out, R>, { [IdempotentTypeId]: true })

/**
 * Whether a policy was marked {@link idempotent}.
 *
 * @since 0.1.0
 * @category guards
 */
export const isIdempotent = (policy: RetryPolicy<unknown, unknown>): boolean =>
  (policy as { readonly [IdempotentTypeId]?: boolean })[IdempotentTypeId] === true

/**
 * Exponential backoff: delays of `base`, `base × factor`, `base × factor²`… each jittered (×0.8 to ×1.2) and capped
 * at `maxDelay`, for at most `times` retries. Nothing is thrown: a policy made from invalid options makes
 * `withRetry` fail with `InvalidTransactionOptions` before it runs the effect.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { SqlClient } from "@effect/sql"
 * import { RetryPolicy, Transaction, withRetry } from "effect-sql-tx"
 *
 * const transfer = Effect.flatMap(SqlClient.SqlClient, (sql) => sql`UPDATE accounts SET balance = balance - 10`).pipe(
 *   Transaction.atomic({ name: "transfer" })
 * )
 *
 * // At most 10 retries, 20 ms, 40 ms, 80 ms… apart (jittered), never more than 2 seconds.
 * const patient = RetryPolicy.exponential({ base: "20 millis", times: 10, maxDelay: "2 seconds" })
 * const program = transfer.pipe(withRetry(patient))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const exponential = (options: ExponentialOptions = {}): RetryPolicy<unknown> => {
  const base = positive("base", options.base ?? "10 millis")
  if (Either.isLeft(base)) return invalidPolicy(base.left)
  const maxDelay = positive("maxDelay", options.maxDelay ?? "1 second")
  if (Either.isLeft(maxDelay)) return invalidPolicy(maxDelay.left)
  const factor = options.factor ?? 2
  if (typeof factor !== "number" || !Number.isFinite(factor) || factor < 1) {
    return invalidPolicy(invalid("factor", factor, "expected a finite number ≥ 1"))
  }
  const times = options.times ?? 5
  if (!Number.isInteger(times) || times < 0) {
    return invalidPolicy(invalid("times", times, "expected a whole number ≥ 0"))
  }
  const backoff = options.jitter === false
    ? Schedule.exponential(base.right, factor)
    : Schedule.jittered(Schedule.exponential(base.right, factor))
  const policy: RetryPolicy<unknown> = backoff.pipe(
    Schedule.modifyDelay((_, delay) => Duration.min(delay, maxDelay.right)),
    Schedule.intersect(Schedule.recurs(times))
  )
  return options.idempotent === true ? idempotent(policy) : policy
}

/**
 * The default policy: exponential from 10 ms, factor 2, jittered, at most 5 retries, no delay over 1 second.
 *
 * @since 0.1.0
 * @category constructors
 */
export const defaultPolicy: RetryPolicy<unknown> = exponential()

export {
  /**
   * The default policy: exponential from 10 ms, factor 2, jittered, at most 5 retries, no delay over 1 second.
   *
   * @since 0.1.0
   * @category constructors
   */
  defaultPolicy as default
}

/**
 * How many transaction names {@link withRetry} remembers having warned about (per process). Past it, further names
 * share one warning.
 */
const maxWarnedNames = 200

/** The names of the running transactions inside which `withRetry` declined to retry, each warned about once. */
const warnedNames = GlobalValue.globalValue(
  Symbol.for("effect-sql-tx/RetryPolicy/warnedNames"),
  () => new Set<string>()
)

/** Whether this is the first time `withRetry` declines to retry inside a transaction of this name. */
const firstTimeInside = (name: string): boolean => {
  const key = warnedNames.has(name) || warnedNames.size < maxWarnedNames ? name : "\u0000other"
  if (warnedNames.has(key)) return false
  warnedNames.add(key)
  return true
}

/** The name of the running transaction in a context: ours (innermost block), or a plain `sql.withTransaction`. */
const runningTransaction = (context: Context.Context<never>): string | undefined => {
  const ours = Context.getOption(context, TransactionTag)
  if (Option.isSome(ours)) return ours.value.name
  return Option.isSome(Context.getOption(context, SqlClient.TransactionConnection)) ? "sql.withTransaction" : undefined
}

const errorTagOf = (error: unknown): string => {
  const tag = (error as { readonly _tag?: unknown } | null | undefined)?._tag
  return typeof tag === "string" ? tag : "unknown"
}

/**
 * Re-runs the whole effect, which must contain the outermost `Transaction.atomic`, while it fails with a retryable
 * error (`TransactionError.isRetryable`; plus `CommitOutcomeUnknown` for an {@link idempotent} policy) and the
 * policy goes on. Each retry is counted in `transaction_retries_total` and logged at debug level with the attempt,
 * the delay and the error.
 *
 * - An attempt in which an outermost transaction already committed is not run again (that would commit it twice):
 *   the error passes on, and a warning says why. An {@link idempotent} policy runs it again.
 * - Inside a running transaction (ours, or a plain `sql.withTransaction`) it does not retry (that transaction is
 *   aborted or holds its locks) and passes the error on unchanged; the first time it declines to retry inside a
 *   transaction of a given name, a warning names it (once per name per process, for up to 200 names; further
 *   names share one warning): `withRetry` belongs outside the outermost `atomic`. The exception is a transaction
 *   outermost on its own connection, `Transaction.independent`, begun inside the effect: the error it ended with is
 *   retried, if nothing of the attempt committed.
 * - A policy made from invalid options (see {@link exponential}) fails with `InvalidTransactionOptions` before the
 *   effect runs.
 *
 * Nested in another `withRetry`, it tells the enclosing one when one of its attempts committed, and hands it the
 * `afterRollback` hooks of its last attempt.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { SqlClient } from "@effect/sql"
 * import { Transaction, withRetry } from "effect-sql-tx"
 *
 * const transfer = Effect.gen(function*() {
 *   const sql = yield* SqlClient.SqlClient
 *   yield* sql`UPDATE accounts SET balance = balance - 10 WHERE id = 1`
 *   yield* sql`UPDATE accounts SET balance = balance + 10 WHERE id = 2`
 * })
 * const audit = Effect.flatMap(SqlClient.SqlClient, (sql) => sql`INSERT INTO audit (what) VALUES ('transfer')`)
 *
 * const program = transfer.pipe(Transaction.atomic({ isolation: "serializable" }), withRetry())
 *
 * // Inside a running transaction, an independent one can be retried on its own.
 * const audited = Effect.gen(function*() {
 *   yield* transfer
 *   yield* audit.pipe(Transaction.independent({ name: "audit" }), withRetry())
 * }).pipe(Transaction.atomic({ name: "transfer" }), withRetry())
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const withRetry: {
  /**
   * Data-last: `effect.pipe(withRetry(policy))`.
   *
   * @since 0.1.0
   * @category combinators
   */
  <Out = unknown, R2 = never>(
    policy?: RetryPolicy<Out, R2>
  ): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | TransactionError.InvalidTransactionOptions, R | R2>
  /**
   * Data-first: `withRetry(effect, policy)`.
   *
   * @since 0.1.0
   * @category combinators
   */
  <A, E, R, Out = unknown, R2 = never>(
    self: Effect.Effect<A, E, R>,
    policy?: RetryPolicy<Out, R2>
  ): Effect.Effect<A, E | TransactionError.InvalidTransactionOptions, R | R2>
} = dual(
  (args) => Effect.isEffect(args[0]),
  <A, E, R, Out, R2>(
    self: Effect.Effect<A, E, R>,
    policy?: RetryPolicy<Out, R2>
  ): Effect.Effect<A, E | TransactionError.InvalidTransactionOptions, R | R2> => retrying(self, policy ?? defaultPolicy)
)

const retrying = <A, E, R, Out, R2>(
  self: Effect.Effect<A, E, R>,
  policy: RetryPolicy<Out, R2>
): Effect.Effect<A, E | TransactionError.InvalidTransactionOptions, R | R2> => {
  const invalidError = invalidOf(policy)
  if (invalidError !== undefined) return Effect.fail(invalidError)
  const idempotentPolicy = isIdempotent(policy)
  const retryable = idempotentPolicy
    ? (error: unknown) => TransactionError.isRetryable(error) || isCommitOutcomeUnknown(error)
    : TransactionError.isRetryable
  return Effect.withFiberRuntime((fiber) => {
    const context = fiber.currentContext as Context.Context<never>
    const running = runningTransaction(context)
    const enclosing = fiber.getFiberRef(currentRetryAttempt)
    const dbSystem = Option.match(Context.getOption(context, TransactionManager.TransactionManager), {
      onNone: () => undefined,
      onSome: (manager) => manager.dialect.dbSystem
    })
    let attempt = 1
    let lastError: unknown = undefined
    // Transactions of an attempt record here whether one committed and what the last one ended with, and defer
    // their afterRollback hooks: discarded when the effect runs again, run when withRetry stops.
    const state: RetryAttempt = {
      attempt: 0,
      deferred: [],
      lastTransaction: undefined,
      committed: false,
      failure: undefined
    }
    // The transactions of this attempt are the enclosing attempt's too: a commit forbids running it again.
    const tellEnclosing = enclosing === undefined ? Effect.void : Effect.sync(() => {
      if (state.committed) enclosing.committed = true
      if (state.failure !== undefined) {
        enclosing.failure = state.failure
        enclosing.lastTransaction = state.lastTransaction
      }
    })
    const oneAttempt = Effect.ensuring(
      Effect.locally(
        Effect.suspend(() => {
          state.attempt++
          state.deferred.length = 0
          state.committed = false
          state.failure = undefined
          return self
        }),
        currentRetryAttempt,
        state
      ),
      tellEnclosing
    )
    const endDeferred = Effect.suspend(() => {
      const hooks = state.deferred.splice(0)
      if (enclosing === undefined) return Effect.all(hooks, { discard: true })
      enclosing.deferred.push(...hooks)
      return Effect.void
    })
    const annotations = (error: unknown) => ({
      transaction: state.lastTransaction ?? running ?? "n/a",
      attempt: state.attempt,
      error: errorTagOf(error)
    })
    /** Whether the policy may run the effect again after this error; says why not where it is a surprise. */
    const mayRetry = (error: unknown): Effect.Effect<boolean> => {
      if (!retryable(error)) return Effect.succeed(false)
      if (running !== undefined && error !== state.failure) {
        // Not the error of a transaction of its own (an independent one): the running transaction's.
        if (!firstTimeInside(running)) return Effect.succeed(false)
        return Effect.as(
          Effect.logWarning(
            "effect-sql-tx: withRetry inside a running transaction does not retry: the error belongs to the " +
              "running transaction, which is aborted or holds its locks; put withRetry outside the outermost " +
              "Transaction.atomic (logged once per transaction name)"
          ).pipe(Effect.annotateLogs({ ...annotations(error), transaction: running })),
          false
        )
      }
      if (state.committed && !idempotentPolicy) {
        return Effect.as(
          Effect.logWarning(
            "effect-sql-tx: withRetry does not run the attempt again: a transaction of it already committed, and " +
              "running it again would commit that one twice (mark the policy idempotent if that is safe)"
          ).pipe(Effect.annotateLogs(annotations(error))),
          false
        )
      }
      return Effect.succeed(true)
    }
    const instrumented = policy.pipe(
      Schedule.checkEffect((error) => mayRetry(error)),
      Schedule.tapInput((error) => Effect.sync(() => lastError = error)),
      Schedule.onDecision((_, decision) => {
        if (decision._tag === "Done") return Effect.void
        return Effect.flatMap(Clock.currentTimeMillis, (now) => {
          const delay = Duration.millis(Math.max(0, ScheduleIntervals.start(decision.intervals) - now))
          const errorTag = errorTagOf(lastError)
          attempt++
          const counter = Metrics.retryCounter(state.lastTransaction, dbSystem, errorTag)
          return Effect.zipRight(
            Metric.increment(counter),
            Effect.logDebug("effect-sql-tx: retrying the transaction").pipe(
              Effect.annotateLogs({ attempt, delay: Duration.format(delay), error: errorTag })
            )
          )
        })
      })
    )
    return Effect.ensuring(Effect.retry(oneAttempt, instrumented), endDeferred)
  })
}

const isCommitOutcomeUnknown = (error: unknown): boolean =>
  TransactionError.isTransactionError(error) && error._tag === "CommitOutcomeUnknown"
