import { SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { assert, describe, layer } from "@effect/vitest"
import { Chunk, Clock, Effect, Fiber, Layer, Option, TestClock } from "effect"
import { Transaction, TransactionLayer } from "../../src/index.js"

// The code under test: it needs a transaction manager and a client, nothing else.
const addNote = (body: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => sql`INSERT INTO notes (body) VALUES (${body})`).pipe(
    Transaction.atomic({ name: "add-note", timeout: "10 seconds" })
  )

const countNotes = Effect.flatMap(SqlClient.SqlClient, (sql) => sql<{ n: number }>`SELECT COUNT(*) AS n FROM notes`)

// A fresh in-memory database per test block: the real library, the real SQL, no server.
const TestDatabase = TransactionLayer.pipe(Layer.provideMerge(SqliteClient.layer({ filename: ":memory:" })))

// Waits, in real time, until some fiber sleeps on the TestClock (here: the transaction's timeout).
const untilSomethingSleeps = Effect.repeat(
  Effect.zipRight(Effect.sleep("5 millis").pipe(Effect.withClock(Clock.make())), TestClock.sleeps()),
  { until: Chunk.isNonEmpty }
)

describe("notes", () => {
  layer(TestDatabase)((it) => {
    it.effect("a failure inside the transaction leaves nothing behind", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* sql`CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)`
        yield* addNote("kept")
        // addNote nested in an enclosing transaction is a savepoint: the enclosing failure undoes it.
        const result = yield* addNote("dropped").pipe(
          Effect.zipRight(Effect.fail("boom" as const)),
          Transaction.atomic({ name: "batch" }),
          Effect.flip
        )
        assert.strictEqual(result, "boom")
        assert.strictEqual(Number((yield* countNotes)[0]!.n), 1)
      }))

    it.effect("the timeout follows the TestClock: nothing happens before it, TransactionTimeout at it", () =>
      Effect.gen(function*() {
        const stuck = Effect.zipRight(addNote("stuck"), Effect.never).pipe(
          Transaction.atomic({ name: "stuck", timeout: "10 seconds" }),
          Effect.flip,
          Effect.fork
        )
        const fiber = yield* stuck
        yield* untilSomethingSleeps
        yield* TestClock.adjust("9 seconds")
        assert.isTrue(Option.isNone(yield* Fiber.poll(fiber)))
        yield* TestClock.adjust("1 second")
        const error = yield* Fiber.join(fiber)
        assert.strictEqual(error._tag, "TransactionTimeout")
      }))
  })
})
