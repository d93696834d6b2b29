// Sign requests with src/sigv4.js for tests in another language: a JSON list of jobs on
// stdin, a JSON list of results on stdout. Used by
// tests/e2e/test_web_sigv4_against_local_verifier.py, which checks them with the local
// stack's verifier.
//
//   {"sign": {...signRequest options}}  -> {"headers": {...}}
//   {"presign": {...presignUrl options}} -> {"url": "..."}
//
// `now` is given in epoch seconds; `body` as text.

import { presignUrl, signRequest } from "../src/sigv4.js";

/** @param {AsyncIterable<Buffer | string>} stream */
async function readAll(stream) {
  let text = "";
  for await (const chunk of stream) text += chunk;
  return text;
}

/** @param {Record<string, unknown>} options */
function withDate(options) {
  return typeof options.now === "number" ? { ...options, now: new Date(options.now * 1000) } : options;
}

const jobs = JSON.parse(await readAll(process.stdin));
const results = [];
for (const job of jobs) {
  if (job.sign) {
    results.push({ headers: await signRequest(/** @type {any} */ (withDate(job.sign))) });
  } else if (job.presign) {
    results.push({ url: await presignUrl(/** @type {any} */ (withDate(job.presign))) });
  } else {
    throw new Error(`unknown job: ${JSON.stringify(job)}`);
  }
}
process.stdout.write(JSON.stringify(results));
