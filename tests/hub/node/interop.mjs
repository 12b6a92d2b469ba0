// Interop of the room server's hub with Microsoft's official JavaScript SignalR client (@microsoft/signalr).
// Run by tests/hub/nodejs.py: `node interop.mjs` with HUB_URL, TOKEN_A, TOKEN_B, ROOM and TRANSPORT (an
// HttpTransportType name: WebSockets, LongPolling, ServerSentEvents) in the environment. It exits 0 when
// every step matched and prints the failed assertion otherwise.
import assert from "node:assert/strict";
import * as signalR from "@microsoft/signalr";

const { HUB_URL, TOKEN_A, TOKEN_B, ROOM, TRANSPORT } = process.env;
const transport = signalR.HttpTransportType[TRANSPORT];
assert.ok(transport, `unknown TRANSPORT ${TRANSPORT}`);
const STATE_URL = `${HUB_URL}/${ROOM}/state`; // the REST room state: GET /room/{roomId}/state

async function presence() {
  const answer = await fetch(STATE_URL, { headers: { Authorization: `Bearer ${TOKEN_A}` } });
  assert.equal(answer.status, 200);
  const state = await answer.json();
  return Object.fromEntries(state.entities.map((e) => [e.id, e.connected]));
}

async function eventually(check, what, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function waiter() {
  const items = [];
  const waiting = [];
  return {
    push(item) {
      const next = waiting.shift();
      if (next) next(item);
      else items.push(item);
    },
    next(timeoutMs = 10000) {
      if (items.length) return Promise.resolve(items.shift());
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("timed out waiting for a client event")), timeoutMs);
        waiting.push((item) => {
          clearTimeout(timer);
          resolve(item);
        });
      });
    },
  };
}

async function member(token) {
  const connection = new signalR.HubConnectionBuilder()
    .withUrl(HUB_URL, { accessTokenFactory: () => token, transport })
    .configureLogging(signalR.LogLevel.Warning)
    .build();
  const events = waiter();
  const messages = waiter();
  connection.on("event", (envelope) => events.push(envelope));
  connection.on("message", (message) => messages.push(message));
  await connection.start();
  return {
    connection,
    messages,
    async event(kind, match = () => true) {
      for (;;) {
        const envelope = await events.next();
        if (envelope.payload.kind === kind && match(envelope)) return envelope;
      }
    },
  };
}

const alice = await member(TOKEN_A);
const bob = await member(TOKEN_B);
try {
  assert.equal(alice.connection.state, signalR.HubConnectionState.Connected);
  const joined = await alice.connection.invoke("Join", ROOM, { id: "E-alice", kind: "human", displayName: "Alice" });
  assert.deepEqual(joined.map((e) => e.id), ["E-alice"]);
  const guarded = { id: "E-bob", kind: "agent", policy: { allow_commands_from: "orchestrator" } };
  const both = await bob.connection.invoke("join", ROOM, guarded); // method names are case-insensitive
  assert.deepEqual(both.map((e) => e.id), ["E-alice", "E-bob"]);
  const seen = await alice.event("ENTITY.JOIN", (e) => e.payload.data.entity.id === "E-bob");
  assert.equal(seen.roomId, ROOM);
  assert.deepEqual(await presence(), { "E-alice": true, "E-bob": true });

  const listed = await bob.connection.invoke("ListEntities", ROOM);
  assert.deepEqual(listed.map((e) => e.displayName), ["Alice", null]);

  await alice.connection.invoke("SendToRoom", ROOM, { from: "E-alice", type: "chat", payload: { text: "Olá!" } });
  const message = await bob.messages.next();
  assert.equal(message.from, "E-alice");
  assert.equal(message.type, "chat");
  assert.deepEqual(message.payload, { text: "Olá!" });
  assert.equal(message.roomId, ROOM);

  await alice.connection.invoke("SendToRoom", ROOM, { from: "E-alice", type: "event", payload: { kind: "TASK.DONE" } });
  assert.equal((await bob.messages.next()).payload.kind, "TASK.DONE");

  await assert.rejects(
    alice.connection.invoke("SendToRoom", ROOM, {
      from: "E-alice",
      type: "command",
      payload: { target: "E-bob", port: "text.generate", inputs: {} },
    }),
    (error) => {
      assert.equal(
        error.message,
        "An unexpected error occurred invoking 'SendToRoom' on the server. HubException: " +
          '{"error":"Forbidden","code":"PERM_DENIED","message":"not allowed to command this target"}',
      );
      const inner = JSON.parse(error.message.slice(error.message.indexOf("HubException: ") + 14));
      assert.equal(inner.code, "PERM_DENIED");
      return true;
    },
  );

  await alice.connection.invoke("SendToRoom", ROOM, {
    from: "E-alice",
    channel: "@E-bob",
    type: "chat",
    payload: { text: "just you" },
  });
  const direct = await bob.messages.next();
  assert.equal(direct.channel, "@E-bob");
  assert.equal(direct.payload.text, "just you");

  const left = await bob.connection.invoke("Leave", ROOM, "E-bob");
  assert.equal(left, undefined); // a void method: its completion carries no result
  const leave = await alice.event("ENTITY.LEAVE");
  assert.deepEqual(leave.payload.data, { entityId: "E-bob" });
} finally {
  await bob.connection.stop();
  await alice.connection.stop();
}
// The stopped client's session is gone: its presence is left (an undeclared entity leaves the state).
await eventually(async () => (await presence())["E-alice"] !== true, "E-alice is not connected");
console.log(`interop ok (${TRANSPORT})`);
