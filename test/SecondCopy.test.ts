/**
 * Two copies of `@effect/sql` in one process (a linked install, a monorepo): errors are recognised by their type
 * id, not by `instanceof`, so the application's copy's `SqlError`s are classified and retried all the same.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Url from "node:url"
import { Dialect, Transaction, TransactionError, TransactionLayer, withRetry } from "../src/index.js"
import * as Databases from "./utils/databases.js"

/** A second copy of @effect/sql, in a folder of its own (its dependencies resolve from the project's). */
const secondCopy = async () => {
  const root = Path.resolve(".tmp", `second-copy-${process.pid}`, "node_modules", "@effect", "sql")
  if (!Fs.existsSync(root)) {
    Fs.mkdirSync(Path.dirname(root), { recursive: true })
    Fs.cpSync(Path.resolve("node_modules", "@effect", "sql"), root, { recursive: true })
  }
  const module = await import(Url.pathToFileURL(Path.join(root, "dist", "esm", "SqlError.js")).href)
  return module.SqlError as new(args: { cause: unknown; message?: string }) => Error
}

describe("a second copy of @effect/sql", () => {
  it.live("its SqlError is not ours by instanceof, and is classified by its type id", () =>
    Effect.gen(function*() {
      const OtherSqlError = yield* Effect.promise(secondCopy)
      const { SqlError } = yield* Effect.promise(() => import("@effect/sql/SqlError"))
      const error = new OtherSqlError({ cause: { code: "40001" } })
      assert.notInstanceOf(error, SqlError)
      assert.isTrue(TransactionError.isSqlError(error))
      assert.strictEqual(TransactionError.classify(error as any, Dialect.pg)._tag, "SerializationFailure")
    }))

  it.live("a body failing with the other copy's SqlError is classified by atomic and retried by withRetry", () =>
    Effect.gen(function*() {
      const OtherSqlError = yield* Effect.promise(secondCopy)
      let attempts = 0
      const result = yield* Effect.suspend(() =>
        ++attempts < 3 ? Effect.fail(new OtherSqlError({ cause: { code: "SQLITE_BUSY" } })) : Effect.succeed("done")
      ).pipe(
        Transaction.atomic(),
        withRetry(),
        Effect.provide(TransactionLayer.pipe(Layer.provideMerge(Databases.sqlite())))
      )
      assert.strictEqual(result, "done")
      assert.strictEqual(attempts, 3)
    }))
})
