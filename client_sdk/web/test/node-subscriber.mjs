// The web client, unchanged, in Node: sign in, subscribe, print each change's seq as a JSON
// line until `count` arrived, then close. Used by tests/e2e/test_web_client_in_node.py.
// Usage: node --experimental-websocket node-subscriber.mjs API_URL COGNITO USER PASSWORD CHANNEL COUNT
import { Tidings } from "../src/index.js";

const [apiUrl, cognitoEndpoint, username, password, channel, count] = process.argv.slice(2);
const t = await Tidings.connect(apiUrl, { method: "password", username, password }, { cognitoEndpoint });
console.log(JSON.stringify({ state: t.state, identityId: t.identityId }));
let seen = 0;
for await (const change of t.changes(channel, { after: 0 })) { // from the first change on
  console.log(JSON.stringify({ seq: change.seq }));
  if (++seen >= Number(count)) break;
}
await t.close();
console.log(JSON.stringify({ state: t.state }));
