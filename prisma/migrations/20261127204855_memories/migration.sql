-- AlterTable
ALTER TABLE "conversations" ADD COLUMN     "memories_through_id" UUID;

-- CreateTable
CREATE TABLE "memories" (
    "id" UUID NOT NULL,
    "user_id" UUID NOT NULL,
    "text" TEXT NOT NULL,
    "hash" TEXT NOT NULL,
    "origin" TEXT NOT NULL DEFAULT 'extracted',
    "conversation_id" UUID,
    "request_id" UUID,
    "embedding_model" TEXT,
    "collection" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "memories_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "memories_user_id_created_at_id_idx" ON "memories"("user_id", "created_at" DESC, "id" DESC);

-- CreateIndex
CREATE INDEX "memories_user_id_hash_idx" ON "memories"("user_id", "hash");

-- CreateIndex
CREATE UNIQUE INDEX "memories_id_user_id_key" ON "memories"("id", "user_id");

-- AddForeignKey
ALTER TABLE "memories" ADD CONSTRAINT "memories_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users"("id") ON DELETE CASCADE ON UPDATE CASCADE;

