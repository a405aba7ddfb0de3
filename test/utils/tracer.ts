/** A tracer that keeps every span it makes, for tests to read. */
import type { Context, Exit, Option } from "effect"
import { Tracer } from "effect"

export interface RecordedSpan extends Tracer.Span {
  readonly events: Array<string>
  readonly parentName: string | undefined
  exit: Exit.Exit<unknown, unknown> | undefined
}

export const recordingTracer = () => {
  const spans: Array<RecordedSpan> = []
  let id = 0
  const tracer = Tracer.make({
    span(name, parent: Option.Option<Tracer.AnySpan>, context: Context.Context<never>, links, startTime, kind) {
      const attributes = new Map<string, unknown>()
      const span: RecordedSpan = {
        _tag: "Span",
        name,
        spanId: String(++id),
        traceId: "trace",
        parent,
        parentName: parent._tag === "Some" && parent.value._tag === "Span" ? parent.value.name : undefined,
        context,
        status: { _tag: "Started", startTime },
        attributes,
        links,
        sampled: true,
        kind,
        events: [],
        exit: undefined,
        end(endTime, exit) {
          ;(span as { status: Tracer.SpanStatus }).status = { _tag: "Ended", startTime, endTime, exit }
          span.exit = exit
        },
        attribute(key, value) {
          attributes.set(key, value)
        },
        event(name) {
          span.events.push(name)
        },
        addLinks() {}
      }
      spans.push(span)
      return span
    },
    context: (f) => f()
  })
  return { tracer, spans }
}
