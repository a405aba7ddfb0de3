import * as Duration from "effect/Duration"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import type { Dialect } from "../Dialect.js"
import * as IsolationLevel from "../IsolationLevel.js"
import type { ResolvedTransactionOptions, TransactionOptions } from "../Transaction.js"
import { InvalidTransactionOptions, TransactionOptionsConflict } from "../TransactionError.js"

/** @internal The name of a transaction that was not given one. */
export const defaultName = "transaction"

/**
 * @internal
 * What is known of a transaction begun by plain `sql.withTransaction`: nothing but that it is read-write at the
 * database's default level.
 */
export const foreignParent: ResolvedTransactionOptions = {
  name: defaultName,
  isolation: undefined,
  readOnly: false,
  deferrable: false,
  timeout: undefined,
  lockTimeout: undefined
}

const namePattern = /^[\p{L}\p{N}_.:/ -]{1,100}$/u

/** @internal */
export const invalid = (option: string, value: unknown, reason: string) =>
  Either.left(new InvalidTransactionOptions({ option, value, reason }))

/**
 * @internal
 * A duration from an input, or why it is not one: finite, positive (or zero when allowed). `Duration.decode` turns
 * negative and NaN numbers into zero, so the number itself is checked before it is lost.
 */
export const checkDuration = (
  input: Duration.DurationInput,
  allowZero: boolean
): Duration.Duration | string => {
  const decoded = Duration.decodeUnknown(input)
  const nanos = Option.isSome(decoded) && Duration.isFinite(decoded.value)
    ? Option.getOrElse(Duration.toNanos(decoded.value), () => -1n)
    : -1n
  // Negative strings, bigints and tuples decode to zero as well.
  const valid = typeof input === "number"
    ? allowZero ? input >= 0 : input > 0
    : typeof input === "string"
    ? !/^\s*-/.test(input)
    : typeof input === "bigint"
    ? input >= 0n
    : Array.isArray(input)
    ? input.every((n) => typeof n === "number" && n >= 0)
    : true
  if (Option.isNone(decoded) || !valid || nanos < 0n || (!allowZero && nanos === 0n)) {
    return allowZero ? "expected a finite duration ≥ 0" : "expected a positive, finite duration"
  }
  return decoded.value
}

/** @internal */
export const positiveDuration = (
  option: string,
  input: Duration.DurationInput | undefined
): Either.Either<Duration.Duration | undefined, InvalidTransactionOptions> => {
  if (input === undefined) return Either.right(undefined)
  const checked = checkDuration(input, false)
  return typeof checked === "string" ? invalid(option, input, checked) : Either.right(checked)
}

/** @internal A whole number ≥ 1, or the default when not given. */
export const positiveInteger = (
  option: string,
  input: number | undefined,
  fallback: number
): Either.Either<number, InvalidTransactionOptions> =>
  input === undefined
    ? Either.right(fallback)
    : Number.isSafeInteger(input) && input >= 1
    ? Either.right(input)
    : invalid(option, input, "expected a whole number ≥ 1")

/** The first invalid option, or `undefined`. Plain code: it runs for every transaction given an options object. */
const firstInvalid = (options: TransactionOptions): InvalidTransactionOptions | undefined => {
  if (options.name !== undefined && (typeof options.name !== "string" || !namePattern.test(options.name))) {
    return new InvalidTransactionOptions({
      option: "name",
      value: options.name,
      reason: "expected 1 to 100 letters, digits, spaces or _ . : / - (names label metrics: keep the set small)"
    })
  }
  if (options.isolation !== undefined && !IsolationLevel.isIsolationLevel(options.isolation)) {
    return new InvalidTransactionOptions({
      option: "isolation",
      value: options.isolation,
      reason: `expected one of ${IsolationLevel.all.join(", ")}`
    })
  }
  for (const option of ["readOnly", "deferrable"] as const) {
    const value = options[option]
    if (value !== undefined && typeof value !== "boolean") {
      return new InvalidTransactionOptions({ option, value, reason: "expected a boolean" })
    }
  }
  for (const option of ["timeout", "lockTimeout"] as const) {
    const checked = positiveDuration(option, options[option])
    if (Either.isLeft(checked)) return checked.left
  }
  return undefined
}

/**
 * @internal
 * Validates options given by the user (or as manager defaults). Unknown isolation strings, bad names and bad
 * durations are refused; what is not given stays `undefined`.
 */
export const validate = (
  options: TransactionOptions
): Either.Either<TransactionOptions, InvalidTransactionOptions> => {
  const invalidOption = firstInvalid(options)
  return invalidOption === undefined ? Either.right(options) : Either.left(invalidOption)
}

const durationOf = (input: Duration.DurationInput | undefined): Duration.Duration | undefined =>
  input === undefined ? undefined : Duration.decode(input)

/**
 * @internal
 * The options of an outermost transaction: the given ones over the manager's defaults (already validated),
 * checked against what the database can honour.
 */
export const resolve = (
  defaults: TransactionOptions,
  options: TransactionOptions | undefined,
  dialect: Dialect
): Either.Either<ResolvedTransactionOptions, InvalidTransactionOptions> => {
  const given = options ?? {}
  const invalidOption = options === undefined ? undefined : firstInvalid(options)
  if (invalidOption !== undefined) return Either.left(invalidOption)
  const resolved: ResolvedTransactionOptions = {
    name: given.name ?? defaults.name ?? defaultName,
    isolation: given.isolation ?? defaults.isolation,
    readOnly: given.readOnly ?? defaults.readOnly ?? false,
    deferrable: given.deferrable ?? defaults.deferrable ?? false,
    timeout: durationOf(given.timeout ?? defaults.timeout),
    lockTimeout: durationOf(given.lockTimeout ?? defaults.lockTimeout)
  }
  const refused = dialect.validate(resolved)
  return refused === undefined ? Either.right(resolved) : Either.left(refused)
}

/**
 * @internal
 * `resolve`, remembered per manager defaults: for no options, and for the last valid options given under each name,
 * by their fields. A transaction whose options equal the last ones of its name (the same isolation, flags and
 * duration inputs) pays a lookup and six comparisons instead of their validation. By their fields rather than by
 * the object: a function that builds its options per call (`atomic(effect, { name: "transfer", timeout: "5
 * seconds" })`) hits too (6,086 instructions per call before, under 800 now: `bench/micro.mjs options`), and the
 * memo keeps no per-call object alive (kept by the memo, which is old, each one outlived a scavenge). By name:
 * transactions of several names interleave, and each name usually has one set of options. Names are few (they label
 * metrics); past {@link memoNames} the memo starts again.
 */
export const resolveCached = (
  defaults: TransactionOptions,
  options: TransactionOptions | undefined,
  dialect: Dialect
): Either.Either<ResolvedTransactionOptions, InvalidTransactionOptions> => {
  let memo = cache.get(defaults)
  // The same defaults object may serve managers of two databases: a memo is for one dialect.
  if (memo === undefined || memo.dialect !== dialect) {
    memo = { dialect, none: resolve(defaults, undefined, dialect), byName: new Map() }
    cache.set(defaults, memo)
  }
  if (options === undefined) return memo.none
  const last = memo.byName.get(options.name)
  if (last !== undefined && sameFields(last.fields, options)) return last.resolved
  const resolved = resolve(defaults, options, dialect)
  // An invalid option is reported afresh each time (its error is made where it was given).
  if (Either.isRight(resolved)) {
    if (memo.byName.size >= memoNames) memo.byName.clear()
    memo.byName.set(options.name, { fields: fieldsOf(options), resolved })
  }
  return resolved
}

/** @internal How many names the options memo of a manager's defaults holds before it starts again. */
export const memoNames = 256

/** The fields of an options object, copied: the memo keeps them, not the object the caller made. */
const fieldsOf = (options: TransactionOptions): TransactionOptions => ({
  name: options.name,
  isolation: options.isolation,
  readOnly: options.readOnly,
  deferrable: options.deferrable,
  timeout: options.timeout,
  lockTimeout: options.lockTimeout
})

/**
 * Whether two duration inputs are the same: the same string or number, or equal `Duration`s (a tuple made per call
 * is resolved again).
 */
const sameDuration = (a: Duration.DurationInput | undefined, b: Duration.DurationInput | undefined): boolean =>
  a === b || (Duration.isDuration(a) && Duration.isDuration(b) && Duration.equals(a, b))

/** Whether two options objects have the same fields. */
const sameFields = (a: TransactionOptions, b: TransactionOptions): boolean =>
  a.name === b.name && a.isolation === b.isolation && a.readOnly === b.readOnly && a.deferrable === b.deferrable &&
  sameDuration(a.timeout, b.timeout) && sameDuration(a.lockTimeout, b.lockTimeout)

/** The options resolved for a manager's defaults: none given, and the last valid options given under each name. */
interface Memo {
  readonly dialect: Dialect
  readonly none: Either.Either<ResolvedTransactionOptions, InvalidTransactionOptions>
  readonly byName: Map<string | undefined, {
    readonly fields: TransactionOptions
    readonly resolved: Either.Either<ResolvedTransactionOptions, InvalidTransactionOptions>
  }>
}

const cache = new WeakMap<TransactionOptions, Memo>()

/**
 * @internal
 * The options of a nested block: it may give itself a name and a timeout, and repeat its parent's modes, but a
 * savepoint cannot change the isolation level, the access mode, deferrability or the lock timeout.
 */
export const resolveNested = (
  parent: ResolvedTransactionOptions,
  options: TransactionOptions | undefined
): Either.Either<ResolvedTransactionOptions, InvalidTransactionOptions | TransactionOptionsConflict> =>
  options === undefined
    ? Either.right(parent.timeout === undefined ? parent : { ...parent, timeout: undefined })
    : resolveGivenNested(parent, options)

const resolveGivenNested = (
  parent: ResolvedTransactionOptions,
  options: TransactionOptions
): Either.Either<ResolvedTransactionOptions, InvalidTransactionOptions | TransactionOptionsConflict> =>
  Either.gen(function*() {
    const given = yield* validate(options)
    const conflict = (option: string, parentValue: unknown, requested: unknown) =>
      Either.left(new TransactionOptionsConflict({ option, parent: parentValue, requested }))
    if (given.isolation !== undefined && given.isolation !== parent.isolation) {
      return yield* conflict("isolation", parent.isolation ?? "the database default", given.isolation)
    }
    if (given.readOnly !== undefined && given.readOnly !== parent.readOnly) {
      return yield* conflict("readOnly", parent.readOnly, given.readOnly)
    }
    if (given.deferrable !== undefined && given.deferrable !== parent.deferrable) {
      return yield* conflict("deferrable", parent.deferrable, given.deferrable)
    }
    const lockTimeout = yield* positiveDuration("lockTimeout", given.lockTimeout)
    if (
      lockTimeout !== undefined &&
      (parent.lockTimeout === undefined || !Duration.equals(lockTimeout, parent.lockTimeout))
    ) {
      return yield* conflict(
        "lockTimeout",
        parent.lockTimeout && Duration.format(parent.lockTimeout),
        given.lockTimeout
      )
    }
    return {
      ...parent,
      name: given.name ?? parent.name,
      timeout: yield* positiveDuration("timeout", given.timeout)
    }
  })
