// "The device's current conversation": a request with no conversation id goes
// on in the conversation the same device used last, so a kitchen satellite
// keeps one running dialogue across its streams and Chat calls. Remembered
// in this process (the database has no per-device pointer); after a restart,
// or when that conversation was deleted, the next turn starts a new one.
import type { Principal } from "../auth/principal";

const MAX_DEVICES = 10_000;

export class DeviceConversations {
  // Insertion order = least recently used first (re-inserted on each use).
  private readonly current = new Map<string, string>();

  /**
   * Which device is calling: the authenticated device (a device token), or
   * the `device_id` an API-key client names; undefined when neither, so such
   * a caller gets a new conversation each time it names none.
   */
  key(p: Principal, deviceId: string): string | undefined {
    if (p.deviceId) return `${p.userId}/device/${p.deviceId}`;
    return deviceId ? `${p.userId}/key/${p.credentialId}/${deviceId}` : undefined;
  }

  get(key: string | undefined): string | undefined {
    return key ? this.current.get(key) : undefined;
  }

  set(key: string | undefined, conversationId: string): void {
    if (!key) return;
    this.current.delete(key);
    this.current.set(key, conversationId);
    if (this.current.size > MAX_DEVICES) this.current.delete(this.current.keys().next().value!);
  }

  /** Forgets a key (a session's own, when it ends). */
  drop(key: string): void {
    this.current.delete(key);
  }

  /** Forgets a conversation that is gone (deleted). */
  forget(key: string | undefined, conversationId: string): void {
    if (key && this.current.get(key) === conversationId) this.current.delete(key);
  }
}
