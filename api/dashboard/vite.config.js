import { defineConfig } from "vite";

// Served by the query API under /dashboard/ (api/query/app.py mounts api/query/static).
export default defineConfig({
  base: "/dashboard/",
  build: { outDir: "../query/static", emptyOutDir: true, chunkSizeWarningLimit: 1000 },
});
