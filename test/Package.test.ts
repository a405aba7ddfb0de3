/**
 * The package as it ships: the built core entry point loads only `effect` and `@effect/sql` (and Node's own modules),
 * the optional peers stay behind their entry points, internals stay out of the declarations, and package.json says
 * so. (`.ci/package-check` installs the packed tarball into an empty project.)
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"

const root = Path.resolve(import.meta.dirname, "..")
const outDir = Path.join(root, ".tmp", `package-${process.pid}`)

/** The bare specifiers a built module imports statically, through every relative import it makes. */
const staticImports = (entry: string): Set<string> => {
  const seen = new Set<string>()
  const bare = new Set<string>()
  const visit = (file: string) => {
    if (seen.has(file)) return
    seen.add(file)
    const text = Fs.readFileSync(file, "utf8")
    for (const match of text.matchAll(/^(?:import|export)\s[^;]*?from\s+"([^"]+)"|^import\s+"([^"]+)"/gm)) {
      const specifier = (match[1] ?? match[2])!
      if (specifier.startsWith(".")) visit(Path.resolve(Path.dirname(file), specifier))
      else bare.add(specifier)
    }
  }
  visit(Path.join(outDir, entry))
  return bare
}

const packageName = (specifier: string) =>
  specifier.startsWith("@") ? specifier.split("/").slice(0, 2).join("/") : specifier.split("/")[0]!

describe("the package", () => {
  it.effect(
    "the built core loads only effect, @effect/sql and Node's modules; the optional peers stay apart",
    () =>
      Effect.sync(() => {
        execFileSync("npx", ["tsc", "-p", "tsconfig.build.json", "--outDir", outDir, "--declarationMap", "false"], {
          cwd: root,
          stdio: "pipe"
        })
        try {
          const core = [...staticImports("index.js")].map(packageName)
          const foreign = core.filter((name) =>
            name !== "effect" && name !== "@effect/sql" && !name.startsWith("node:")
          )
          assert.deepStrictEqual(foreign, [], `the core entry point imports ${foreign.join(", ")}`)
          // The same walk sees the optional peers where they are: it can fail.
          const prometheus = new Set([...staticImports("Prometheus.js")].map(packageName))
          for (const peer of ["@effect/opentelemetry", "@opentelemetry/exporter-prometheus", "@effect/platform"]) {
            assert.isTrue(prometheus.has(peer), `Prometheus.js imports ${peer}`)
          }
          const dashboard = new Set([...staticImports("TransactionDashboard.js")].map(packageName))
          assert.isTrue(dashboard.has("@effect/platform-node"))
          // Internals stay out of the public declarations (stripInternal).
          const manager = Fs.readFileSync(Path.join(outDir, "TransactionManager.d.ts"), "utf8")
          assert.notMatch(manager, /readonly registry:|readonly nextId:/)
          assert.notMatch(Fs.readFileSync(Path.join(outDir, "TransactionMetrics.d.ts"), "utf8"), /\bkeys\b/)
          assert.notMatch(Fs.readFileSync(Path.join(outDir, "index.js"), "utf8"), /export default/)
        } finally {
          Fs.rmSync(outDir, { recursive: true, force: true })
        }
      }),
    120_000
  )

  it.effect("package.json: publishable, with every peer the optional entry points need marked optional", () =>
    Effect.sync(() => {
      const pkg = JSON.parse(Fs.readFileSync(Path.join(root, "package.json"), "utf8"))
      assert.isUndefined(pkg.private)
      for (const field of ["repository", "keywords", "engines", "license", "exports", "files"]) {
        assert.isDefined(pkg[field], field)
      }
      assert.deepStrictEqual(Object.keys(pkg.dependencies ?? {}).sort(), ["csv-stringify", "uplot"])
      const required = Object.keys(pkg.peerDependencies).filter((name) => !pkg.peerDependenciesMeta?.[name]?.optional)
      assert.deepStrictEqual(required.sort(), ["@effect/sql", "effect"])
      for (const peer of ["@effect/opentelemetry", "@opentelemetry/exporter-prometheus", "@effect/platform-node"]) {
        assert.isTrue(pkg.peerDependenciesMeta[peer]?.optional, `${peer} is an optional peer`)
      }
      assert.strictEqual(pkg.exports["./internal/*"], null)
      assert.isDefined(pkg.exports["./Prometheus"])
      assert.isTrue(Fs.existsSync(Path.join(root, "CHANGELOG.md")))
    }))
})
