// A second process on an embedded database, for the tests that need one
// (the lock, surviving a kill). Run as:
//   node --import tsx postgres-embedded-child.ts <dataDir> hold|write|open
// It prints one JSON line per event on stdout:
//   hold:  opens, prints {"ready":true}, keeps the database open until killed
//   write: opens, commits a user, a conversation and two messages, prints
//          {"committed":{userId,conversationId}}, then waits to be killed
//   open:  tries to open, prints {"opened":true} or {"error":{name,message}}, exits
import { openDatabase } from "../../src/db/database";
import { silentLogger } from "../../src/log";

const [dataDir, action] = process.argv.slice(2);
const say = (v: unknown) => process.stdout.write(JSON.stringify(v) + "\n");
const forever = () => setInterval(() => {}, 1 << 30);

try {
  const db = await openDatabase({ dataDir, logger: silentLogger });
  if (action === "hold") {
    say({ ready: true });
    forever();
  } else if (action === "write") {
    const user = await db.repos.users.create({ username: "killed-writer" });
    const conv = await db.repos.conversations.create(user.id, { title: "before the kill" });
    await db.repos.messages.append(user.id, conv.id, { role: "USER", content: "hola" });
    await db.repos.messages.append(user.id, conv.id, { role: "ASSISTANT", content: "¡hola!" });
    say({ committed: { userId: user.id, conversationId: conv.id } });
    forever();
  } else {
    say({ opened: true });
    await db.close();
  }
} catch (err) {
  say({ error: { name: (err as Error).name, message: (err as Error).message } });
  process.exitCode = 1;
}
