/**
 * Small pieces of a transaction, repeated, to count their instructions under valgrind (plain JavaScript on the
 * compiled library, `npm run build` first: under tsx its loader would be counted too). Run it with 0 and with N
 * calls after the same warm-up; the difference of the two counts over N is the cost of one call:
 *
 *   for n in 0 100000; do valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
 *     node --single-threaded --predictable bench/micro.mjs deadlines $n 2>&1 | grep 'I *refs'; done
 *
 * Pieces: `timers` (a `setTimeout` and its `clearTimeout`, no other timer of that duration pending), `deadlines`
 * (a deadline added and cancelled), `options` (options built per call, resolved).
 */
import { deadlines } from "../dist/internal/deadlines.js"
import { sqlite } from "../dist/internal/dialect/sqlite.js"
import { resolveCached } from "../dist/internal/options.js"

const [piece, count] = process.argv.slice(2)
const nothing = () => {}
const defaults = {}
let kept
const pieces = {
  timers: () => clearTimeout(setTimeout(nothing, 10_000)),
  deadlines: () => deadlines.cancel(deadlines.add(10_000, nothing)),
  options: () => {
    kept = resolveCached(
      defaults,
      { name: "bench", isolation: "read committed", readOnly: false, timeout: "10 seconds" },
      sqlite
    )
  }
}
const run = pieces[piece]
if (run === undefined || !Number.isSafeInteger(Number(count))) {
  console.error(`usage: node bench/micro.mjs ${Object.keys(pieces).join("|")} COUNT`)
  process.exit(2)
}
for (let i = 0; i < 20_000; i++) run()
for (let i = 0; i < Number(count); i++) run()
if (kept === null) console.log(kept)
