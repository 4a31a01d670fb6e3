// A process that runs a private redis-server, for the test that kills it
// (the server must die with it). Run as:
//   node --import tsx redis-child.ts <dataDir>
// It prints {"pid":<redis-server's pid>,"port":<port>} once the server is
// ready, then waits to be killed.
import { openRedis } from "../../src/jobs/redis";
import { silentLogger } from "../../src/log";

const handle = await openRedis({ dataDir: process.argv[2]!, logger: silentLogger });
process.stdout.write(JSON.stringify({ pid: handle.server!.pid, port: handle.server!.port }) + "\n");
setInterval(() => {}, 1 << 30);
