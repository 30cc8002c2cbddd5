// Parse TeX with MathJax's own TeX input, configured as the book's pages configure it.
//
// Reads a JSON list of {"tex": "...", "display": true|false} from stdin and writes a JSON
// list of the same length: null where the formula parses, else MathJax's error message.
// The packages are those the site's tex-chtml.js has (base, ams, newcommand, require,
// configmacros) plus every package its autoload extension loads on demand; like the site
// (_config.yml: mathjax3_config), it leaves out noundefined, so an unknown macro is an error
// instead of red text. Used by tests/test_sources.py; needs `npm ci` (scripts/setup.sh).
'use strict';
const {mathjax} = require('mathjax-full/js/mathjax.js');
const {TeX} = require('mathjax-full/js/input/tex.js');
const {liteAdaptor} = require('mathjax-full/js/adaptors/liteAdaptor.js');
const {RegisterHTMLHandler} = require('mathjax-full/js/handlers/html.js');
const {STATE} = require('mathjax-full/js/core/MathItem.js');
require('mathjax-full/js/input/tex/AllPackages.js');  // registers every package's configuration
const {AutoloadConfiguration} = require('mathjax-full/js/input/tex/autoload/AutoloadConfiguration.js');

// The page also has require (\require{...} loads a package at run time); here every
// package is already in. bussproofs needs an output jax to measure its boxes, and the
// book draws no proof trees.
const onPage = ['base', 'ams', 'newcommand', 'configmacros'];
const autoloaded = Object.keys(AutoloadConfiguration.options.autoload).filter((p) => p !== 'bussproofs');
const packages = [...new Set([...onPage, ...autoloaded])];

RegisterHTMLHandler(liteAdaptor());
const tex = new TeX({
  packages,
  formatError: (jax, err) => { throw err; },  // raise instead of drawing an merror box
});
const doc = mathjax.document('', {InputJax: tex});

function check(item) {
  try {
    doc.convert(item.tex, {display: Boolean(item.display), end: STATE.CONVERT});
    return null;
  } catch (err) {
    return String(err && err.message ? err.message : err);
  }
}

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  process.stdout.write(JSON.stringify(JSON.parse(input).map(check)));
});
