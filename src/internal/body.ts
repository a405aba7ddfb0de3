/**
 * Running the body of a block: its context (the transaction, its connection, its span), and its timeout.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as FiberRef from "effect/FiberRef"
import * as HashSet from "effect/HashSet"
import * as Runtime from "effect/Runtime"
import type * as RuntimeFlags from "effect/RuntimeFlags"
import * as Tracer from "effect/Tracer"
import type { Transaction } from "../Transaction.js"
import * as TransactionError from "../TransactionError.js"
import { TransactionTag } from "./context.js"
import { type Deadline, deadlines } from "./deadlines.js"
import { type Level } from "./state.js"

// ---------------------------------------------------------------------------------------------------------------
// running a body

/**
 * @internal
 * A context inside a block: its `Transaction`, its connection as `@effect/sql`'s `TransactionConnection` (so that
 * plain statements run on it), and the transaction's span as the parent of its statements.
 */
export const inTransaction = <R>(
  level: Level,
  context: Context.Context<R>,
  connection: Connection = level.connection
): Context.Context<R> => {
  // One copy of the context's map rather than one per `Context.add`: this runs for every block.
  const services = new Map(context.unsafeMap)
  services.set(TransactionTag.key, level.handle)
  // The block's guard, not the connection itself: it refuses statements once the block has ended.
  services.set(SqlClient.TransactionConnection.key, [connection, level.handle.depth])
  if (level.root.span !== undefined) services.set(Tracer.ParentSpan.key, level.root.span)
  return Context.unsafeMake(services)
}

/** @internal */
export const provideLevel = <A, E, R>(
  level: Level,
  effect: Effect.Effect<A, E, R>,
  connection: Connection = level.connection
) =>
  Effect.mapInputContext(
    effect,
    (context: Context.Context<Exclude<R, Transaction>>) =>
      inTransaction(level, context, connection) as Context.Context<R>
  )

/**
 * Stops a running body and waits for its end: from now on its guard refuses statements (a body that catches the
 * error of its cancelled statement cannot send another), and the statement in flight, if any, is cancelled on the
 * server by its own interruption (see `Dialect.statements`), which waits for it to settle. Nothing here depends
 * on the caller being interruptible: this runs in finalizers.
 */
const stop = <A, E>(level: Level, body: Fiber.RuntimeFiber<A, E>): Effect.Effect<void> =>
  Effect.suspend(() => {
    level.connection.stopped = true
    return Fiber.interrupt(body)
  })

/**
 * @internal
 * Runs the body of a block in the caller's fiber, with or without a `timeout` (see `inPlace`; when it expires the
 * block fails with `TransactionTimeout`). With the manager's `superviseInterruption`, or under a timeout when the
 * caller cannot be watched (see `watchable`), the body runs in a fiber of its own, so that an interruption or the
 * deadline stops the body (see `stop`) rather than the caller: it is then awaited before the block ends. An
 * interrupted statement is cancelled on the server either way (see `Dialect.statements`).
 */
export const runBody = <A, E, R>(
  level: Level,
  effect: Effect.Effect<A, E, R>,
  restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
): Effect.Effect<Exit.Exit<A, E | TransactionError.TransactionTimeout>, never, Exclude<R, Transaction>> => {
  const { timeout } = level.handle.options
  if (level.root.manager.superviseInterruption && level.root.dialect.cancellable) {
    return supervise(level, restore(effect as Effect.Effect<A, E, Exclude<R, Transaction>>), timeout, restore)
  }
  return inPlace(level, effect, timeout, restore)
}

/**
 * Runs a body in the caller's fiber, with the block's context set on the fiber and put back after. What
 * `Effect.provide`/`Effect.locally` do, in 3 steps instead of their 10 (every block pays it; measured with
 * `npm run bench:profile -- --count`): this runs under the block's interruption mask, which `restore` lifts for
 * the body alone, so the context is put back however the body ends.
 *
 * Under a timeout the body still runs in place, watched (see `Watch`), in the same 3 steps under Effect's default
 * clock: the deadline is an entry on the library's one timer (see `deadlines.ts`). Under another clock (a
 * `TestClock`) a timer fiber sleeps on that clock. A caller that cannot be watched (see `watchable`) gets a fiber
 * for the body instead (see `supervise`).
 */
const inPlace = <A, E, R>(
  level: Level,
  effect: Effect.Effect<A, E, R>,
  timeout: Duration.Duration | undefined,
  restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
): Effect.Effect<Exit.Exit<A, E | TransactionError.TransactionTimeout>, never, Exclude<R, Transaction>> =>
  Effect.withFiberRuntime((fiber) => {
    if (timeout === undefined) return watched(level, effect, restore, fiber, undefined)
    if (!watchable(fiber)) {
      return supervise(level, restore(effect as Effect.Effect<A, E, Exclude<R, Transaction>>), timeout, restore)
    }
    const clock = Context.get(fiber.currentDefaultServices, Clock.Clock)
    const watch = new Watch(level, fiber, clock, clock.unsafeCurrentTimeMillis())
    if (clock.constructor === DefaultClock) {
      watch.deadline = deadlines.add(Duration.toMillis(timeout), watch.expire)
      return watched(level, effect, restore, fiber, watch)
    }
    return Effect.flatMap(
      Effect.forkDaemon(Effect.zipRight(Effect.interruptible(Effect.sleep(timeout)), Effect.sync(watch.expire))),
      (timer) => Effect.zipLeft(watched(level, effect, restore, fiber, watch), Fiber.interrupt(timer))
    )
  })

/** The body run in place (see `inPlace`), and its watch ended right after it, in the same step. */
const watched = <A, E, R>(
  level: Level,
  effect: Effect.Effect<A, E, R>,
  restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>,
  fiber: Fiber.RuntimeFiber<unknown, unknown>,
  watch: Watch | undefined
): Effect.Effect<Exit.Exit<A, E | TransactionError.TransactionTimeout>, never, Exclude<R, Transaction>> => {
  const outer = fiber.currentContext
  return Effect.zipRight(
    FiberRef.set(FiberRef.currentContext, inTransaction(level, outer)),
    Effect.flatMap(
      Effect.exit(restore(effect as Effect.Effect<A, E>)),
      (exit): Effect.Effect<Exit.Exit<A, E | TransactionError.TransactionTimeout>> => {
        const back = FiberRef.set(FiberRef.currentContext, outer)
        const interruptor = watch?.end()
        return interruptor === undefined ? Effect.as(back, exit) : Effect.zipRight(back, watch!.timedOut(interruptor))
      }
    )
  )
}

/**
 * Whether a body under a timeout can run in this fiber, watched: the deadline interrupts the fiber, so it must have
 * no children (forked with `Effect.fork` and still running), to which an interrupted fiber passes its interruption
 * on, and no pending step of request batching (`Effect.forEach(…, { batching: true })`), to which a request of the
 * body would return, the rest of the body going on in another fiber. Read from Effect's `FiberRuntime` (`_children`:
 * `null` or a `Set`; `_steps`: an array), which is not public API (`fiber.children`, public, is a message to the
 * fiber, and nothing public tells the steps); anything else than those reads as "cannot", and the body gets a fiber
 * of its own, which is always right.
 */
const watchable = (fiber: Fiber.RuntimeFiber<unknown, unknown>): boolean => {
  const { _children: children, _steps: steps } = fiber as unknown as {
    readonly _children?: unknown
    readonly _steps?: unknown
  }
  return (children === null || (children instanceof Set && children.size === 0)) &&
    Array.isArray(steps) && steps.length === 0
}

/**
 * A body run in place under a timeout. When its deadline falls first, it stops the body as `stop` would, by
 * interrupting the caller's fiber as an interruptor of its own; the block then takes that interruption back off
 * the fiber (see `timedOut`) and fails with `TransactionTimeout` instead.
 */
class Watch {
  /** The body has ended: a deadline that falls from now on does nothing. */
  done = false
  /** The interruptor the deadline interrupted the caller's fiber as, once it has. */
  interruptor: FiberId.FiberId | undefined = undefined
  deadline: Deadline | undefined = undefined
  constructor(
    readonly level: Level,
    readonly fiber: Fiber.RuntimeFiber<unknown, unknown>,
    readonly clock: Clock.Clock,
    readonly start: number
  ) {}

  /**
   * The deadline: from now on the body's guard refuses statements, and the caller's fiber is interrupted (which
   * cancels the statement in flight, if any, on the server). Runs outside the fiber (a timer, or a timer fiber),
   * which is then suspended: the interruption is a message it handles before it runs any further step.
   */
  readonly expire = (): void => {
    if (this.done) return
    this.done = true
    this.interruptor = FiberId.unsafeMake()
    this.level.connection.stopped = true
    this.fiber.unsafeInterruptAsFork(this.interruptor)
  }

  /**
   * Ends the watch, right after the body, in the caller's fiber: a deadline that falls from now on does nothing.
   * Returns the interruptor when the deadline fell first (its interruption was handled before this step).
   */
  end(): FiberId.FiberId | undefined {
    this.done = true
    deadlines.cancel(this.deadline)
    return this.interruptor
  }

  /**
   * The block's result when the deadline fell first: `TransactionTimeout`. Its interruption is taken off the
   * caller's fiber; any other stays (the fiber was interrupted before the block, or by another fiber since: that
   * interruption takes effect once the block has ended, as one that arrives during a COMMIT does). The fibers the
   * body forked were interrupted with it (the fiber had no children when the block started): they are awaited, so
   * that none still runs, or cancels a statement, once the block rolls back.
   */
  timedOut(interruptor: FiberId.FiberId): Effect.Effect<Exit.Exit<never, TransactionError.TransactionTimeout>> {
    return Effect.withFiberRuntime((fiber) =>
      Effect.zipRight(
        FiberRef.set(
          FiberRef.interruptedCause,
          withoutInterruptor(fiber.getFiberRef(FiberRef.interruptedCause), interruptor)
        ),
        Effect.flatMap(
          fiber.children,
          (children) =>
            Effect.as(
              Fiber.interruptAll(children),
              timedOut(this.level, this.clock.unsafeCurrentTimeMillis() - this.start)
            )
        )
      )
    )
  }
}

/** An interruption cause without one of its interruptors. */
const withoutInterruptor = (cause: Cause.Cause<never>, interruptor: FiberId.FiberId): Cause.Cause<never> =>
  HashSet.reduce(
    HashSet.remove(Cause.interruptors(cause), interruptor),
    Cause.empty as Cause.Cause<never>,
    (rest, other) => Cause.sequential(rest, Cause.interrupt(other))
  )

/** The state of a body under a timeout: whether its deadline stopped it. */
interface TimeoutState {
  timedOut: boolean
}

/** Stops the body (unless it is done) and waits for its end: the deadline has passed. */
const expire = <A, E>(level: Level, fiber: Fiber.RuntimeFiber<A, E>, deadline: TimeoutState) =>
  Effect.uninterruptible(Effect.suspend(() => {
    if (fiber.unsafePoll() === null) {
      deadline.timedOut = true
      return Effect.zipRight(stop(level, fiber), Fiber.await(fiber))
    }
    return Fiber.await(fiber)
  }))

/** Effect's default clock sleeps with `setTimeout`; under another (a `TestClock`), sleeps go through the clock. */
const DefaultClock = Clock.make().constructor

/**
 * Waits for the body under Effect's default clock: a deadline (see `deadlines.ts`) and an observer of the body's
 * fiber, no timer fiber. (The observer is added from another fiber than the body's, which is safe in JavaScript's
 * one thread: the body's fiber is not running now, and its exit, checked first, is set before its observers are
 * called.)
 */
const awaitWithTimeout = <A, E>(
  level: Level,
  fiber: Fiber.RuntimeFiber<A, E>,
  timeout: Duration.Duration,
  deadline: TimeoutState
): Effect.Effect<Exit.Exit<A, E>> =>
  Effect.async<Exit.Exit<A, E>>((resume) => {
    const done = fiber.unsafePoll()
    if (done !== null) return resume(Effect.succeed(done))
    const observer = (exit: Exit.Exit<A, E>) => {
      deadlines.cancel(timer)
      resume(Effect.succeed(exit))
    }
    const timer = deadlines.add(Duration.toMillis(timeout), () => {
      fiber.removeObserver(observer)
      resume(expire(level, fiber, deadline))
    })
    fiber.addObserver(observer)
    return Effect.sync(() => {
      deadlines.cancel(timer)
      fiber.removeObserver(observer)
    })
  })

/** Waits for the body under another clock: a timer fiber sleeps on the clock, and is stopped with the wait. */
const awaitWithTimerFiber = <A, E>(
  level: Level,
  fiber: Fiber.RuntimeFiber<A, E>,
  timeout: Duration.Duration,
  deadline: TimeoutState
): Effect.Effect<Exit.Exit<A, E>> =>
  Effect.flatMap(
    Effect.fork(Effect.zipRight(Effect.interruptible(Effect.sleep(timeout)), expire(level, fiber, deadline))),
    (timer) => Effect.ensuring(Fiber.await(fiber), Fiber.interrupt(timer))
  )

/**
 * Forks the body and starts it at once, on the current stack until its first asynchronous step, with the block's
 * context as its own from the start (no step to provide it). `Effect.fork` would start it on a later tick, leaving a
 * window in which other fibers run while the block holds its connection: on SQLite's one connection, guarded by a
 * semaphore that is not fair, waiting transactions then wake up, lose the race and wait again (measured with 16
 * fibers: 5 waits per transaction, 2 to 3 times slower). The fiber is not a child of the caller's fiber: the block
 * always waits for it or stops it. Made from the caller's fiber as it is (not `Effect.runtime`, which costs a step
 * and another copy of its fiber refs).
 */
const forkNow = <A, E, R>(
  level: Level,
  body: Effect.Effect<A, E, R>,
  parent: Fiber.RuntimeFiber<unknown, unknown>,
  runtimeFlags: RuntimeFlags.RuntimeFlags
): Fiber.RuntimeFiber<A, E> =>
  Runtime.runFork(
    Runtime.make({
      context: inTransaction(level, parent.currentContext),
      fiberRefs: parent.getFiberRefs(),
      runtimeFlags
    }),
    body as Effect.Effect<A, E>
  )

/**
 * Runs a body in a fiber of its own and waits for it, until the timeout when there is one. Written without a
 * generator: this runs for every transaction of a manager with `superviseInterruption`.
 */
const supervise = <A, E, R>(
  level: Level,
  body: Effect.Effect<A, E, R>,
  timeout: Duration.Duration | undefined,
  restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
): Effect.Effect<Exit.Exit<A, E | TransactionError.TransactionTimeout>, never, R> =>
  Effect.withFiberRuntime((parent, status) => {
    const clock = Context.get(parent.currentDefaultServices, Clock.Clock)
    const start = clock.unsafeCurrentTimeMillis()
    const deadline: TimeoutState = { timedOut: false }
    const fiber = forkNow(level, body, parent, status.runtimeFlags)
    const wait = timeout === undefined
      ? Fiber.await(fiber)
      : clock.constructor === DefaultClock
      ? awaitWithTimeout(level, fiber, timeout, deadline)
      : awaitWithTimerFiber(level, fiber, timeout, deadline)
    return restore(wait).pipe(
      Effect.onInterrupt(() => stop(level, fiber)),
      Effect.exit,
      Effect.map((awaited): Exit.Exit<A, E | TransactionError.TransactionTimeout> =>
        // Interrupted while waiting: the body is stopped; the block ends interrupted, and rolls back.
        Exit.isFailure(awaited)
          ? Exit.failCause(awaited.cause)
          : deadline.timedOut
          ? timedOut(level, clock.unsafeCurrentTimeMillis() - start)
          : awaited.value
      )
    )
  })

const timedOut = (level: Level, elapsed: number): Exit.Exit<never, TransactionError.TransactionTimeout> => {
  const { name, timeout } = level.handle.options
  level.root.recorder.timeout()
  return Exit.fail(
    new TransactionError.TransactionTimeout({ name, timeout: timeout!, elapsed: Duration.millis(elapsed) })
  )
}
