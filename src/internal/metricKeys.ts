/**
 * @internal
 * The keys of the library's metrics, by name, filled in as `TransactionMetrics` defines them: the library updates
 * metrics made from tagged keys, whose registry hook is found once, rather than `Metric.tagged` metrics, which build
 * a new key at every update. Not exported by any entry point.
 */
import type * as MetricKey from "effect/MetricKey"

/** @internal */
export const keys: Record<string, MetricKey.MetricKey<any>> = {}
