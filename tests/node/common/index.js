'use strict';
// netcluster's stand-in for Node's test/common, as much of it as the net
// tests that tests/node-originals.sh runs ask for: the call counting
// (mustCall and its kin, checked when the process exits 0), the error
// matcher, the platform flags and the addresses. Written for netcluster;
// the semantics are those test/common documents in Node's
// test/common/README.md.
const assert = require('assert');
const os = require('os');
const path = require('path');
const util = require('util');
const tmpdir = require('./tmpdir');

const checks = [];

function runChecks(code) {
  if (code !== 0)
    return;
  const bad = checks.filter((c) => ('minimum' in c ?
    c.actual < c.minimum : c.actual !== c.exact));
  for (const c of bad) {
    const want = 'minimum' in c ? `at least ${c.minimum}` :
      `exactly ${c.exact}`;
    console.log(`Mismatched ${c.name} function calls. Expected ${want}, ` +
                `actual ${c.actual}.`);
    console.log(c.where);
  }
  if (bad.length > 0)
    process.exit(1);
}

// A function that counts its calls; at exit, the count must be `n`
// (`field` 'exact') or at least `n` ('minimum').
function counted(fn, n, field) {
  if (typeof fn === 'number') {
    n = fn;
    fn = undefined;
  }
  if (fn === undefined)
    fn = function noop() {};
  if (n === undefined)
    n = 1;
  if (typeof n !== 'number')
    throw new TypeError(`call count must be a number, not ${typeof n}`);
  const c = {
    [field]: n,
    actual: 0,
    name: fn.name || '<anonymous>',
    where: new Error().stack.split('\n').slice(3).join('\n'),
  };
  if (checks.length === 0)
    process.on('exit', runChecks);
  checks.push(c);
  const wrapped = function(...args) {
    c.actual++;
    return fn.apply(this, args);
  };
  Object.defineProperty(wrapped, 'length', { value: fn.length });
  Object.defineProperty(wrapped, 'name', { value: fn.name });
  return wrapped;
}

function mustCall(fn, exact) {
  return counted(fn, exact, 'exact');
}

function mustCallAtLeast(fn, minimum) {
  return counted(fn, minimum, 'minimum');
}

function mustNotCall(msg) {
  const where = new Error().stack.split('\n')[2];
  return function mustNotCall(...args) {
    const shown = args.length > 0 ?
      `\nwith arguments: ${args.map((a) => util.inspect(a)).join(', ')}` : '';
    assert.fail(`${msg || 'function should not have been called'} ` +
                `at ${where.trim()}${shown}`);
  };
}

function mustSucceed(fn, exact) {
  return mustCall(function(err, ...args) {
    assert.ifError(err);
    if (typeof fn === 'function')
      return fn.apply(this, args);
  }, exact);
}

// A callback that must be called once with one error matching `validator`
// (an object of expected properties, a class, a RegExp or a function, as
// assert.throws takes it), whose message is not enumerable.
function expectsError(validator, exact) {
  return mustCall((...args) => {
    if (args.length !== 1)
      assert.fail(`expected one argument, got ${util.inspect(args)}`);
    const err = args[0];
    const d = Object.getOwnPropertyDescriptor(err, 'message');
    assert.strictEqual(d.enumerable, false);
    assert.throws(() => { throw err; }, validator);
    return true;
  }, exact);
}

function skip(msg) {
  console.log(`1..0 # Skipped: ${msg}`);
  process.exit(0);
}

// Node scales its timeouts only on slow builds and platforms (debug builds,
// ARM); a release build on x86-64 takes them as they are.
function platformTimeout(ms) {
  return ms;
}

const hasIPv6 = Object.entries(os.networkInterfaces()).some(([name, addrs]) =>
  /^lo/.test(name) && addrs.some((a) => a.family === 'IPv6' || a.family === 6));

module.exports = {
  PIPE: path.join(tmpdir.path, `node-test.${process.pid}.sock`),
  expectsError,
  hasIPv6,
  inFreeBSDJail: false,
  isIBMi: false,
  isSunOS: false,
  isWindows: false,
  localhostIPv4: '127.0.0.1',
  mustCall,
  mustCallAtLeast,
  mustNotCall,
  mustSucceed,
  platformTimeout,
  skip,
};
