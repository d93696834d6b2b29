// The web client, unchanged, in Node: sign in, subscribe, print each change's seq as a JSON
// line until `count` arrived, then close. Used by tests/e2e/test_web_client_in_node.py.
// Usage: node --experimental-websocket node-subscriber.mjs API_URL COGNITO USER PASSWORD CHANNEL COUNT
//        [DENIED_CHANNEL]: then also read a cursor the log does not have (the API's 410) and
//        subscribe to DENIED_CHANNEL (the API's 403), printing the error each gave.
import { Tidings } from "../src/index.js";

const [apiUrl, cognitoEndpoint, username, password, channel, count, denied] = process.argv.slice(2);
const t = await Tidings.connect(apiUrl, { method: "password", username, password }, { cognitoEndpoint });
console.log(JSON.stringify({ state: t.state, identityId: t.identityId }));
let seen = 0;
for await (const change of t.changes(channel, { after: 0 })) { // from the first change on
  console.log(JSON.stringify({ seq: change.seq }));
  if (++seen >= Number(count)) break;
}
if (denied) {
  try {
    for await (const change of t.changes("public/scores", { after: 1e9 })) console.log(change.seq);
  } catch (error) {
    console.log(JSON.stringify({ error: error.name, reason: error.reason }));
  }
  try {
    (await t.subscribe(denied, () => {})).close();
    console.log(JSON.stringify({ error: null }));
  } catch (error) {
    console.log(JSON.stringify({ error: error.name }));
  }
}
await t.close();
console.log(JSON.stringify({ state: t.state }));
