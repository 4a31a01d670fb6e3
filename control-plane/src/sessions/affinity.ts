// Session affinity: a conversation goes back to the engine that holds its KV
// cache, and the choice is stored on the conversation, so it survives
// restarts and holds across every replica of the control plane. When that
// engine is gone the pool picks another, the new choice is stored, and the
// turn sends the whole (trimmed) history, which the new engine prefills.
import type { Conversation } from "@prisma/client";
import type { ConversationRepository } from "../db/repositories";
import type { InferenceEngineClient } from "../engines/clients";
import type { EngineLease, EnginePool } from "../engines/pool";

export async function engineForConversation(
  pool: EnginePool,
  conversations: ConversationRepository,
  conversation: Pick<Conversation, "id" | "userId" | "engineAffinity">,
  exclude?: Iterable<string>,
): Promise<EngineLease<InferenceEngineClient>> {
  const lease = pool.pickInference({ affinity: conversation.engineAffinity, exclude });
  if (lease.address !== conversation.engineAffinity) {
    try {
      await conversations.setAffinity(conversation.userId, conversation.id, lease.address);
    } catch (err) {
      lease.release();
      throw err;
    }
  }
  return lease;
}
