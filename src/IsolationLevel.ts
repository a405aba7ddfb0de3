/**
 * The four SQL isolation levels, as accepted by `TransactionOptions.isolation`, and their validation.
 *
 * Each dialect maps a level to its own syntax: PostgreSQL and MySQL/MariaDB apply it as written; SQLite is
 * always serializable, which satisfies every level.
 *
 * @since 0.1.0
 */

/**
 * An SQL isolation level, from the weakest to the strongest.
 *
 * @since 0.1.0
 * @category models
 */
export type IsolationLevel = "read uncommitted" | "read committed" | "repeatable read" | "serializable"

/**
 * Every isolation level, from the weakest to the strongest.
 *
 * @since 0.1.0
 * @category constants
 */
export const all: ReadonlyArray<IsolationLevel> = [
  "read uncommitted",
  "read committed",
  "repeatable read",
  "serializable"
]

/**
 * Whether `u` is one of the four isolation levels, spelled exactly as in {@link IsolationLevel}.
 *
 * @since 0.1.0
 * @category guards
 */
export const isIsolationLevel = (u: unknown): u is IsolationLevel =>
  typeof u === "string" && (all as ReadonlyArray<string>).includes(u)

/**
 * The SQL keyword form of a level, as it follows `ISOLATION LEVEL` (`"repeatable read"` → `"REPEATABLE READ"`).
 *
 * @since 0.1.0
 * @category conversions
 */
export const toSql = (level: IsolationLevel): string => level.toUpperCase()
