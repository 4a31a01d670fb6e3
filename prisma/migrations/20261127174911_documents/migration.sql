
-- CreateEnum
CREATE TYPE "DocumentStatus" AS ENUM ('QUEUED', 'READY', 'FAILED');

-- CreateTable
CREATE TABLE "documents" (
    "id" UUID NOT NULL,
    "user_id" UUID NOT NULL,
    "source" TEXT NOT NULL,
    "title" TEXT,
    "kind" TEXT NOT NULL DEFAULT 'document',
    "media_type" TEXT NOT NULL,
    "bytes" INTEGER NOT NULL,
    "status" "DocumentStatus" NOT NULL DEFAULT 'QUEUED',
    "job_id" TEXT,
    "chunks" INTEGER,
    "error" TEXT,
    "ingested_at" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "documents_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "documents_user_id_created_at_id_idx" ON "documents"("user_id", "created_at" DESC, "id" DESC);

-- CreateIndex
CREATE UNIQUE INDEX "documents_user_id_source_key" ON "documents"("user_id", "source");

-- CreateIndex
CREATE UNIQUE INDEX "documents_id_user_id_key" ON "documents"("id", "user_id");

-- AddForeignKey
ALTER TABLE "documents" ADD CONSTRAINT "documents_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users"("id") ON DELETE CASCADE ON UPDATE CASCADE;

