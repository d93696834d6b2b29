// The demo page: sign in, subscribe to every channel the identity may read, keep each
// channel's items up to date from its changes, and write todos to DynamoDB with the
// identity's own temporary credentials (its role allows only its own partition).
import { Tidings, signRequest } from "/client/index.js";

const $ = (selector) => document.querySelector(selector);
const config = await (await fetch("/config.json")).json();
let client = null;

function say(text) {
  $("#message").textContent = text;
}

// One channel's items by key, rebuilt from its log (after: 0) and kept current by its changes.
function view(list, render) {
  const items = new Map();
  return (change) => {
    const key = JSON.stringify(change.keys);
    if (change.op === "remove") items.delete(key);
    else items.set(key, change.new);
    list.replaceChildren(...[...items.values()].map(render));
  };
}

function todoItem(item) {
  const li = document.createElement("li");
  li.className = item.done ? "done" : "";
  li.dataset.id = item.id;
  const done = document.createElement("input");
  done.type = "checkbox";
  done.checked = Boolean(item.done);
  done.onchange = () => writeTodo("PutItem", { ...item, done: done.checked });
  const title = document.createElement("span");
  title.textContent = item.title ?? item.id;
  const remove = document.createElement("button");
  remove.textContent = "✕";
  remove.title = "Delete";
  remove.onclick = () => writeTodo("DeleteItem", item);
  li.append(done, title, remove);
  return li;
}

function textItem(text) {
  const li = document.createElement("li");
  li.textContent = text;
  return li;
}

function attribute(value) {
  if (typeof value === "boolean") return { BOOL: value };
  if (typeof value === "number") return { N: String(value) };
  return { S: String(value) };
}

// PutItem / DeleteItem on the todos table, signed with the identity's credentials.
async function writeTodo(operation, item) {
  const table = config.tables.todos;
  const key = { owner: { S: client.identityId }, id: { S: item.id } };
  const body =
    operation === "DeleteItem"
      ? { TableName: table, Key: key }
      : {
          TableName: table,
          Item: Object.fromEntries([
            ...Object.entries(item).map(([name, value]) => [name, attribute(value)]),
            ...Object.entries(key),
          ]),
        };
  const url = config.dynamodbEndpoint.replace(/\/?$/, "/");
  const headers = {
    "Content-Type": "application/x-amz-json-1.0",
    "X-Amz-Target": `DynamoDB_20120810.${operation}`,
  };
  const text = JSON.stringify(body);
  const signed = await signRequest({
    method: "POST",
    url,
    region: config.region,
    service: "dynamodb",
    credentials: await client.credentials(),
    headers,
    body: text,
  });
  const answer = await fetch(url, { method: "POST", headers: { ...headers, ...signed }, body: text });
  if (!answer.ok) {
    const error = await answer.json().catch(() => ({}));
    say(`${operation} refused: ${error.message ?? error.Message ?? answer.status}`);
  }
}

$("#signin").onsubmit = async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  say("Signing in ...");
  try {
    client = await Tidings.connect(
      config.apiUrl,
      { method: "password", username: form.get("username"), password: form.get("password") },
      { cognitoEndpoint: config.cognitoEndpoint },
    );
  } catch (error) {
    say(`${error.name}: ${error.message}`);
    return;
  }
  client.on("state", (state) => {
    $("#state").textContent = state.replace("_", " ");
    $("#state").dataset.state = state;
  });
  $("#who").textContent = `as ${form.get("username")} (${client.identityId})`;
  $("#signin").hidden = true;
  $("#panels").hidden = false;
  say("");
  for (const channel of client.channels) {
    let onChange;
    if (channel.startsWith("users/")) {
      $("#todos-channel").textContent = channel;
      onChange = view($("#todos"), todoItem);
    } else if (channel.startsWith("tenants/")) {
      $("#board-channel").textContent = channel;
      onChange = view($("#board"), (item) => textItem(item.text ?? item.id));
    } else {
      onChange = view($("#scores"), (item) => textItem(`${item.player}: ${item.score} (${item.game})`));
    }
    await client.subscribe(channel, onChange, {
      after: 0,
      onContinuityLost: (name, lost) => say(`continuity lost on ${name}: ${lost.reason}`),
    });
  }
};

$("#add-todo").onsubmit = async (event) => {
  event.preventDefault();
  const title = new FormData(event.target).get("title");
  event.target.reset();
  await writeTodo("PutItem", { id: crypto.randomUUID(), title, done: false });
};
