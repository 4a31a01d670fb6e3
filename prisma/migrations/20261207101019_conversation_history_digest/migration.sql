-- AlterTable
ALTER TABLE "conversations" ADD COLUMN     "history_digest" TEXT;

-- CreateIndex
CREATE INDEX "conversations_user_id_history_digest_idx" ON "conversations"("user_id", "history_digest");

