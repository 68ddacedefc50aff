'use strict';
// The stand-in for Node's test/common/tmpdir: a directory of the test's
// own, under NC_NODE_TMPDIR (tests/node-originals.sh gives every test a
// new one), emptied by refresh().
const fs = require('fs');
const path = require('path');

const base = process.env.NC_NODE_TMPDIR || path.join(__dirname, '..', '.tmp');
const dir = path.join(base, '.tmp.0');

module.exports = {
  path: dir,
  refresh() {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
  },
  resolve(...parts) {
    return path.resolve(dir, ...parts);
  },
};
