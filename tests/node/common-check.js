'use strict';
// Checks netcluster's stand-in for Node's test/common (./common) before
// tests/node-originals.sh trusts it: each case is a small program run by
// node as an original is, which must exit 0 where its calls add up, and
// fail where they do not. A stand-in that let everything pass would make
// every original pass.
const { spawnSync } = require('child_process');
const path = require('path');

const common = JSON.stringify(path.join(__dirname, 'common'));
const cases = [
  // [name, program, passes?]
  ['mustCall called once', 'c.mustCall()();', true],
  ['mustCall never called', 'c.mustCall();', false],
  ['mustCall(fn, 2) called once', 'c.mustCall(() => {}, 2)();', false],
  ['mustCall(2) called twice', 'const f = c.mustCall(2); f(); f();', true],
  ['mustCall passes this, arguments and the result',
   'const o = { f: c.mustCall(function(a, b) { return [this, a + b]; }) };' +
   'const [t, r] = o.f(1, 2); require("assert")(t === o && r === 3);', true],
  ['mustCallAtLeast(2) called once', 'c.mustCallAtLeast(2)();', false],
  ['mustCallAtLeast(2) called three times',
   'const f = c.mustCallAtLeast(2); f(); f(); f();', true],
  ['mustNotCall called', 'c.mustNotCall("no")();', false],
  ['mustNotCall not called', 'c.mustNotCall();', true],
  ['mustSucceed given an error', 'c.mustSucceed()(new Error("e"));', false],
  ['mustSucceed given null', 'c.mustSucceed((x) => x)(null, 1);', true],
  ['expectsError matched',
   'const e = new Error("m"); e.code = "X"; c.expectsError({ code: "X" })(e);',
   true],
  ['expectsError not matched',
   'const e = new Error("m"); e.code = "Y"; c.expectsError({ code: "X" })(e);',
   false],
  ['expectsError never called', 'c.expectsError({ code: "X" });', false],
  ['a failing assertion', 'require("assert").strictEqual(1, 2);', false],
  ['skip', 'c.skip("why"); c.mustCall();', true],
];

let bad = 0;
for (const [name, body, passes] of cases) {
  const r = spawnSync(process.execPath,
                      ['-e', `const c = require(${common}); ${body}`],
                      { encoding: 'utf8', timeout: 30000 });
  const passed = r.status === 0;
  if (passed !== passes) {
    bad++;
    console.log(`stand-in: ${name}: exit ${r.status}, want ` +
                `${passes ? '0' : 'a failure'}\n${r.stdout}${r.stderr}`);
  }
}
console.log(`stand-in: ${cases.length - bad} of ${cases.length} cases as ` +
            'Node\'s test/common');
process.exit(bad ? 1 : 0);
