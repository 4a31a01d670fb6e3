// A TCP port free on 127.0.0.1 right now, for a child server that must be told its port
// (redis-server, PostgreSQL in tests). Another process could take it before the child binds.
import net from "node:net";

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}
