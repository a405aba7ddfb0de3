/**
 * The guide's smaller examples run as written (their own fixed table names) on each database, each test in a
 * namespace of its own: a SQLite file, a PostgreSQL schema, a MariaDB database, dropped at the end. What the guide
 * says about each must hold.
 */
import { MysqlClient } from "@effect/sql-mysql2"
import { PgClient } from "@effect/sql-pg"
import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, layer } from "@effect/vitest"
import { Effect, Either, Layer, Logger, Redacted } from "effect"
import * as Begin from "../examples/guide/begin.js"
import * as BestPractices from "../examples/guide/best-practices.js"
import * as HandlingErrors from "../examples/guide/handling-errors.js"
import * as Hooks from "../examples/guide/hooks.js"
import * as Independent from "../examples/guide/independent.js"
import * as ManualSavepoints from "../examples/guide/manual-savepoints.js"
import * as Migrating from "../examples/guide/migrating.js"
import * as Nesting from "../examples/guide/nesting.js"
import * as ReadOnly from "../examples/guide/read-only.js"
import * as Retry from "../examples/guide/retry.js"
import * as WriteSkew from "../examples/guide/write-skew.js"
import { TransactionLayer } from "../src/index.js"
import * as Databases from "./utils/databases.js"

type Name = "sqlite" | "pg" | "mysql"

/** A client whose unqualified table names are its own: a new SQLite file, PostgreSQL schema or MariaDB database. */
const namespaced = (name: Name): Layer.Layer<SqlClient.SqlClient, unknown> => {
  const namespace = Databases.uniqueTable("guide")
  switch (name) {
    case "sqlite":
      return Databases.sqlite()
    case "pg":
      return Layer.unwrapScoped(Effect.gen(function*() {
        const admin = yield* Databases.pgAdmin
        yield* Effect.acquireRelease(
          admin.unsafe(`CREATE SCHEMA ${namespace}`),
          () => Effect.ignore(admin.unsafe(`DROP SCHEMA ${namespace} CASCADE`))
        )
        const url = `${Databases.pgUrl}${Databases.pgUrl.includes("?") ? "&" : "?"}options=${
          encodeURIComponent(`-c search_path=${namespace}`)
        }`
        return PgClient.layer({ url: Redacted.make(url), maxConnections: 4 })
      }))
    case "mysql":
      return Layer.unwrapScoped(Effect.gen(function*() {
        const admin = yield* Databases.mysqlAdmin
        yield* Effect.acquireRelease(
          admin.unsafe(`CREATE DATABASE ${namespace}`),
          () => Effect.ignore(admin.unsafe(`DROP DATABASE ${namespace}`))
        )
        const url = new URL(Databases.mysqlUrl)
        url.pathname = `/${namespace}`
        return MysqlClient.layer({ url: Redacted.make(url.toString()), maxConnections: 4 })
      }))
  }
}

const exec = (...statements: ReadonlyArray<string>) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => Effect.forEach(statements, (s) => sql.unsafe(s), { discard: true }))

const count = (query: string) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) => Effect.map(sql.unsafe<{ n: number }>(query), (rows) => Number(rows[0]!.n))
  )

/** Runs an effect with a logger that records the messages. */
const withLogs = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const logs: Array<string> = []
    const logger = Logger.make(({ message }) => {
      logs.push(Array.isArray(message) ? message.join(" ") : String(message))
    })
    const result = yield* effect.pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)))
    return { result, logs }
  })

for (const name of ["sqlite", "pg", "mysql"] as const) {
  const fresh = () => TransactionLayer.pipe(Layer.provideMerge(namespaced(name)))

  describe(`${name}: the guide's examples`, () => {
    layer(fresh(), { excludeTestServices: true })((it) => {
      it.effect("nesting: three levels, concurrent siblings, a failed block undone alone", () =>
        Effect.gen(function*() {
          yield* exec(
            ...["orders", "order_notes", "gift_wraps", "loyalty_points"].map((t) =>
              `CREATE TABLE ${t} (id INTEGER PRIMARY KEY)`
            )
          )
          const result = yield* Nesting.checkout(1)
          assert.deepStrictEqual(result, { extra: { wrapped: false }, loyaltyAwarded: true, depth: 0 })
          assert.strictEqual(yield* count("SELECT COUNT(*) AS n FROM orders"), 1)
          assert.strictEqual(yield* count("SELECT COUNT(*) AS n FROM order_notes"), 1)
          assert.strictEqual(yield* count("SELECT COUNT(*) AS n FROM gift_wraps"), 0)
          assert.strictEqual(yield* count("SELECT COUNT(*) AS n FROM loyalty_points"), 1)
        }))
    })

    layer(fresh(), { excludeTestServices: true })((it) => {
      it.effect("manual savepoints: a bad row and the hook registered after its savepoint are undone", () =>
        Effect.gen(function*() {
          yield* exec(
            "CREATE TABLE stock_moves (sku VARCHAR(20) NOT NULL, qty INTEGER NOT NULL)",
            "CREATE TABLE stock (sku VARCHAR(20) PRIMARY KEY, qty INTEGER NOT NULL)",
            "INSERT INTO stock (sku, qty) VALUES ('a', 5), ('b', 1)"
          )
          const { result, logs } = yield* withLogs(ManualSavepoints.importRows([
            { sku: "a", qty: -2 },
            { sku: "b", qty: -3 },
            { sku: "a", qty: 1 }
          ]))
          assert.deepStrictEqual(result, { imported: 2, skipped: 1 })
          assert.strictEqual(yield* count("SELECT qty AS n FROM stock WHERE sku = 'a'"), 4)
          assert.strictEqual(yield* count("SELECT qty AS n FROM stock WHERE sku = 'b'"), 1)
          assert.strictEqual(yield* count("SELECT COUNT(*) AS n FROM stock_moves"), 2)
          assert.deepStrictEqual(logs.filter((l) => l.startsWith("imported")), ["imported a", "imported a"])
        }))
    })

    layer(fresh(), { excludeTestServices: true })((it) => {
      it.effect("write skew at serializable: one doctor always stays on call", () =>
        Effect.gen(function*() {
          yield* exec(
            "CREATE TABLE doctors (name VARCHAR(20) NOT NULL, shift INTEGER NOT NULL, on_call BOOLEAN NOT NULL, " +
              "PRIMARY KEY (name, shift))"
          )
          for (let shift = 1; shift <= 5; shift++) {
            yield* exec(
              `INSERT INTO doctors (name, shift, on_call) VALUES ('alice', ${shift}, TRUE), ('bob', ${shift}, TRUE)`
            )
            const outcomes = yield* Effect.all([
              Effect.either(WriteSkew.goOffCall("alice", shift)),
              Effect.either(WriteSkew.goOffCall("bob", shift))
            ], { concurrency: 2 })
            assert.strictEqual(outcomes.filter(Either.isRight).length, 1, `shift ${shift}`)
            const refused = outcomes.find(Either.isLeft)
            assert.strictEqual(refused?.left._tag, "LastDoctorOnCall")
            assert.strictEqual(
              yield* count(`SELECT COUNT(*) AS n FROM doctors WHERE shift = ${shift} AND on_call = TRUE`),
              1
            )
          }
        }))
    })

    layer(fresh(), { excludeTestServices: true })((it) => {
      it.effect("read-only: a consistent report; deferrable on PostgreSQL only", () =>
        Effect.gen(function*() {
          yield* exec(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, total_cents INTEGER NOT NULL)",
            "CREATE TABLE wallets (customer VARCHAR(20) PRIMARY KEY, balance_cents INTEGER NOT NULL)",
            "INSERT INTO orders (id, total_cents) VALUES (1, 500), (2, 700)",
            "INSERT INTO wallets (customer, balance_cents) VALUES ('ada', 100)"
          )
          assert.deepStrictEqual(yield* ReadOnly.dailyReport, { orders: 2, revenueCents: 1200 })
          const audit = yield* Effect.either(ReadOnly.auditReport)
          if (name === "pg") {
            assert.isTrue(Either.isRight(audit))
          } else {
            assert.strictEqual(Either.isLeft(audit) ? audit.left._tag : "none", "InvalidTransactionOptions")
          }
        }))
    })

    layer(fresh(), { excludeTestServices: true })((it) => {
      it.effect("independent: the audit row survives the enclosing rollback (SQLite: ConnectionUnavailable)", () =>
        Effect.gen(function*() {
          yield* exec(
            "CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)",
            "CREATE TABLE audit_log (event VARCHAR(100) NOT NULL)",
            "INSERT INTO accounts (id, balance) VALUES (1, 100)"
          )
          const result = yield* Effect.either(Independent.withdraw(1, 500))
          const failure = Either.isLeft(result) ? result.left : undefined
          const tag = typeof failure === "string" ? failure : failure?._tag
          assert.strictEqual(yield* count("SELECT balance AS n FROM accounts WHERE id = 1"), 100)
          if (name === "sqlite") {
            assert.strictEqual(tag, "ConnectionUnavailable")
            assert.strictEqual(yield* count("SELECT COUNT(*) AS n FROM audit_log"), 0)
          } else {
            assert.strictEqual(tag, "insufficient funds")
            assert.strictEqual(yield* count("SELECT COUNT(*) AS n FROM audit_log"), 1)
          }
        }))
    })

    layer(fresh(), { excludeTestServices: true })((it) => {
      it.effect("hooks, retry, migrating, best practices: they run, and their hooks once", () =>
        Effect.gen(function*() {
          yield* exec(
            "CREATE TABLE orders (id VARCHAR(20) PRIMARY KEY, customer VARCHAR(20), status VARCHAR(20))",
            "CREATE TABLE stats (orders INTEGER NOT NULL)",
            "INSERT INTO stats (orders) VALUES (0)",
            "CREATE TABLE loyalty (customer VARCHAR(20) NOT NULL, points INTEGER NOT NULL)",
            "CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)",
            "INSERT INTO accounts (id, balance) VALUES (1, 1000), (2, 0)",
            "CREATE TABLE payments (order_id VARCHAR(20) PRIMARY KEY, charge_id VARCHAR(40), cents INTEGER)",
            "CREATE TABLE outbox (order_id VARCHAR(20) NOT NULL, event VARCHAR(20) NOT NULL)",
            "CREATE TABLE imports (line VARCHAR(20) NOT NULL)",
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, name VARCHAR(20) NOT NULL)",
            "INSERT INTO customers (id, name) VALUES (1, 'ada')"
          )
          const { logs } = yield* withLogs(Hooks.placeOrder(1, "ada"))
          assert.strictEqual(yield* count("SELECT orders AS n FROM stats"), 1)
          assert.strictEqual(yield* count("SELECT COUNT(*) AS n FROM loyalty"), 1)
          assert.deepStrictEqual(logs, ["mail: order 1 confirmed", "loyalty points awarded"])

          yield* Retry.transfer(1, 2, 100)
          yield* Retry.transferPatiently(1, 2, 100)
          yield* Retry.transferBounded(1, 2, 100)
          yield* Migrating.before
          yield* Migrating.after
          assert.strictEqual(yield* count("SELECT balance AS n FROM accounts WHERE id = 2"), 500)

          yield* exec("INSERT INTO orders (id, customer, status) VALUES ('o1', 'ada', 'new')")
          const paid = yield* withLogs(BestPractices.checkout("o1", "tok", 1200))
          yield* BestPractices.checkout("o1", "tok", 1200) // the idempotency key: a second run changes nothing
          assert.strictEqual(yield* count("SELECT COUNT(*) AS n FROM payments"), 1)
          assert.strictEqual(yield* count("SELECT COUNT(*) AS n FROM outbox"), 1)
          assert.deepStrictEqual(paid.logs, ["order-paid: o1"])

          const batch = yield* Begin.importBatch(["a", "b"])
          assert.strictEqual(batch.lines, 2)
          assert.strictEqual(yield* count("SELECT COUNT(*) AS n FROM imports"), 2)

          assert.deepStrictEqual(yield* HandlingErrors.handler(1, "ada lovelace"), { status: 204 })
          assert.deepStrictEqual(yield* HandlingErrors.handler(2, "nobody"), { status: 404 })
        }))
    })
  })
}
