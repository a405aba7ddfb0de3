import { SqlClient } from "@effect/sql"
import { Data, Effect } from "effect"
import { Transaction, withRetry } from "../../src/index.js"

// The rule: at least one doctor of each shift stays on call. Nothing in the schema enforces it.
class LastDoctorOnCall extends Data.TaggedError("LastDoctorOnCall")<{ readonly shift: number }> {}

export const goOffCall = (doctor: string, shift: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ n: number }>`
      SELECT COUNT(*) AS n FROM doctors WHERE shift = ${shift} AND on_call = TRUE`
    if (Number(rows[0]?.n ?? 0) < 2) return yield* new LastDoctorOnCall({ shift })
    yield* sql`UPDATE doctors SET on_call = FALSE WHERE name = ${doctor} AND shift = ${shift}`
  }).pipe(
    // Under "repeatable read", Alice and Bob going off call at the same time both see two doctors, update two
    // different rows, and both commit: nobody is on call. Under "serializable" one of them fails (PostgreSQL:
    // SerializationFailure; MySQL/MariaDB: the reads take shared locks and one gets DeadlockDetected); withRetry
    // runs it again, it now sees one doctor, and it fails with LastDoctorOnCall.
    Transaction.atomic({ name: "go-off-call", isolation: "serializable" }),
    withRetry()
  )
