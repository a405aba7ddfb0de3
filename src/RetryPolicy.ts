/**
 * Retrying whole transactions on deadlocks, serialization failures, lock timeouts and lost connections, with an
 * Effect `Schedule`: exponential backoff with jitter by default.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as ScheduleIntervals from "effect/ScheduleIntervals"
import { currentRetryAttempt, type RetryAttempt, TransactionTag } from "./internal/context.js"
import * as Metrics from "./internal/metrics.js"
import * as TransactionError from "./TransactionError.js"
import * as TransactionManager from "./TransactionManager.js"
import * as TransactionMetrics from "./TransactionMetrics.js"

const IdempotentTypeId: unique symbol = Symbol.for("effect-sql-tx/RetryPolicy/Idempotent")

/**
 * A retry policy: any `Schedule` whose input is the error. A policy marked {@link idempotent} also retries
 * `CommitOutcomeUnknown`.
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

const invalid = (option: string, value: unknown, reason: string) =>
  new TransactionError.InvalidTransactionOptions({ option: `RetryPolicy.${option}`, value, reason })

const positive = (option: string, input: Duration.DurationInput): Duration.Duration => {
  const decoded = Duration.decodeUnknown(input)
  if (
    Option.isNone(decoded) || (typeof input === "number" && !(input > 0)) || !Duration.isFinite(decoded.value) ||
    Duration.toMillis(decoded.value) <= 0
  ) {
    throw invalid(option, input, "expected a positive, finite duration")
  }
  return decoded.value
}

/**
 * Marks a policy as safe for idempotent transactions: `withRetry` then also retries `CommitOutcomeUnknown`.
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
 * at `maxDelay`, for at most `times` retries. Invalid options throw `InvalidTransactionOptions` at construction.
 *
 * @example
 * ```ts
 * import { RetryPolicy, withRetry } from "effect-sql-tx"
 *
 * const patient = RetryPolicy.exponential({ base: "20 millis", times: 10, maxDelay: "2 seconds" })
 * const program = transfer.pipe(withRetry(patient))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const exponential = (options: ExponentialOptions = {}): RetryPolicy<unknown> => {
  const base = positive("base", options.base ?? "10 millis")
  const maxDelay = positive("maxDelay", options.maxDelay ?? "1 second")
  const factor = options.factor ?? 2
  if (typeof factor !== "number" || !Number.isFinite(factor) || factor < 1) {
    throw invalid("factor", factor, "expected a finite number ≥ 1")
  }
  const times = options.times ?? 5
  if (!Number.isInteger(times) || times < 0) throw invalid("times", times, "expected a whole number ≥ 0")
  const backoff = options.jitter === false
    ? Schedule.exponential(base, factor)
    : Schedule.jittered(Schedule.exponential(base, factor))
  const policy: RetryPolicy<unknown> = backoff.pipe(
    Schedule.modifyDelay((_, delay) => Duration.min(delay, maxDelay)),
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
 * Re-runs the whole effect, which must contain the outermost `Transaction.atomic`, while it fails with a retryable
 * error (`TransactionError.isRetryable`; plus `CommitOutcomeUnknown` for an {@link idempotent} policy) and the
 * policy goes on. Inside a running transaction it does not retry (that transaction is aborted or holds its locks):
 * it passes the error on unchanged. Each retry is counted in `transaction_retries_total` and logged at debug
 * level with the attempt, the delay and the error.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Transaction, withRetry } from "effect-sql-tx"
 *
 * const program = transfer.pipe(Transaction.atomic({ isolation: "serializable" }), withRetry())
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const withRetry = <Out = unknown, R2 = never>(
  policy: RetryPolicy<Out, R2> = defaultPolicy as RetryPolicy<any, any>
) =>
<A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R | R2> =>
  Effect.flatMap(Effect.serviceOption(TransactionTag), (current) => {
    if (Option.isSome(current)) return self
    const retryOn = isIdempotent(policy)
      ? (error: unknown) => TransactionError.isRetryable(error) || isCommitOutcomeUnknown(error)
      : TransactionError.isRetryable
    return Effect.flatMap(Effect.serviceOption(TransactionManager.TransactionManager), (manager) => {
      const dbSystem = Option.match(manager, { onNone: () => undefined, onSome: (m) => m.dialect.dbSystem })
      return Effect.suspend(() => {
        let attempt = 1
        let lastError: unknown = undefined
        // Transactions of an attempt defer their afterRollback hooks here: discarded when the effect runs again,
        // run when withRetry stops, whatever the outcome.
        const state: RetryAttempt = {
          attempt: 0,
          deferred: [],
          lastTransaction: undefined,
          committed: false,
          failure: undefined
        }
        const oneAttempt = Effect.locally(
          Effect.suspend(() => {
            state.attempt++
            state.deferred.length = 0
            return self
          }),
          currentRetryAttempt,
          state
        )
        const runDeferred = Effect.suspend(() => Effect.all(state.deferred.splice(0), { discard: true }))
        const instrumented = policy.pipe(
          Schedule.whileInput(retryOn),
          Schedule.tapInput((error) => Effect.sync(() => lastError = error)),
          Schedule.onDecision((_, decision) => {
            if (decision._tag === "Done") return Effect.void
            return Effect.flatMap(Clock.currentTimeMillis, (now) => {
              const delay = Duration.millis(Math.max(0, ScheduleIntervals.start(decision.intervals) - now))
              const errorTag = (lastError as { readonly _tag?: string })._tag ?? "unknown"
              attempt++
              const counter = TransactionMetrics.retries.pipe(
                Metric.tagged("error", errorTag),
                dbSystem === undefined ? (m) => m : Metric.tagged("db_system", dbSystem),
                state.lastTransaction === undefined
                  ? (m) => m
                  : Metric.tagged("transaction", Metrics.seriesName(state.lastTransaction, dbSystem))
              )
              return Effect.zipRight(
                Metric.increment(counter),
                Effect.logDebug("effect-sql-tx: retrying the transaction").pipe(
                  Effect.annotateLogs({ attempt, delay: Duration.format(delay), error: errorTag })
                )
              )
            })
          })
        )
        return Effect.ensuring(Effect.retry(oneAttempt, instrumented), runDeferred)
      })
    })
  })

const isCommitOutcomeUnknown = (error: unknown): boolean =>
  TransactionError.isTransactionError(error) && error._tag === "CommitOutcomeUnknown"
