/**
 * A `SqlClient` that records the SQL sent on every reserved connection (the connections transactions run on), in
 * the order the driver received it. It wraps the real client: every statement still goes to the real server.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import { Context, Effect, Layer, Stream } from "effect"

export class SentStatements extends Context.Tag("test/SentStatements")<SentStatements, Array<string>>() {}

const recorded = new Set(["execute", "executeRaw", "executeUnprepared", "executeValues", "executeStream"])

/** The text of a driver query: `pg` takes a string or `{ text }`, `mysql2` a string or `{ sql }`. */
const textOf = (query: unknown): string =>
  typeof query === "string"
    ? query
    : String((query as { text?: string; sql?: string }).text ?? (query as { sql?: string }).sql)

/**
 * Records the queries a driver client receives (`pg`'s `query`, `mysql2`'s `query` and `execute`): the library
 * sends a transaction's statements on the driver client itself, below the `Connection`.
 */
const spyDriver = (client: object, log: Array<string>): object =>
  new Proxy(client, {
    get(target, key, receiver) {
      const value = Reflect.get(target, key, receiver)
      if ((key === "query" || key === "execute") && typeof value === "function") {
        return (query: unknown, ...rest: Array<unknown>) => {
          log.push(textOf(query))
          return value.call(target, query, ...rest)
        }
      }
      return value
    }
  })

const spyConnection = (conn: Connection, log: Array<string>): Connection => {
  // PostgreSQL and MySQL connections wrap a driver client (`pg`, `conn`): record there, once per query.
  const driverKey = ["pg", "conn"].find((key) => typeof (conn as any)[key] === "object" && (conn as any)[key] !== null)
  if (driverKey !== undefined) {
    const driver = spyDriver((conn as any)[driverKey], log)
    return new Proxy(conn, {
      get: (target, key, receiver) => key === driverKey ? driver : Reflect.get(target, key, receiver)
    })
  }
  return new Proxy(conn, {
    get(target, key, receiver) {
      const value = Reflect.get(target, key, receiver)
      if (typeof key === "string" && recorded.has(key) && typeof value === "function") {
        if (key === "executeStream") {
          return (sql: string, ...rest: Array<unknown>) =>
            Stream.suspend(() => {
              log.push(sql)
              return value.call(target, sql, ...rest)
            })
        }
        // Recorded when the statement runs, not when its effect is built.
        return (sql: string, ...rest: Array<unknown>) =>
          Effect.suspend(() => {
            log.push(sql)
            return value.call(target, sql, ...rest)
          })
      }
      return value
    }
  })
}

/** Replaces the `SqlClient` of `layer` with a recording one, and provides the log as `SentStatements`. */
export const spy = <E, R>(
  layer: Layer.Layer<SqlClient.SqlClient, E, R>
): Layer.Layer<SqlClient.SqlClient | SentStatements, E, R> => {
  const recording = Layer.effectContext(Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const log: Array<string> = []
    const client: SqlClient.SqlClient = Object.assign(
      (...args: Array<any>) => (sql as any)(...args),
      sql,
      { reserve: Effect.map(sql.reserve, (conn) => spyConnection(conn, log)) }
    )
    return Context.make(SqlClient.SqlClient, client).pipe(Context.add(SentStatements, log))
  }))
  return Layer.provide(recording, layer)
}
