// Builds the page into the Python package, so `pip install` ships it with no Node needed.
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/ui/',
  build: {
    outDir: '../src/ollamapy/server/ui',
    emptyOutDir: true,
    assetsInlineLimit: 0, // no data: URLs for assets: every file is served under /ui/
    modulePreload: { polyfill: false },
    target: 'es2022',
    sourcemap: false,
  },
});
