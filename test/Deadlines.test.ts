/**
 * The deadlines on one timer: they run in the order they fall, not once cancelled (even by one that fell with them),
 * each once; a callback may add others; the timer keeps the process alive exactly while one is pending.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deadlines, maxTimerMillis } from "../src/internal/deadlines.js"

const sleep = (millis: number) => new Promise((resolve) => setTimeout(resolve, millis))

describe("Deadlines", () => {
  it("runs deadlines in the order they fall, each once, and not once cancelled", async () => {
    const deadlines = new Deadlines()
    const ran: Array<string> = []
    deadlines.add(60, () => ran.push("late"))
    deadlines.add(10, () => ran.push("early"))
    const cancelled = deadlines.add(30, () => ran.push("cancelled"))
    deadlines.add(30, () => ran.push("middle"))
    assert.strictEqual(deadlines.size, 4)
    deadlines.cancel(cancelled)
    deadlines.cancel(cancelled) // twice: nothing more
    assert.strictEqual(deadlines.size, 3)
    await sleep(120)
    assert.deepStrictEqual(ran, ["early", "middle", "late"])
    assert.strictEqual(deadlines.size, 0)
  })

  it("lets a callback cancel a deadline that fell with it, and add another", async () => {
    const deadlines = new Deadlines()
    const ran: Array<string> = []
    const second = { deadline: undefined as ReturnType<Deadlines["add"]> }
    deadlines.add(10, () => {
      ran.push("first")
      deadlines.cancel(second.deadline)
      deadlines.add(10, () => ran.push("added"))
    })
    second.deadline = deadlines.add(10, () => ran.push("second"))
    await sleep(80)
    assert.deepStrictEqual(ran, ["first", "added"])
    // Cancelling after it ran, or was dropped, does nothing.
    deadlines.cancel(second.deadline)
    assert.strictEqual(deadlines.size, 0)
  })

  it("keeps the process alive exactly while a deadline is pending", async () => {
    const deadlines = new Deadlines()
    assert.isFalse(deadlines.keepsProcessAlive)
    const first = deadlines.add(10_000, () => assert.fail("cancelled"))
    assert.isTrue(deadlines.keepsProcessAlive)
    deadlines.cancel(first)
    assert.isFalse(deadlines.keepsProcessAlive)
    // A later deadline reuses the timer, which keeps the process alive again; it runs when it falls.
    let ran = false
    deadlines.add(10, () => {
      ran = true
    })
    assert.isTrue(deadlines.keepsProcessAlive)
    await sleep(60)
    assert.isTrue(ran)
    assert.isFalse(deadlines.keepsProcessAlive)
  })

  it("sets no deadline past setTimeout's limit", () => {
    const deadlines = new Deadlines()
    assert.isUndefined(deadlines.add(maxTimerMillis + 1, () => assert.fail("no bound")))
    assert.strictEqual(deadlines.size, 0)
    deadlines.cancel(undefined)
  })
})
