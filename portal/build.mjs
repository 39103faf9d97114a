// Builds the portal into OUT (default ../build/ui): index.html, and
// assets/app.js and assets/app.css bundled by esbuild from src/ and the
// npm packages (xterm.js).  Nothing is fetched: everything comes from
// node_modules, installed by `npm ci` from the checked-in lock file.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] || join(here, '..', 'build', 'ui'));
mkdirSync(join(out, 'assets'), { recursive: true });
await build({
  entryPoints: { app: join(here, 'src', 'main.js') },
  bundle: true,
  minify: true,
  sourcemap: false,
  target: ['chrome110', 'firefox115'],
  outdir: join(out, 'assets'),
  logLevel: 'warning',
});
copyFileSync(join(here, 'src', 'index.html'), join(out, 'index.html'));
