// `npm run build`'s second step: bundles the CLI (dist/src/cli/index.js and everything it
// imports, node_modules included) into dist/src/cli/bundle/, which bin/ob-events.js loads when
// present. Loading ~700 small files (lodash alone is ~250) cost most of a command's start-up;
// a few large files load much faster (issue 15: a command under 0.5 s). Each command's modules
// stay in their own chunk (code splitting), so `--version` still loads almost nothing.
// It bundles the compiled dist/ (not src/), so what runs is exactly what tsc emitted.
// One difference from plain Node: `await import('some-commonjs-package')` gives only `default`
// (module.exports) in the bundle, not the named exports; use `.default`, as src/net/*.ts do.
//   node scripts/bundleCli.mjs
import fs from 'node:fs';
import path from 'node:path';
import { build } from 'esbuild';

const root = path.resolve(import.meta.dirname, '..');
const cli = path.join(root, 'dist/src/cli');

// Modules that find files next to themselves (import.meta.url, import.meta.dirname: the SET
// signing worker, the OpenAPI document, package.json) keep finding them: in the bundle,
// import.meta.url is rewritten to the URL of the dist/ file the code came from. Packages that
// load files or start worker threads of their own stay unbundled (PGlite's WebAssembly,
// piscina's and pino's workers).
const PACKAGE_EXTERNAL = [
  '@electric-sql/pglite',
  '@electric-sql/pglite-socket',
  'piscina',
  'pino',
  'pino-pretty',
  'thread-stream',
  // knex's other dialects: required only when configured, never installed here.
  'better-sqlite3',
  'sqlite3',
  'mysql',
  'mysql2',
  'mariadb',
  'mariadb/callback',
  'oracledb',
  'tedious',
  'pg-query-stream',
  'pg-native',
];

/**
 * knex's dialects other than postgres stay in node_modules (required from there if ever
 * configured): bundled, they were ~300 kB that every command compiled and none uses.
 */
const otherKnexDialects = {
  name: 'other-knex-dialects',
  setup(b) {
    b.onResolve({ filter: /^\.\/[a-z0-9-]+$/ }, (args) => {
      if (!args.importer.endsWith(path.join('knex', 'lib', 'dialects', 'index.js')))
        return undefined;
      if (args.path === './postgres') return undefined;
      return { path: `knex/lib/dialects/${args.path.slice(2)}/index.js`, external: true };
    });
  },
};

/** In our dist/ files: import.meta.url/dirname as they are in dist/, not in the bundle's chunk. */
const originalImportMeta = {
  name: 'original-import-meta',
  setup(b) {
    b.onLoad({ filter: /\/dist\/(src|migrations)\/.*\.js$/ }, (args) => {
      const code = fs.readFileSync(args.path, 'utf8');
      if (!code.includes('import.meta')) return undefined;
      const rel = path.relative(path.join(cli, 'bundle'), args.path).split(path.sep).join('/');
      const url = `new URL(${JSON.stringify(rel)}, import.meta.url)`;
      return {
        loader: 'js',
        contents: code
          .replaceAll('import.meta.url', `${url}.href`)
          .replaceAll('import.meta.dirname', `__obDirname(${url})`),
        resolveDir: path.dirname(args.path),
      };
    });
  },
};

// Old chunks (their names are content hashes) would pile up.
fs.rmSync(path.join(cli, 'bundle'), { recursive: true, force: true });
await build({
  entryPoints: { index: path.join(cli, 'index.js') },
  outdir: path.join(cli, 'bundle'),
  chunkNames: 'chunk-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  outExtension: { '.js': '.mjs' },
  external: PACKAGE_EXTERNAL,
  inject: [path.join(import.meta.dirname, 'bundle/navigator.mjs')],
  plugins: [originalImportMeta, otherKnexDialects],
  // Bundled CommonJS (knex, pg, lodash) calls require() for Node's built-ins; __obDirname: above.
  banner: {
    js: [
      "import { createRequire as __obCreateRequire } from 'node:module';",
      "import { dirname as __obPathDirname } from 'node:path';",
      "import { fileURLToPath as __obFileURLToPath } from 'node:url';",
      'const require = __obCreateRequire(import.meta.url);',
      'const __obDirname = (u) => __obPathDirname(__obFileURLToPath(u));',
    ].join(' '),
  },
  logLevel: 'warning',
  legalComments: 'none',
});
