/**
 * The manager's registry of active transactions, a list threaded through its entries: order, removal from any
 * place, removal twice, and copies without the list's links.
 */
import { assert, describe, it } from "@effect/vitest"
import { ActiveEntry, ActiveRegistry, copyOf } from "../src/internal/registry.js"

const entry = (id: string) => new ActiveEntry(id, `tx-${id}`, new Date(Number(id) * 1000), 1, Number(id))
const ids = (registry: ActiveRegistry) => registry.entries().map((e) => e.id)

describe("ActiveRegistry", () => {
  it("keeps the entries in the order they were added, and removes them from any place", () => {
    const registry = new ActiveRegistry()
    const [a, b, c, d] = ["1", "2", "3", "4"].map(entry)
    for (const e of [a!, b!, c!, d!]) registry.add(e)
    assert.deepStrictEqual(ids(registry), ["1", "2", "3", "4"])
    assert.strictEqual(registry.size, 4)
    registry.remove(b!) // the middle
    assert.deepStrictEqual(ids(registry), ["1", "3", "4"])
    registry.remove(a!) // the first
    assert.deepStrictEqual(ids(registry), ["3", "4"])
    registry.remove(d!) // the last
    assert.deepStrictEqual(ids(registry), ["3"])
    registry.add(a!) // again, after being removed
    assert.deepStrictEqual(ids(registry), ["3", "1"])
    registry.remove(c!)
    registry.remove(a!)
    assert.deepStrictEqual(ids(registry), [])
    assert.strictEqual(registry.size, 0)
  })

  it("ignores an entry removed twice or never added, and a removed entry holds no neighbour", () => {
    const registry = new ActiveRegistry()
    const [a, b, c] = ["1", "2", "3"].map(entry)
    registry.add(a!)
    registry.add(b!)
    registry.remove(a!)
    registry.remove(a!)
    registry.remove(c!)
    assert.deepStrictEqual(ids(registry), ["2"])
    assert.strictEqual(registry.size, 1)
    assert.isUndefined(a!.next)
    assert.isUndefined(a!.previous)
  })

  it("copies an entry's fields, not its links", () => {
    const registry = new ActiveRegistry()
    const [a, b] = ["1", "2"].map(entry)
    registry.add(a!)
    registry.add(b!)
    a!.depth = 2
    a!.flagged = true
    assert.deepStrictEqual(copyOf(a!), {
      id: "1",
      name: "tx-1",
      depth: 2,
      startedAt: new Date(1000),
      attempt: 1,
      connectionId: 1,
      flagged: true
    })
  })
})
