'use strict';
// The stand-in for Node's test/common/fixtures: paths under a fixtures
// directory. The net tests use it only on Windows.
const path = require('path');

const dir = path.join(__dirname, '..', 'fixtures');

module.exports = {
  fixturesDir: dir,
  path: (...parts) => path.join(dir, ...parts),
};
