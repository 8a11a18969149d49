// Test-only oracle for tests/test_conformance.py: Atlassian's `atlassian-jwt` behind a JSON-lines pipe.
//
// One request per stdin line, one answer per stdout line, in order, so the Python side can run
// hundreds of generated cases through a single Node process. Requests:
//   {"op": "qsh", "method", "url", "baseUrl"}      -> {"canonical", "qsh"}
//   {"op": "encode", "payload", "key", "alg", "kid"?} -> {"token"}
//   {"op": "decode", "token", "key", "alg"}        -> {"payload"}
// Any failure answers {"error": message} instead.
'use strict';

const readline = require('readline');
const jwt = require('atlassian-jwt');

const SYMMETRIC = new Set(Object.values(jwt.SymmetricAlgorithm));

function handle(request) {
  switch (request.op) {
    case 'qsh': {
      const req = jwt.fromMethodAndUrl(request.method, request.url);
      return {
        canonical: jwt.createCanonicalRequest(req, false, request.baseUrl),
        qsh: jwt.createQueryStringHash(req, false, request.baseUrl),
      };
    }
    case 'encode':
      return {
        token: SYMMETRIC.has(request.alg)
          ? jwt.encodeSymmetric(request.payload, request.key, request.alg)
          : jwt.encodeAsymmetric(request.payload, request.key, request.alg, request.kid ? { kid: request.kid } : undefined),
      };
    case 'decode':
      return {
        payload: SYMMETRIC.has(request.alg)
          ? jwt.decodeSymmetric(request.token, request.key, request.alg)
          : jwt.decodeAsymmetric(request.token, request.key, request.alg),
      };
    case 'version':
      return { version: jwt.version };
    default:
      throw new Error('unknown op ' + JSON.stringify(request.op));
  }
}

const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
lines.on('line', (line) => {
  let answer;
  try {
    answer = handle(JSON.parse(line));
  } catch (error) {
    answer = { error: String(error && error.message ? error.message : error) };
  }
  process.stdout.write(JSON.stringify(answer) + '\n');
});
