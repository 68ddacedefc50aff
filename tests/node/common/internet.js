'use strict';
// The stand-in for Node's test/common/internet: the names the net tests
// use. None is looked up: the tests that use them give a lookup function
// of their own (./dns.js).
module.exports = {
  addresses: {
    INVALID_HOST: 'something.invalid',
  },
};
