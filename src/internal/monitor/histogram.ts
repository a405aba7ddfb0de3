/**
 * Percentiles of a duration histogram, interpolated within the bucket they fall in and never above the largest
 * duration observed.
 */

/**
 * @internal
 * The `p` quantile (0 < p ≤ 1) of `count` observations whose cumulative counts per upper bound are `cumulative`
 * (aligned with `bounds`, which ends with `Infinity`): linear interpolation between the bucket's lower and upper
 * bounds (as Prometheus' `histogram_quantile`), the upper bound capped at `max`, the largest observation.
 */
export const percentile = (
  bounds: ReadonlyArray<number>,
  cumulative: ArrayLike<number>,
  count: number,
  max: number,
  p: number
): number => {
  if (count <= 0) return 0
  const rank = p * count
  let lowerBound = 0
  let below = 0
  for (let i = 0; i < bounds.length; i++) {
    const upTo = cumulative[i]!
    if (upTo >= rank && upTo > below) {
      const upper = Math.min(bounds[i]!, max)
      const lower = Math.min(lowerBound, upper)
      return lower + (upper - lower) * (rank - below) / (upTo - below)
    }
    lowerBound = bounds[i]!
    below = upTo
  }
  return max
}

/**
 * @internal
 * The largest observation among those counted by `cumulative` that are not in `before`: exact when the all-time
 * maximum grew in between (it is then the new maximum), otherwise the upper bound of the highest bucket that
 * gained observations, capped at the all-time maximum.
 */
export const intervalMax = (
  bounds: ReadonlyArray<number>,
  before: ArrayLike<number> | undefined,
  cumulative: ArrayLike<number>,
  maxBefore: number,
  maxNow: number
): number => {
  if (maxNow > maxBefore) return maxNow
  for (let i = bounds.length - 1; i >= 0; i--) {
    const gained = cumulative[i]! - (i === 0 ? 0 : cumulative[i - 1]!) -
      (before === undefined ? 0 : before[i]! - (i === 0 ? 0 : before[i - 1]!))
    if (gained > 0) return Math.min(bounds[i]!, maxNow)
  }
  return 0
}
