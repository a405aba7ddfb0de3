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

const invalid = (option: string, value: unknown, reason: string) =>
  Either.left(new InvalidTransactionOptions({ option, value, reason }))

/** @internal */
export const positiveDuration = (
  option: string,
  input: Duration.DurationInput | undefined
): Either.Either<Duration.Duration | undefined, InvalidTransactionOptions> => {
  if (input === undefined) return Either.right(undefined)
  const decoded = Duration.decodeUnknown(input)
  // `Duration.decode` turns negative and NaN numbers into zero: check the number itself before it is lost.
  if (
    Option.isNone(decoded) || (typeof input === "number" && !(input > 0)) || !Duration.isFinite(decoded.value) ||
    Duration.toNanos(decoded.value).pipe(Option.getOrElse(() => 0n)) <= 0n
  ) {
    return invalid(option, input, "expected a positive, finite duration")
  }
  return Either.right(decoded.value)
}

const optionalBoolean = (
  option: string,
  value: unknown
): Either.Either<boolean | undefined, InvalidTransactionOptions> =>
  value === undefined || typeof value === "boolean" ? Either.right(value) : invalid(option, value, "expected a boolean")

/**
 * @internal
 * Validates options given by the user (or as manager defaults). Unknown isolation strings, bad names and bad
 * durations are refused; what is not given stays `undefined`.
 */
export const validate = (
  options: TransactionOptions
): Either.Either<TransactionOptions, InvalidTransactionOptions> =>
  Either.gen(function*() {
    if (options.name !== undefined && (typeof options.name !== "string" || !namePattern.test(options.name))) {
      return yield* invalid(
        "name",
        options.name,
        "expected 1 to 100 letters, digits, spaces or _ . : / - (names label metrics: keep the set small)"
      )
    }
    if (options.isolation !== undefined && !IsolationLevel.isIsolationLevel(options.isolation)) {
      return yield* invalid("isolation", options.isolation, `expected one of ${IsolationLevel.all.join(", ")}`)
    }
    yield* optionalBoolean("readOnly", options.readOnly)
    yield* optionalBoolean("deferrable", options.deferrable)
    yield* positiveDuration("timeout", options.timeout)
    yield* positiveDuration("lockTimeout", options.lockTimeout)
    return options
  })

/**
 * @internal
 * The options of an outermost transaction: the given ones over the manager's defaults, checked against what the
 * database can honour.
 */
export const resolve = (
  defaults: TransactionOptions,
  options: TransactionOptions | undefined,
  dialect: Dialect
): Either.Either<ResolvedTransactionOptions, InvalidTransactionOptions> =>
  Either.gen(function*() {
    const given = options === undefined ? {} : yield* validate(options)
    const merged = { ...defaults, ...definedOnly(given) }
    const resolved: ResolvedTransactionOptions = {
      name: merged.name ?? defaultName,
      isolation: merged.isolation,
      readOnly: merged.readOnly ?? false,
      deferrable: merged.deferrable ?? false,
      timeout: yield* positiveDuration("timeout", merged.timeout),
      lockTimeout: yield* positiveDuration("lockTimeout", merged.lockTimeout)
    }
    const refused = dialect.validate(resolved)
    return refused === undefined ? resolved : yield* Either.left(refused)
  })

/**
 * @internal
 * `resolve`, remembered per manager defaults and options object: `atomic(options)` in a pipeline keeps its options
 * object, so a transaction pays for their validation once.
 */
export const resolveCached = (
  defaults: TransactionOptions,
  options: TransactionOptions | undefined,
  dialect: Dialect
): Either.Either<ResolvedTransactionOptions, InvalidTransactionOptions> => {
  let byOptions = cache.get(defaults)
  if (byOptions === undefined) {
    byOptions = new WeakMap()
    cache.set(defaults, byOptions)
  }
  const key = options ?? noOptions
  let found = byOptions.get(key)
  if (found === undefined) {
    found = resolve(defaults, options, dialect)
    byOptions.set(key, found)
  }
  return found
}

const noOptions: TransactionOptions = {}
const cache = new WeakMap<
  TransactionOptions,
  WeakMap<TransactionOptions, Either.Either<ResolvedTransactionOptions, InvalidTransactionOptions>>
>()

const definedOnly = (options: TransactionOptions): TransactionOptions =>
  Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined))

/**
 * @internal
 * The options of a nested block: it may give itself a name and a timeout, and repeat its parent's modes, but a
 * savepoint cannot change the isolation level, the access mode, deferrability or the lock timeout.
 */
export const resolveNested = (
  parent: ResolvedTransactionOptions,
  options: TransactionOptions | undefined
): Either.Either<ResolvedTransactionOptions, InvalidTransactionOptions | TransactionOptionsConflict> =>
  Either.gen(function*() {
    if (options === undefined) return parent.timeout === undefined ? parent : { ...parent, timeout: undefined }
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
