'use strict';
// The stand-in for Node's test/common/dns: a lookup function that fails
// as getaddrinfo does for a name that does not exist, without asking any
// resolver.
const mockedErrorCode = 'ENOTFOUND';
const mockedSysCall = 'getaddrinfo';

function errorLookupMock(code = mockedErrorCode, syscall = mockedSysCall) {
  return function lookupWithError(hostname, options, cb) {
    const err = new Error(`${syscall} ${code} ${hostname}`);
    err.code = code;
    err.errno = code;
    err.syscall = syscall;
    err.hostname = hostname;
    cb(err);
  };
}

module.exports = { errorLookupMock, mockedErrorCode, mockedSysCall };
