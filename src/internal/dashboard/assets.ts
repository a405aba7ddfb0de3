/**
 * The page's static files: its script and style (in the package's `assets/` folder) and uPlot's (from
 * `node_modules`), read once on first use.
 */
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import { createRequire } from "node:module"
import * as Url from "node:url"

/** @internal */
export type AssetName = "dashboard.js" | "dashboard.css" | "uplot.js" | "uplot.css"

/** @internal */
export interface Asset {
  readonly body: Uint8Array
  readonly contentType: string
}

const locate = (name: AssetName): string =>
  name === "uplot.js"
    ? createRequire(import.meta.url).resolve("uplot/dist/uPlot.iife.min.js")
    : name === "uplot.css"
    ? createRequire(import.meta.url).resolve("uplot/dist/uPlot.min.css")
    // From src/internal/dashboard/ or dist/internal/dashboard/: the package's assets/ folder.
    : Url.fileURLToPath(new URL(`../../../assets/${name}`, import.meta.url))

const cache = new Map<AssetName, Asset>()

/** @internal The asset, read on first use (a missing file is a defect: the package is incomplete). */
export const load = (name: AssetName): Effect.Effect<Asset> =>
  Effect.sync(() => {
    let asset = cache.get(name)
    if (asset === undefined) {
      asset = {
        body: Fs.readFileSync(locate(name)),
        contentType: name.endsWith(".js") ? "text/javascript; charset=utf-8" : "text/css; charset=utf-8"
      }
      cache.set(name, asset)
    }
    return asset
  })
