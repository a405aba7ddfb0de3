/**
 * The memo of resolved options: options equal by their fields resolve once, whatever object carries them; a changed
 * field, a mutated object, another dialect or other defaults resolve again; invalid options are reported each time.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Either } from "effect"
import { mysql } from "../src/internal/dialect/mysql.js"
import { pg } from "../src/internal/dialect/pg.js"
import { memoNames, resolveCached } from "../src/internal/options.js"
import type { ResolvedTransactionOptions, TransactionOptions } from "../src/Transaction.js"

const resolvedOf = (
  defaults: TransactionOptions,
  options: TransactionOptions | undefined,
  dialect = pg
): ResolvedTransactionOptions => {
  const result = resolveCached(defaults, options, dialect)
  if (Either.isLeft(result)) return assert.fail(`expected valid options, got ${result.left.message}`)
  return result.right
}

describe("the options memo", () => {
  it("resolves options equal by their fields once, whatever object carries them", () => {
    const defaults: TransactionOptions = {}
    const first = resolvedOf(defaults, { name: "transfer", isolation: "serializable", timeout: "5 seconds" })
    const second = resolvedOf(defaults, { name: "transfer", isolation: "serializable", timeout: "5 seconds" })
    assert.strictEqual(second, first)
    assert.strictEqual(first.isolation, "serializable")
    assert.isTrue(Duration.equals(first.timeout!, Duration.seconds(5)))
    // Equal `Duration`s made per call are the same input.
    const third = resolvedOf(defaults, { name: "audit", timeout: Duration.seconds(1) })
    assert.strictEqual(resolvedOf(defaults, { name: "audit", timeout: Duration.seconds(1) }), third)
    // Each name keeps its own: interleaved names still hit.
    assert.strictEqual(
      resolvedOf(defaults, { name: "transfer", isolation: "serializable", timeout: "5 seconds" }),
      first
    )
  })

  it("resolves again when a field differs, when the object was mutated, or for another dialect or defaults", () => {
    const defaults: TransactionOptions = { readOnly: false }
    const options: { -readonly [K in keyof TransactionOptions]: TransactionOptions[K] } = {
      name: "report",
      isolation: "repeatable read"
    }
    const first = resolvedOf(defaults, options)
    const readOnly = resolvedOf(defaults, { ...options, readOnly: true })
    assert.notStrictEqual(readOnly, first)
    assert.isTrue(readOnly.readOnly)
    options.isolation = "serializable"
    const mutated = resolvedOf(defaults, options)
    assert.strictEqual(mutated.isolation, "serializable")
    assert.notStrictEqual(resolvedOf(defaults, options, mysql), mutated)
    const otherDefaults = resolvedOf({ timeout: "1 second" }, options)
    assert.isTrue(Duration.equals(otherDefaults.timeout!, Duration.seconds(1)))
    assert.isUndefined(mutated.timeout)
  })

  it("reports invalid options each time, with an error of their own", () => {
    const defaults: TransactionOptions = {}
    const options = { name: "bad", timeout: -1 }
    const first = resolveCached(defaults, options, pg)
    const second = resolveCached(defaults, options, pg)
    assert.isTrue(Either.isLeft(first) && Either.isLeft(second))
    if (Either.isLeft(first) && Either.isLeft(second)) {
      assert.strictEqual(first.left.option, "timeout")
      assert.notStrictEqual(second.left, first.left)
    }
    // A dialect's refusal too: MySQL has no deferrable transactions.
    assert.isTrue(Either.isLeft(resolveCached(defaults, { isolation: "serializable", deferrable: true }, mysql)))
  })

  it("starts again past its bound of names, and still resolves each right", () => {
    const defaults: TransactionOptions = {}
    const names = Array.from({ length: memoNames + 10 }, (_, i) => `name-${i}`)
    for (const name of names) assert.strictEqual(resolvedOf(defaults, { name }).name, name)
    const last = resolvedOf(defaults, { name: names.at(-1)! })
    assert.strictEqual(resolvedOf(defaults, { name: names.at(-1)! }), last)
    assert.strictEqual(resolvedOf(defaults, { name: names[0]! }).name, names[0])
  })
})
