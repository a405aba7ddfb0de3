/**
 * Every TypeScript block of docs/guide.md and README.md is a file of examples/guide/, which `npm run check` type-checks:
 * the block must follow a marker `<!-- example: examples/guide/<name>.ts -->` and be that file as a user writes it
 * (the imports of the library's sources, `../../src/index.js` and `../../src/<Module>.js`, read `effect-sql-tx`
 * and `effect-sql-tx/<Module>`). Blocks in other languages (sh, sql, text) are exempt.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Path from "node:path"
// The guide's testing example is a test file: run it here, so that what it shows keeps working.
import "../examples/guide/testing.test.js"

const root = Path.resolve(import.meta.dirname, "..")
const documents = ["docs/guide.md", "README.md"]
const examplesDir = "examples/guide"
const typescript = new Set(["ts", "typescript", "tsx", "js", "javascript", "mts"])
const marker = /^<!-- example: (examples\/guide\/[A-Za-z0-9_.-]+\.ts) -->$/

/** An example file as a user writes it: the library imported by its package name. */
export const asUserCode = (source: string): string =>
  source
    .replaceAll(`from "../../src/index.js"`, `from "effect-sql-tx"`)
    .replace(/from "\.\.\/\.\.\/src\/([A-Za-z]+)\.js"/g, `from "effect-sql-tx/$1"`)

interface Block {
  readonly line: number
  readonly lang: string
  readonly code: string
  readonly include: string | undefined
}

/** The fenced blocks of a Markdown text, with the example marker that precedes each (if any). */
export const blocksOf = (markdown: string): ReadonlyArray<Block> => {
  const lines = markdown.split("\n")
  const blocks: Array<Block> = []
  for (let i = 0; i < lines.length; i++) {
    const open = /^(`{3,})\s*([A-Za-z0-9_-]*)/.exec(lines[i]!)
    if (open === null) continue
    const fence = open[1]!
    let end = i + 1
    while (end < lines.length && !lines[end]!.startsWith(fence)) end++
    let previous = i - 1
    while (previous >= 0 && lines[previous]!.trim() === "") previous--
    const include = previous >= 0 ? marker.exec(lines[previous]!.trim())?.[1] : undefined
    blocks.push({ line: i + 1, lang: open[2]!, code: lines.slice(i + 1, end).join("\n"), include })
    i = end
  }
  return blocks
}

/** What is wrong with a document's blocks: unmarked TypeScript, missing files, blocks that drifted from their file. */
export const problemsOf = (
  name: string,
  markdown: string,
  read: (path: string) => string | undefined
): ReadonlyArray<string> => {
  const problems: Array<string> = []
  for (const block of blocksOf(markdown)) {
    if (!typescript.has(block.lang)) {
      if (block.include !== undefined) {
        problems.push(`${name}:${block.line}: an example marker before a ${block.lang} block`)
      }
      continue
    }
    if (block.include === undefined) {
      problems.push(`${name}:${block.line}: a ${block.lang} block without <!-- example: examples/guide/….ts -->`)
      continue
    }
    const source = read(block.include)
    if (source === undefined) {
      problems.push(`${name}:${block.line}: ${block.include} does not exist`)
      continue
    }
    if (asUserCode(source).trimEnd() !== block.code.trimEnd()) {
      problems.push(`${name}:${block.line}: the block differs from ${block.include} (copy the file into the block)`)
    }
  }
  return problems
}

/** The document with each marked block replaced by its file (`UPDATE_EXAMPLES=1` writes it). */
export const syncBlocks = (markdown: string, read: (path: string) => string | undefined): string => {
  const lines = markdown.split("\n")
  for (const block of [...blocksOf(markdown)].reverse()) {
    const source = block.include === undefined ? undefined : read(block.include)
    if (source === undefined || !typescript.has(block.lang)) continue
    const length = block.code === "" && lines[block.line] !== "" ? 0 : block.code.split("\n").length
    lines.splice(block.line, length, ...asUserCode(source).trimEnd().split("\n"))
  }
  return lines.join("\n")
}

const readExample = (path: string): string | undefined => {
  const full = Path.join(root, path)
  return Fs.existsSync(full) ? Fs.readFileSync(full, "utf8") : undefined
}

describe("the code blocks of the guide and the README", () => {
  for (const document of documents) {
    it(`${document}: every TypeScript block is a checked file of examples/guide`, () => {
      if (process.env.UPDATE_EXAMPLES === "1") {
        const text = Fs.readFileSync(Path.join(root, document), "utf8")
        Fs.writeFileSync(Path.join(root, document), syncBlocks(text, readExample))
      }
      const markdown = Fs.readFileSync(Path.join(root, document), "utf8")
      assert.deepStrictEqual(problemsOf(document, markdown, readExample), [])
      assert.isAbove(blocksOf(markdown).filter((b) => b.include !== undefined).length, 0)
    })
  }

  it("every file of examples/guide is shown somewhere, and imports only the public modules", () => {
    const shown = new Set(
      documents.flatMap((document) =>
        blocksOf(Fs.readFileSync(Path.join(root, document), "utf8")).flatMap((b) => b.include ?? [])
      )
    )
    const files = Fs.readdirSync(Path.join(root, examplesDir)).filter((f) => f.endsWith(".ts"))
    assert.isAbove(files.length, 10)
    for (const file of files) {
      const path = `${examplesDir}/${file}`
      assert.isTrue(shown.has(path), `${path} is in no document`)
      const source = Fs.readFileSync(Path.join(root, path), "utf8")
      assert.notInclude(asUserCode(source), "../src/", `${path} imports a module a user cannot import`)
    }
  })

  it("finds drift: an edited block, an unmarked block, a missing file", () => {
    const files: Record<string, string> = {
      "examples/guide/a.ts": `import { Transaction } from "../../src/index.js"\nexport const a = Transaction.current\n`
    }
    const read = (path: string) => files[path]
    const good = [
      "<!-- example: examples/guide/a.ts -->",
      "",
      "```ts",
      `import { Transaction } from "effect-sql-tx"`,
      "export const a = Transaction.current",
      "```",
      "",
      "```sh",
      "npm test",
      "```"
    ].join("\n")
    assert.deepStrictEqual(problemsOf("doc", good, read), [])
    assert.lengthOf(problemsOf("doc", good.replace("current", "begin()"), read), 1)
    assert.lengthOf(problemsOf("doc", good.replace("<!-- example: examples/guide/a.ts -->", ""), read), 1)
    assert.lengthOf(problemsOf("doc", good.replace("a.ts -->", "b.ts -->"), read), 1)
    assert.lengthOf(problemsOf("doc", good.replace(`"effect-sql-tx"`, `"../../src/index.js"`), read), 1)
  })
})
