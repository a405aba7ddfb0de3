import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    setupFiles: ["./test/utils/setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // `global.gc` for test/MemoryBound.test.ts, which measures the heap after a full collection.
    poolOptions: { forks: { execArgv: ["--expose-gc"] } }
  }
})
